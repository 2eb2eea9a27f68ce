"""Theory predictions for one run, on the run's own time grid: the ``theory`` config group's components.

Each component (``Population``, ``LongTime``, ``DMFT``) is built with its own settings and
computes a :class:`Prediction` for a :class:`RunInfo` (the run's problem, step, schedule,
seeds) with the solvers of :mod:`quadflow.theory`. A prediction's rows carry keys
``theory/<name>/<metric>`` at the recorded steps.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from quadflow.optim import dmft_update, gd_mismatch
from quadflow.problem import Problem
from quadflow.theory.results import CURVES, Curves


@dataclass
class RunInfo:
    """What a theory needs to know of a run.

    Attributes:
        problem: the run's problem; h, steps: step size (paper's time) and step count.
        schedule: recorded steps; spectrum_steps: steps with a saved spectrum.
        seeds: the run's random streams (a population solve at the run's d shares S* and W0).
        s_star: the teacher matrix (d, d) (sets the spectral-density grid).
        make_optimizer: the run's ``params -> Optimizer`` (the population flow uses the same one).
        optimizer_name: its class name.
        batch_size: the minibatch size (None: full batch).
        noisy_test, device, progress: as configured.
    """

    problem: Problem
    h: float
    steps: int
    schedule: list
    spectrum_steps: list
    seeds: object
    s_star: torch.Tensor
    make_optimizer: Callable
    optimizer_name: str = "SGD"
    batch_size: int | None = None
    noisy_test: bool = False
    device: str = "cpu"
    progress: bool = False

    def probe_optimizer(self) -> torch.optim.Optimizer | None:
        """The run's optimiser built on one probe parameter (its settings, no training), None when it cannot be."""
        try:
            return self.make_optimizer([torch.zeros(1, requires_grad=True)])
        except Exception:
            return None


@dataclass
class Prediction:
    """A theory's values: ``curves[metric][step]`` (trajectories) and/or ``constants`` (long time).

    ``summary`` holds scalars for summary.json (convergence flags, iterations, ...);
    ``density`` is an optional ``(x, rho)`` limiting spectral density of S.
    """

    name: str
    curves: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    density: tuple | None = None

    def row(self, step: int) -> dict:
        out = {f"theory/{self.name}/{k}": v for k, v in self.constants.items()}
        for metric, by_step in self.curves.items():
            if step in by_step:
                out[f"theory/{self.name}/{metric}"] = by_step[step]
        return out


def _curves(result: Curves) -> dict:
    """``{metric: {step: value}}`` of a solver's curves."""
    steps = [int(s) for s in result.step]
    return {m: dict(zip(steps, map(float, result[m]))) for m in CURVES if m in result}


class Population:
    """The alpha -> infinity flow at the run's step and optimiser; ``d_eff`` None: the run's own S* and W0."""

    name = "population"

    def __init__(self, d_eff: int | None = None):
        if d_eff is not None and (isinstance(d_eff, bool) or d_eff < 2):
            raise ValueError(f"theory.population.d_eff={d_eff!r} is out of range: allowed an integer >= 2 or null")
        self.d_eff = d_eff

    def compute(self, run: RunInfo) -> Prediction:
        from quadflow.theory.population import solve_population

        res = solve_population(run.problem, h=run.h, steps=run.steps, d_eff=self.d_eff, optim=run.make_optimizer,
                               record_steps=run.schedule, seeds=run.seeds if self.d_eff is None else None)
        return Prediction(self.name, curves=_curves(res), summary={
            "d_eff": self.d_eff or run.problem.d, "instance": "shared" if self.d_eff is None else "fresh"})


class LongTime:
    """Long-time values at the run's realised ratios, as constant reference lines, and the limiting density. The
    summary also has the solution's ``valid``/``validity`` and the run's place on the shipped agreement map
    (``map_point``, ``map_d``, ``map_gap_mse``, ``map_gap_train_loss``, ``map_spread_mse``, ``map_valid``, ``map_disagrees``; or
    ``map_why`` when the map does not cover it)."""

    name = "longtime"

    def __init__(self, density_points: int = 400):
        if isinstance(density_points, bool) or density_points < 2:
            raise ValueError(f"theory.longtime.density_points={density_points!r} is out of range: allowed >= 2")
        self.density_points = density_points

    @staticmethod
    def place(p) -> dict:
        """The run's point on the shipped agreement map (:func:`quadflow.analysis.agreement.lookup`)."""
        from quadflow.analysis.agreement import MAP_FILE, lookup

        if not MAP_FILE.exists():
            return {"map_point": None, "map_why": f"no agreement map at {MAP_FILE}"}
        return lookup(p.alpha, p.kappa, p.kappa_star, p.lam, p.Delta)

    def compute(self, run: RunInfo) -> Prediction:
        from quadflow.theory.longtime import solve_longtime

        p = run.problem
        if p.lam == 0 and p.Delta == 0:
            warnings.warn("theory=longtime needs lam > 0 or Delta > 0 (at lam = Delta = 0 the limit depends on the "
                          "initialisation); skipped", RuntimeWarning)
            return Prediction(self.name, summary={"skipped": "lam = Delta = 0"})
        r = p.realised()  # the ratios this d realises (m/d, m*/d, n/d^2)
        sol = solve_longtime(alpha=r.alpha, kappa=r.kappa, kappa_star=r.kappa_star, lam=r.lam, Delta=r.Delta)
        if not sol.converged:
            warnings.warn(f"long-time equations did not converge at {p}; values are flagged", RuntimeWarning)
        consts = {"mse": sol.mse, "test_error": sol.test_error_noisy if run.noisy_test else sol.test_error,
                  "train_loss": sol.train_loss, "in_sample_error": sol.in_sample_error,
                  "rank_fraction": sol.rank_fraction, "trace": sol.trace, "loss_reg": sol.loss_reg}
        top = float(torch.max(torch.diagonal(run.s_star)).cpu())
        x = np.linspace(1e-6, max(4.0, 1.2 * top + 4.0), self.density_points)
        placement = self.place(p)
        if placement.get("map_disagrees"):
            warnings.warn(f"the agreement map marks this point as disagreeing with the long-time theory (nearest "
                          f"{placement['map_point']}: mse gap {100 * placement['map_gap_mse']:+.0f} %, train loss "
                          f"{100 * placement['map_gap_train_loss']:+.0f} % at d = {placement['map_d']}, valid="
                          f"{placement['map_valid']}); see docs/validation.md", RuntimeWarning)
        return Prediction(self.name, constants=consts if sol.converged else {},
                          summary={"converged": sol.converged, "q": sol.q, "xi": sol.xi, "branch": sol.branch,
                                   "atom": sol.atom, "n_solutions": 1 + len(sol.alternatives), "valid": sol.valid,
                                   "validity": sol.validity, **placement},
                          density=(x, sol.spectrum(x)) if sol.converged else None)


class DMFT:
    """The DMFT of the run's optimiser and batches on a ``d_eff`` instance (docs/theory.md section 4): followed
    when the optimiser is ``torch.optim.SGD`` (any lr, momentum, dampening, Nesterov; no weight decay) or
    ``torch.optim.Adam``/``AdamW`` (no amsgrad, decoupled weight decay only), plain ``torch.optim.RMSprop`` or
    quadflow's ``RK4``,
    full batch or minibatches;
    for another optimiser, discrete GD at the run's step h (with the run's minibatches) is drawn, with a
    warning naming what the curve does not describe. ``history``: ``"exact"``, ``"compressed"`` (the long-time
    mode, O(log T) memory) or ``"auto"`` (exact where its (steps+1)^2 kernels fit, else compressed), and
    ``resolution`` its block resolution (:func:`quadflow.theory.dmft.solve_dmft`). ``max_steps``: the DMFT's
    horizon (None: the run's steps); the curve then covers the recorded steps up to it."""

    name = "dmft"

    def __init__(self, d_eff: int = 64, samples: int = 4, tol: float = 1e-4, max_iter: int = 60, seed: int = 0,
                 window: int | None = None, max_steps: int | None = None, history: str = "auto",
                 resolution: float = 0.2):
        from quadflow.theory.dmft import HISTORIES, MIN_D_EFF, WINDOW

        window = WINDOW if window is None else window
        for key, value, low in (("d_eff", d_eff, MIN_D_EFF), ("samples", samples, 1), ("max_iter", max_iter, 1),
                                ("window", window, 1), ("max_steps", 1 if max_steps is None else max_steps, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"theory.dmft.{key}={value!r} is out of range: allowed an integer >= {low}"
                                 + (" or null (the run's steps)" if key == "max_steps" else ""))
        if not tol > 0:
            raise ValueError(f"theory.dmft.tol={tol!r} is out of range: allowed > 0")
        if history not in HISTORIES:
            raise ValueError(f"theory.dmft.history={history!r} is not a DMFT history: allowed "
                             f"{', '.join(HISTORIES)}")
        if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or not 0 <= resolution < 1:
            raise ValueError(f"theory.dmft.resolution={resolution!r} is out of range: allowed [0, 1)")
        self.d_eff, self.samples, self.tol, self.max_iter, self.seed = d_eff, samples, tol, max_iter, seed
        self.window, self.max_steps, self.history, self.resolution = window, max_steps, history, float(resolution)

    def horizon(self, steps: int) -> int:
        """The steps the DMFT solves for a run of ``steps`` steps."""
        return steps if self.max_steps is None else min(steps, self.max_steps)

    def compute(self, run: RunInfo) -> Prediction:
        from quadflow.theory.dmft import solve_dmft

        probe = run.probe_optimizer()
        follows = probe is not None and dmft_update(probe) is not None
        other = gd_mismatch(probe, run.h) if follows else None  # a followed optimiser other than GD at step h
        optim = run.make_optimizer if other else None
        p = run.problem.realised()
        fraction = 1.0 if run.batch_size is None else run.batch_size / p.n
        unfollowed = None if follows else (run.optimizer_name if probe is None else gd_mismatch(probe, run.h))
        if unfollowed is not None:
            batches = "" if run.batch_size is None else f" with its minibatches of {run.batch_size}"
            warnings.warn(f"the DMFT follows torch.optim.SGD (momentum, Nesterov, any lr), Adam/AdamW, RMSprop and RK4, "
                          f"full batch or minibatches; this run uses {unfollowed}: the theory/dmft curve drawn is GD at step "
                          f"h={run.h:g}{batches}, not this run's", RuntimeWarning)
        steps = self.horizon(run.steps)
        res = solve_dmft(p, h=run.h, steps=steps, d_eff=self.d_eff, samples=self.samples,
                         seed=self.seed, device=run.device, tol=self.tol, max_iter=self.max_iter,
                         window=self.window, noisy_test=run.noisy_test, optim=optim, batch_fraction=fraction,
                         history=self.history, resolution=self.resolution,
                         callback=self._progress(run.progress, steps + 1))
        return Prediction(self.name, curves=_curves(res), summary={
            "horizon_steps": steps, "horizon_t": steps * run.h,
            "history": "compressed" if res.method == "compressed" else "exact",
            "converged": bool(res.converged), "iterations": int(res.iterations),
            "residual": float(res.residuals[-1]) if len(res.residuals) else None,
            "windows_not_converged": sum(not w["converged"] for w in res.windows),
            "wall_time_s": float(res.wall_time), "d_eff": self.d_eff, "samples": self.samples,
            "batch_fraction": fraction, "describes_run": unfollowed is None, "drawn_instead_of": unfollowed})

    def _progress(self, bar: bool, total: int):
        """Progress of the solve (steps solved: marched, or in converged windows) to the ``quadflow`` logger
        about every 10 % of the steps (a marching solve at DEBUG level: it has no iterations or residuals to
        report), and to a tqdm bar on terminals when ``bar``."""
        from tqdm.auto import tqdm

        pbar = tqdm(total=total, desc="DMFT steps", unit="step", disable=None) if bar else None
        log = logging.getLogger("quadflow")
        state = {"solved": 0, "logged": 0}

        def callback(iteration: int, residual: float, solved: int) -> None:
            if solved > state["solved"]:
                if pbar is not None:
                    pbar.update(solved - state["solved"])
                    if self.window > 1:
                        pbar.set_postfix(iterations=iteration, residual=f"{residual:.2e}")
                state["solved"] = solved
            if solved == total or solved - state["logged"] >= total / 10:
                if self.window == 1:  # marching: one pass, no iterations or residuals to report
                    log.debug(f"DMFT: {solved}/{total} steps marched")
                else:
                    log.info(f"DMFT: {solved}/{total} steps solved after {iteration} iterations "
                             f"(last residual {residual:.3e}, tol {self.tol:g})")
                state["logged"] = solved
                if solved == total and pbar is not None:
                    pbar.close()

        return callback
