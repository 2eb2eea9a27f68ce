"""Theory predictions for a run, on the run's own time grid (``theory=[population,longtime,dmft]``).

Each theory yields a :class:`TheoryResult` whose rows carry keys
``theory/<name>/<metric>`` at the simulation's recorded steps.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from quadflow.config import optim_params
from quadflow.problem import Problem
from quadflow.simulation import METRICS, Simulation

THEORIES = ("population", "longtime", "dmft")


@dataclass
class TheoryResult:
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


def _curves(result: dict, metrics=METRICS) -> dict:
    steps = [int(s) for s in result["step"]]
    return {m: dict(zip(steps, map(float, result[m]))) for m in metrics if m in result}


def _population(cfg, problem: Problem, sim: Simulation, schedule, spec_steps) -> TheoryResult:
    from quadflow.theory.population import solve_population

    d_eff = cfg.theory.population.d_eff
    res = solve_population(problem, h=cfg.optim.h, steps=cfg.optim.steps, d_eff=d_eff, optim=cfg.optim.name,
                           optim_params=optim_params(cfg), record_steps=schedule, seeds=sim.seeds if d_eff is None else None, seed=cfg.seed)
    return TheoryResult("population", curves=_curves(res, ("mse", "test_error", "train_loss", "in_sample_error")),
                        summary={"d_eff": d_eff or problem.d, "instance": "shared" if d_eff is None else "fresh"})


def _longtime(cfg, problem: Problem, sim: Simulation, schedule, spec_steps) -> TheoryResult:
    """Long-time values at the run's realised ratios, as constant reference lines."""
    from quadflow.theory.longtime import solve_longtime

    if problem.lam == 0 and problem.Delta == 0:
        warnings.warn("theory=longtime needs lam > 0 or Delta > 0 (at lam = Delta = 0 the limit depends on the "
                      "initialisation); skipped", RuntimeWarning)
        return TheoryResult("longtime", summary={"skipped": "lam = Delta = 0"})
    r = problem.realised()  # the ratios this d realises (m/d, m*/d, n/d^2)
    sol = solve_longtime(alpha=r.alpha, kappa=r.kappa, kappa_star=r.kappa_star, lam=r.lam, Delta=r.Delta)
    if not sol.converged:
        warnings.warn(f"long-time equations did not converge at {problem}; values are flagged", RuntimeWarning)
    consts = {"mse": sol.mse, "test_error": sol.test_error_noisy if cfg.data.noisy_test else sol.test_error,
              "train_loss": sol.train_loss, "in_sample_error": sol.in_sample_error, "rank_fraction": sol.rank_fraction}
    x = np.linspace(1e-6, max(4.0, 1.2 * float(np.max(sim.s_star.diagonal().cpu().numpy())) + 4.0),
                    cfg.theory.longtime.density_points)
    return TheoryResult("longtime", constants=consts if sol.converged else {},
                        summary={"converged": sol.converged, "q": sol.q, "xi": sol.xi, "branch": sol.branch,
                                 "atom": sol.atom, "n_solutions": 1 + len(sol.alternatives)},
                        density=(x, sol.spectrum(x)) if sol.converged else None)


def _dmft(cfg, problem: Problem, sim: Simulation, schedule, spec_steps) -> TheoryResult:
    from quadflow.theory.dmft import solve_dmft

    c = cfg.theory.dmft
    if cfg.optim.name != "gd":
        warnings.warn("the DMFT describes discrete GD at step h; comparing it with optim.name="
                      f"{cfg.optim.name} mixes integrators", RuntimeWarning)
    res = solve_dmft(problem.realised(), h=cfg.optim.h, steps=cfg.optim.steps, d_eff=c.d_eff, samples=c.samples, seed=c.seed,
                     device=cfg.device, tol=c.tol, max_iter=c.max_iter, noisy_test=cfg.data.noisy_test,
                     callback=_dmft_progress(cfg))
    return TheoryResult("dmft", curves=_curves(res, ("mse", "test_error", "train_loss", "in_sample_error")),
                        summary={"converged": bool(res["converged"]), "iterations": int(res["iterations"]),
                                 "residual": float(res["residuals"][-1]) if len(res["residuals"]) else None,
                                 "wall_time_s": float(res["wall_time"]), "d_eff": c.d_eff, "samples": c.samples})


def _dmft_progress(cfg):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.theory.dmft.max_iter, desc="DMFT iterations", unit="it", disable=None)

    def callback(iteration: int, residual: float) -> None:
        bar.update(1)
        bar.set_postfix(residual=f"{residual:.2e}")
        if residual < cfg.theory.dmft.tol:
            bar.close()

    return callback


_SOLVERS = {"population": _population, "longtime": _longtime, "dmft": _dmft}


def compute_theory(name: str, cfg, problem: Problem, sim: Simulation, schedule, spec_steps) -> TheoryResult:
    """Evaluate theory ``name`` for this run (its parameters, step h, and time grid ``schedule``)."""
    return _SOLVERS[name](cfg, problem, sim, schedule, spec_steps)
