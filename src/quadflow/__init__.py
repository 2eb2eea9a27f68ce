"""quadflow: gradient-flow dynamics of extensive-width quadratic networks.

Importable with torch, numpy and scipy alone; Hydra and W&B live in
``quadflow.cli`` and behind ``quadflow.logging``'s W&B sink. ``Simulation``,
``Trainer`` and ``simulate`` load the training loop (:mod:`quadflow.train`) on
first use, so that ``import quadflow.theory`` does not.
"""
from quadflow.models import QuadraticNetwork
from quadflow.problem import Problem, Ratios

__all__ = ["Problem", "QuadraticNetwork", "Ratios", "Simulation", "Trainer", "simulate"]
__version__ = "0.2.0"

_TRAIN = ("Simulation", "Trainer", "simulate")


def __getattr__(name: str):
    if name in _TRAIN:
        import quadflow.train

        return getattr(quadflow.train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
