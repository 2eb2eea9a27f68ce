"""quadflow: gradient-flow dynamics of extensive-width quadratic networks.

Importable with torch, numpy and scipy alone; Hydra and W&B live in
``quadflow.cli`` and behind ``quadflow.logging``'s W&B sink.
"""
from quadflow.models import QuadraticNetwork
from quadflow.problem import Problem
from quadflow.train import Simulation, Trainer, simulate

__all__ = ["Problem", "QuadraticNetwork", "Simulation", "Trainer", "simulate"]
__version__ = "0.2.0"
