"""Integrators of ``dW/dt = 2 (W Gamma(W) - lam W)`` (theory.md section 2).

``gd`` is the small-step optimiser (explicit Euler, ``W <- W + 2h (W Gamma - lam W)``);
``rk4`` integrates the gradient flow with larger steps; ``momentum`` and ``adam``
are non-gradient-flow baselines. Each integrator takes the field's value at the
current W (evaluated once by the caller, which also records the losses there)
and returns the next W.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from quadflow.model import Field, mse, student_matrix

OPTIMIZERS = ("gd", "rk4", "momentum", "adam")


def velocity(w: torch.Tensor, drift: torch.Tensor, lam: float) -> torch.Tensor:
    """``dW/dt = 2 (W Gamma - lam W)`` given ``drift = W Gamma``."""
    return 2.0 * (drift - lam * w)


class Integrator:
    """One step ``W -> W'`` given ``v0 = dW/dt`` at W; ``state`` holds what a checkpoint must keep."""

    def __init__(self) -> None:
        self.state: dict = {}

    def __call__(self, w: torch.Tensor, v0: torch.Tensor, field: Field, h: float, lam: float) -> torch.Tensor:
        raise NotImplementedError


class GD(Integrator):
    """Explicit Euler, ``W + h v0``: the paper's discrete flow."""

    def __call__(self, w, v0, field, h, lam):
        return w + h * v0


class RK4(Integrator):
    """Classical fourth-order Runge-Kutta (three further field evaluations per step)."""

    def __call__(self, w, v0, field, h, lam):
        def v(x):
            return velocity(x, field(x)[0], lam)

        k2 = v(w + 0.5 * h * v0)
        k3 = v(w + 0.5 * h * k2)
        k4 = v(w + h * k3)
        return w + (h / 6.0) * (v0 + 2 * k2 + 2 * k3 + k4)


class Momentum(Integrator):
    """Heavy ball, ``B <- beta B + v0``, ``W <- W + h B`` (beta = 0 is GD). Not a gradient flow:
    a baseline whose time ``t = step h`` is not the paper's time."""

    def __init__(self, beta: float = 0.9) -> None:
        super().__init__()
        if not 0 <= beta < 1:
            raise ValueError(f"optim.beta must be in [0, 1), got {beta}")
        self.beta = beta

    def __call__(self, w, v0, field, h, lam):
        buf = self.state.get("buffer")
        buf = v0.clone() if buf is None else self.beta * buf + v0
        self.state["buffer"] = buf
        return w + h * buf


class Adam(Integrator):
    """Adam on the gradient ``-v0`` with learning rate h (bias-corrected moments). A baseline, not a flow."""

    def __init__(self, betas: tuple = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__()
        if not all(0 <= b < 1 for b in betas) or len(betas) != 2:
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {betas}")
        if eps <= 0:
            raise ValueError(f"optim.eps must be > 0, got {eps}")
        self.betas, self.eps = tuple(betas), eps

    def __call__(self, w, v0, field, h, lam):
        b1, b2 = self.betas
        k = self.state.get("count", 0) + 1
        m = self.state.get("m", torch.zeros_like(w)) * b1 + (1 - b1) * v0
        v = self.state.get("v", torch.zeros_like(w)) * b2 + (1 - b2) * v0 * v0
        self.state.update(count=k, m=m, v=v)
        return w + h * (m / (1 - b1 ** k)) / ((v / (1 - b2 ** k)).sqrt() + self.eps)


def integrator(name: str, **params) -> Integrator:
    """The integrator for ``optim.name`` (``params``: ``beta`` for momentum, ``betas, eps`` for adam)."""
    kinds = {"gd": GD, "rk4": RK4, "momentum": Momentum, "adam": Adam}
    if name not in kinds:
        raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {name!r}")
    accepted = {"momentum": ("beta",), "adam": ("betas", "eps")}.get(name, ())
    return kinds[name](**{k: v for k, v in params.items() if k in accepted})


class DivergenceError(RuntimeError):
    """The flow produced a non-finite or exploding loss.

    Attributes: ``step`` where it happened and ``last`` (the last finite record, or None).
    """

    def __init__(self, step: int, value: float, last: dict | None, h: float):
        self.step, self.value, self.last = step, value, last
        last_txt = ", ".join(f"{k}={v:.4g}" for k, v in (last or {}).items() if isinstance(v, float))
        super().__init__(
            f"training diverged at step {step} (t={step * h:g}): train_loss={value:.4g}. "
            f"Last finite record: {last_txt or 'none'}. Use a smaller step (optim.h, now {h:g}), "
            "a higher precision (precision=fp32 or fp64), or optim.name=rk4.")


def log_schedule(steps: int, points: int = 100) -> list[int]:
    """About ``points`` distinct steps in ``[0, steps]``, log-spaced, always with 0, 1 and ``steps``."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    grid = {0, steps} | {int(round(x)) for x in np.geomspace(1, max(steps, 1), max(points, 1))}
    return sorted(s for s in grid if 0 <= s <= steps)


class Flow:
    """A trajectory of the flow: state ``w`` (m, d), step counter, observables on a schedule.

    Args:
        field: ``W -> (W Gamma, Stats)``.
        s_star: teacher matrix (d, d) in the compute dtype, for the exact mse.
        w0: initial weights (m, d).
        h: step size (time ``t = step * h``).
        lam: l2 strength; optim: ``gd|rk4|momentum|adam``, optim_params: their settings.
        Delta: label-noise variance, added to ``test_error`` when ``noisy_test``.
        rank_tol: eigenvalues of S above it count towards ``rank_fraction``.
        divergence_factor: stop when train_loss exceeds this times its initial value.
    """

    def __init__(self, field: Field, s_star: torch.Tensor, w0: torch.Tensor, *, h: float, lam: float,
                 optim: str = "gd", optim_params: dict | None = None, Delta: float = 0.0,
                 noisy_test: bool = False, rank_tol: float = 1e-3,
                 divergence_factor: float = 1e6):
        self.field, self.s_star, self.w = field, s_star, w0
        self.h, self.lam, self.Delta, self.noisy_test = h, lam, Delta, noisy_test
        self.step_fn = integrator(optim, **(optim_params or {}))
        self.rank_tol, self.divergence_factor = rank_tol, divergence_factor
        self.step = 0
        self.initial_loss: float | None = None
        self.ascents = 0  # steps at which the objective rose by > 10 % (GD at too large an h oscillates)
        self._last_objective: float | None = None

    def observe(self, stats, spectrum: bool = False) -> dict:
        """Metrics at the current state (keys of architecture.md); ``spectrum`` adds eigenvalues of S."""
        s = student_matrix(self.w)
        e = mse(s, self.s_star)
        eig = torch.linalg.eigvalsh(s.double() if s.dtype == torch.bfloat16 else s)
        rec = {"step": self.step, "t": self.step * self.h, "mse": e,
               "test_error": 2 * e + (self.Delta if self.noisy_test else 0.0),
               "train_loss": stats.train_loss, "in_sample_error": stats.in_sample_error,
               "rank_fraction": float((eig > self.rank_tol).sum()) / s.shape[0]}
        if spectrum:
            rec["spectrum"] = eig.double().cpu().numpy()
        return rec

    def objective(self, train_loss: float) -> float:
        """The loss GD descends: ``train_loss + (lam/d) |V|_F^2`` with ``V = W^T/sqrt(m)`` (theory.md section 2)."""
        m, d = self.w.shape
        return train_loss + self.lam * float(torch.sum(self.w * self.w)) / (m * d)

    def _track_objective(self, train_loss: float) -> None:
        obj = self.objective(train_loss)
        # a rise of more than 10 %: step-size oscillations rise by 20-30 % per step, while the
        # rounding noise of bf16 near its error floor rises by at most ~6 % (measured)
        if self._last_objective is not None and obj > 1.1 * self._last_objective:
            self.ascents += 1
        self._last_objective = obj

    def run(self, steps: int, record_steps, spectrum_steps=(), on_record=None, on_step=None,
            progress: bool = False):
        """Advance to ``steps``, calling ``on_record(record)`` at each step in ``record_steps``.

        ``on_step(flow)`` is called after every completed step (checkpoints, signal
        flags); when it returns True the run returns early, ``self.step`` being
        the next step to evaluate.
        Raises :class:`DivergenceError` on a non-finite or exploding loss.
        """
        record, spectra = set(record_steps), set(spectrum_steps)
        last = None
        bar = _progress(steps, self.step, progress)
        try:
            while True:
                if self.step >= steps and self.step not in record and self.step not in spectra:
                    return  # nothing to observe at the end: skip the field evaluation
                drift, stats = self.field(self.w)
                loss = stats.train_loss
                if self.initial_loss is None:
                    self.initial_loss = loss
                if not math.isfinite(loss) or loss > self.divergence_factor * max(self.initial_loss, 1e-12):
                    raise DivergenceError(self.step, loss, last, self.h)
                self._track_objective(loss)
                if self.step in record or self.step in spectra:
                    last = self.observe(stats, spectrum=self.step in spectra)
                    if on_record is not None:
                        on_record(last)
                if self.step >= steps:
                    return
                self.w = self.step_fn(self.w, velocity(self.w, drift, self.lam), self.field, self.h, self.lam)
                self.step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(train_loss=f"{loss:.3e}", refresh=False)
                if on_step is not None and on_step(self):
                    return
        finally:
            if bar is not None:
                bar.close()
            if self.step >= 50 and self.ascents > 0.05 * self.step:
                warnings.warn(f"GD is not descending: the objective rose at {self.ascents} of {self.step} steps "
                              f"(h={self.h:g} oscillates without diverging); use a smaller optim.h", RuntimeWarning)


def _progress(total: int, done: int, enabled: bool):
    """A tqdm bar on a terminal (rate and ETA); None when disabled or not a TTY (CI logs stay quiet)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="step", disable=None, dynamic_ncols=True)
