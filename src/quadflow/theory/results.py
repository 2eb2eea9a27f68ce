"""Results of the trajectory solvers: one :class:`Curves` core, :class:`DMFTResult` and :class:`PopulationResult`.

Every curve is a float64 numpy array of shape ``(records,)`` over the recorded steps, on the
simulation's time axis ``t = step * h`` (the paper's time) and with its metric names and
normalisation (docs/architecture.md, "Metrics"). The results also answer mapping access with
the same keys (``res["mse"]``, ``"kernels" in res``, ``res.get(...)``, ``res.keys()``,
``dict(res)``): a key is present when its field is not None.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

CURVES = ("mse", "test_error", "train_loss", "in_sample_error", "trace", "loss_reg")  # the curves of every solver


def theory_curves(mse, train_loss, in_sample_error, trace, lam: float, Delta: float, noisy_test: bool) -> dict:
    """The ``CURVES`` from the four measured ones (arrays or tensors of one shape): ``test_error = 2 mse`` (+ Delta
    with ``noisy_test``) and ``loss_reg = train_loss + lam trace``, the objective GD descends per unit of ``m d``."""
    return {"mse": mse, "test_error": 2 * mse + (Delta if noisy_test else 0.0), "train_loss": train_loss,
            "in_sample_error": in_sample_error, "trace": trace, "loss_reg": train_loss + lam * trace}


@dataclass(eq=False, kw_only=True)
class Curves(Mapping):
    """The time grid and the metric curves, each of shape ``(records,)``.

    Attributes:
        t: times ``step * h`` (the paper's time). step: the recorded steps (int).
        mse: ``|S - S*|_F^2 / d``. test_error: ``2 mse`` (+ ``Delta`` with noisy test labels).
        train_loss: ``(1/(4n)) sum_mu r_mu^2``. in_sample_error: ``(1/(4n)) sum_mu (f - f*)^2``.
        trace: ``Tr S / d``. loss_reg: ``train_loss + lam trace``.
        rank_fraction: fraction of the eigenvalues of S above the rank tolerance (None where the
            solver has none).
        spectrum: list of arrays of eigenvalues of S, one per spectrum step. spectrum_t: their times,
            shape ``(len(spectrum),)``.
    """

    t: np.ndarray
    step: np.ndarray
    mse: np.ndarray
    test_error: np.ndarray
    train_loss: np.ndarray
    in_sample_error: np.ndarray
    trace: np.ndarray
    loss_reg: np.ndarray
    rank_fraction: np.ndarray | None = None
    spectrum: list | None = None
    spectrum_t: np.ndarray | None = None

    __eq__, __hash__ = object.__eq__, object.__hash__  # identity, as for other solver objects

    def __getitem__(self, key: str):
        if key not in self._names() or getattr(self, key) is None:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return (name for name in self._names() if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @classmethod
    def _names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))


@dataclass(eq=False, kw_only=True)
class PopulationResult(Curves):
    """The population (``alpha -> infinity``) flow's curves (:func:`quadflow.theory.solve_population`), with
    ``rank_fraction``; ``train_loss = (2 mse + Delta)/4`` and ``in_sample_error = mse / 2``."""


@dataclass(eq=False, kw_only=True)
class DMFTResult(Curves):
    """The DMFT's curves (:func:`quadflow.theory.solve_dmft`) over steps ``0..steps`` and its diagnostics.

    Attributes:
        stderr: jackknife standard errors of the :data:`CURVES` over samples, ``{name: (steps + 1,)}``
            (NaN with one sample).
        converged: every window converged. iterations: iterations over all windows.
        residuals: the residual of every iteration, in order. windows: ``{start, stop, iterations,
            residual, converged}`` per window. passes: process steps run, in full passes over all steps.
        damping: the damping in use at the end. method: ``"march"`` or ``"windows"``.
        d_eff: dimension of the effective process. samples: its copies. wall_time: seconds.
        kernels: with ``return_kernels``, ``{"t", "C_e", "R", "C_r", "C_u", "K"}`` (each kernel
            ``(steps + 1, steps + 1)``, float64); else None.
    """

    stderr: dict
    converged: bool
    iterations: int
    residuals: list
    windows: list
    passes: float
    damping: float
    method: str
    d_eff: int
    samples: int
    wall_time: float
    kernels: dict | None = None
