"""quadflow: gradient-flow dynamics of extensive-width quadratic networks.

Importable with torch, numpy and scipy alone; Hydra and W&B live in
``quadflow.app`` and ``quadflow.tracking``.
"""
from quadflow.problem import Problem
from quadflow.simulation import Simulation, simulate

__all__ = ["Problem", "Simulation", "simulate"]
__version__ = "0.1.0"
