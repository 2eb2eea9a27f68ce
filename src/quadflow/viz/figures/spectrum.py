"""Spectrum of the learned S: eigenvalues of converged simulations against the long-time density.

Theory (theory.md section 5): the non-zero eigenvalues of ``S_inf`` have density
``rho(s + q)`` above ``b = max(q, omega)`` (``omega``: the rank selection when kappa < 1)
and the rest sits at 0 (atom ``1 - rank_fraction``). Agreement: rank fraction, mean
eigenvalue ``Tr S / d``, and the Kolmogorov distance between the empirical and the
theoretical distribution functions (atom included).
"""
from __future__ import annotations

import numpy as np

from quadflow.theory import solve_longtime
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.style import subplots
from quadflow.viz.plots import spectrum_panel

PARAMS = ("alpha", "kappa", "kappa_star", "lam", "Delta")


def _theory_cdf(sol, grid: np.ndarray) -> np.ndarray:
    """Distribution function of the eigenvalues of ``S_inf`` on ``grid`` (atom at 0 included)."""
    rho = sol.spectrum(grid)
    mass = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(grid))])
    return sol.atom + mass


def kolmogorov_distance(eigs: np.ndarray, grid: np.ndarray, cdf: np.ndarray, tol: float) -> float:
    """``sup_x |F_emp(x) - F_th(x)|``; eigenvalues ``<= tol`` count as the atom at 0 (both one-sided limits
    of the empirical function are compared away from the atom, where ``F_th`` is continuous)."""
    x = np.sort(np.where(eigs > tol, eigs, 0.0))
    th = np.interp(x, grid, cdf)
    right = np.searchsorted(x, x, "right") / x.size
    left = np.searchsorted(x, x, "left") / x.size
    return float(max(np.max(np.abs(th - right)), np.max(np.abs(th - left)[x > 0], initial=0.0)))


def collect(jobs, quick: bool) -> FigureData:
    """One panel per parameter point; the eigenvalues of its seeds are pooled (``n_seeds`` x d of them)."""
    pooled: dict = {}
    for j in (j for j in jobs if j.ok and j.final_spectrum() is not None):
        pooled.setdefault(tuple(j.problem[k] for k in PARAMS), []).append(j)
    eig_rows, theory_rows, runs = [], [], []
    for key, group in pooled.items():
        params = dict(zip(PARAMS, key))
        spectra = [j.final_spectrum() for j in group]
        t, eigs = spectra[0][0], np.concatenate([e for _, e in spectra])
        sol = solve_longtime(**params)
        tol = group[0].config["record"]["rank_tol"]
        grid = np.linspace(0.0, 1.3 * max(eigs.max(), 1e-3), 200 if quick else 1000)
        kappa = params["kappa"]
        eig_rows += [{"kappa": kappa, "eigenvalue": float(e)} for e in eigs]
        theory_rows += [{"kappa": kappa, "s": float(s), "density": float(r)} for s, r in zip(grid, sol.spectrum(grid))]
        runs.append({**params, "d": group[0].problem["d"], "n_seeds": len(group), "t": t, "q": sol.q, "xi": sol.xi,
                     "omega": sol.omega, "rank_selected": bool(np.isfinite(sol.omega) and sol.omega > sol.q),
                     "valid": sol.valid,
                     "sim_rank_fraction": float(np.mean(eigs > tol)), "theory_rank_fraction": sol.rank_fraction,
                     "sim_trace": float(eigs.mean()), "theory_trace": sol.trace,
                     "kolmogorov_distance": kolmogorov_distance(eigs, grid, _theory_cdf(sol, grid), tol)})
    agreement = {f"kappa={r['kappa']}/{k}": r[k] for r in runs for k in ("kolmogorov_distance",)}
    agreement.update({f"kappa={r['kappa']}/trace_rel_gap": abs(r["sim_trace"] - r["theory_trace"]) / r["theory_trace"]
                      for r in runs})
    return FigureData("", tables={"sim": eig_rows, "theory": theory_rows}, meta={"runs": runs, "agreement": agreement})


def draw(data: FigureData):
    runs = data.meta["runs"]
    fig, axes = subplots(len(runs), width=5.2)
    for ax, run in zip(axes, runs):
        kappa = run["kappa"]
        spectrum_panel(ax, data.column("sim", "eigenvalue", kappa=kappa), run["sim_rank_fraction"],
                       (data.column("theory", "s", kappa=kappa), data.column("theory", "density", kappa=kappa)),
                       1.0 - run["theory_rank_fraction"],
                       sim_label=f"simulation d={run['d']} ({run['n_seeds']} seeds), t={run['t']:g}",
                       flagged=not run["valid"])
        sel = f", rank selection at omega={run['omega']:.2f}" if run["rank_selected"] else ""
        ax.set_title(f"kappa={kappa}: rank {run['sim_rank_fraction']:.3f} (sim) vs "
                     f"{run['theory_rank_fraction']:.3f} (theory){sel}", fontsize=8)
    r = runs[0]
    fig.suptitle(f"alpha={r['alpha']}, kappa*={r['kappa_star']}, lam={r['lam']}, Delta={r['Delta']}", fontsize=9)
    return fig
