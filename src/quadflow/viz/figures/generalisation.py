"""Long-time test error against alpha (double descent) or kappa (over-parameterisation).

Simulation: the final ``sim/test_error`` (= 2 mse, clean labels) and ``sim/train_loss``
of every run of the sweep (each replica of a job run with ``replicas=R``), grouped by the label noise ``Delta``. Theory: the static
equations (theory.md section 5) along the same axis, with the other parameters of the
jobs, and the thresholds of section 6: interpolation where ``Delta > 0``, perfect
recovery (``lam -> 0+``) where ``Delta = 0``. Theory points flagged ``valid=False`` (the top-m cut binds) are
drawn grey and dashed.
"""
from __future__ import annotations

import math

import numpy as np

from quadflow.theory import interpolation_threshold, longtime_curve, perfect_recovery_threshold, solve_longtime
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.style import colors, log_axes, subplots
from quadflow.viz.plots import plot_flagged

FIXED = ("alpha", "kappa", "kappa_star", "lam", "Delta")


def _groups(jobs, vary: str) -> dict:
    """Jobs keyed by the parameters other than ``vary`` (one theory curve per key)."""
    out: dict = {}
    for j in jobs:
        if j.ok:
            key = tuple((k, j.problem[k]) for k in FIXED if k != vary)
            out.setdefault(key, []).append(j)
    return out


def _theory_curve(vary: str, grid: np.ndarray, fixed: dict) -> dict:
    """Static-equation solutions along ``grid`` (continuation in alpha; point by point in kappa,
    whose curve has a kink at kappa = 1 where the rank constraint switches off)."""
    if vary == "alpha":
        return longtime_curve("alpha", grid, **fixed)
    sols = [solve_longtime(**fixed, kappa=float(k)) for k in grid]
    return {"test_error": np.array([s.test_error for s in sols]), "train_loss": np.array([s.train_loss for s in sols]),
            "converged": np.array([s.converged for s in sols]), "valid": np.array([s.valid for s in sols]),
            "branch": np.array([s.branch for s in sols])}


def _alpha_threshold(kappa: float, fixed: dict) -> float:
    """Interpolation threshold (Delta > 0) or the lam -> 0+ perfect-recovery threshold (Delta = 0)."""
    if fixed["Delta"] > 0:
        return interpolation_threshold(kappa, fixed["kappa_star"], fixed["Delta"])
    return perfect_recovery_threshold(kappa, fixed["kappa_star"])


def _threshold(vary: str, grid: np.ndarray, fixed: dict) -> float:
    """The threshold of :func:`_alpha_threshold` on the varied axis (NaN where the axis does not cross it).

    Along kappa it is where ``alpha_threshold(kappa) = alpha``, interpolated in log kappa (or the first grid
    point beyond it, where the threshold jumps from infinity at kappa = kappa_star).
    """
    if vary == "alpha":
        return _alpha_threshold(fixed["kappa"], fixed)
    gap = np.array([_alpha_threshold(float(k), fixed) for k in grid]) - fixed["alpha"]
    cross = np.nonzero(np.sign(gap[:-1]) != np.sign(gap[1:]))[0]
    if not cross.size:
        return math.nan
    i = cross[0]
    if not np.all(np.isfinite(gap[i:i + 2])):
        return float(grid[i + 1])
    u = np.log(grid[i:i + 2])
    return float(np.exp(u[0] - gap[i] * (u[1] - u[0]) / (gap[i + 1] - gap[i])))


def collect(jobs, quick: bool, vary: str) -> FigureData:
    sim_rows, theory_rows, curves = [], [], []
    for key, group in _groups(jobs, vary).items():
        fixed = dict(key)
        xs = np.array(sorted(j.problem[vary] for j in group))
        grid = np.geomspace(xs.min() * 0.8, xs.max() * 1.1, 12 if quick else 60)
        curve = _theory_curve(vary, grid, fixed)
        for i, x in enumerate(grid):
            theory_rows.append({**fixed, vary: float(x), "test_error": curve["test_error"][i],
                                "train_loss": curve["train_loss"][i], "converged": bool(curve["converged"][i]),
                                "valid": int(curve["valid"][i])})  # 0/1: a number in the CSV
        gaps = []
        for j in group:
            sol = solve_longtime(**fixed, **{vary: j.problem[vary]})
            rows = [r for r in j.rows if r.get("sim/test_error") is not None]
            drift = (abs(rows[-1]["sim/test_error"] - rows[-2]["sim/test_error"]) / rows[-1]["sim/test_error"]
                     if len(rows) > 1 else math.nan)
            for r, (test, train) in enumerate(zip(j.values("test_error"), j.values("train_loss"))):  # each run
                sim_rows.append({**fixed, vary: j.problem[vary], "d": j.problem["d"], "seed": j.config["seed"] + r,
                                 "t": j.summary["t"], "sim_test_error": test, "sim_train_loss": train,
                                 "theory_test_error": sol.test_error, "theory_train_loss": sol.train_loss,
                                 "last_step_rel_change": drift, "job": j.path.name})
                gaps.append(abs(test - sol.test_error) / sol.test_error)
        curves.append({**fixed, "threshold": _threshold(vary, grid, fixed),
                       "threshold_kind": "interpolation" if fixed["Delta"] > 0 else "perfect recovery (lam -> 0+)",
                       "test_error_rel_gap_median": float(np.median(gaps)),
                       "test_error_rel_gap_max": float(np.max(gaps)), "jobs": len(group)})
    d = sorted({r["d"] for r in sim_rows})
    agreement = {f"Delta={c['Delta']}/test_error_rel_gap_median": c["test_error_rel_gap_median"] for c in curves}
    agreement.update({f"Delta={c['Delta']}/test_error_rel_gap_max": c["test_error_rel_gap_max"] for c in curves})
    return FigureData("", tables={"sim": sim_rows, "theory": theory_rows},
                      meta={"vary": vary, "d": d, "curves": curves, "agreement": agreement})


def draw(data: FigureData):
    vary = data.meta["vary"]
    fig, (ax_te, ax_tr) = subplots(2)
    for c, color in zip(data.meta["curves"], colors(len(data.meta["curves"]))):
        where = {k: c[k] for k in FIXED if k != vary}
        label = f"Delta={c['Delta']}, lam={c['lam']}"
        for ax, metric in ((ax_te, "test_error"), (ax_tr, "train_loss")):
            th = [r for r in data.tables["theory"] if all(r[k] == v for k, v in where.items())]
            sim = [(r[vary], r[f"sim_{metric}"]) for r in data.tables["sim"]
                   if all(r[k] == v for k, v in where.items())]
            # saved data without the valid column: nothing flagged
            plot_flagged(ax, [r[vary] for r in th], [r[metric] for r in th], [r.get("valid", 1) == 1 for r in th],
                         color=color, label=f"theory, {label}")
            ax.plot(*zip(*sim), "o", color=color, mfc="none", label=f"simulation, {label}")
            if c["threshold"] is not None and math.isfinite(c["threshold"]):
                ax.axvline(c["threshold"], color=color, ls=":", lw=1)
    fixed = {k: v for k, v in data.meta["curves"][0].items() if k in FIXED and k not in (vary, "Delta", "lam")}
    for ax, title in ((ax_te, "long-time test error (2 mse)"), (ax_tr, "long-time train loss")):
        log_axes(ax)
        ax.set_xlabel(vary)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    ax_te.legend(fontsize=7)
    fig.suptitle(f"{', '.join(f'{k}={v}' for k, v in fixed.items())}, d={data.meta['d']} "
                 "(dotted: interpolation threshold if Delta > 0, perfect recovery if Delta = 0)", fontsize=9)
    return fig
