"""Finite-size scaling: long-time simulation values at several d, extrapolated to d -> infinity.

Each d is averaged over seeds; the extrapolation is a weighted least-squares fit
``value(d) = a + b/d`` (leading finite-size correction; weights 1/sem^2, or equal
weights with one seed), ``a`` compared with the static equations (theory.md section 5).
"""
from __future__ import annotations

import numpy as np

from quadflow.theory import solve_longtime
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.stats import seed_means
from quadflow.viz.figures.style import colors, subplots

METRICS = ("mse", "train_loss")
PARAMS = ("alpha", "kappa", "kappa_star", "lam", "Delta")


def extrapolate(d: np.ndarray, mean: np.ndarray, sem: np.ndarray) -> tuple[float, float, float]:
    """``(a, a_err, b)`` of the fit ``mean = a + b/d``; ``a_err`` from the fit's covariance."""
    w = 1.0 / sem if np.all(sem > 0) else np.ones_like(mean)
    A = np.stack([np.ones_like(d), 1.0 / d], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(A, mean * w, rcond=None)
    cov = np.linalg.pinv(A.T @ A)
    if not np.all(sem > 0):  # unweighted: scale by the residual variance
        dof = max(1, d.size - 2)
        cov *= np.sum((A @ coef - mean * w) ** 2) / dof
    return float(coef[0]), float(np.sqrt(cov[0, 0])), float(coef[1])


def collect(jobs, quick: bool) -> FigureData:
    ok = [j for j in jobs if j.ok]
    params = {k: ok[0].problem[k] for k in PARAMS}
    sol = solve_longtime(**params)
    rows = seed_means(ok, lambda j: j.problem["d"], METRICS)
    for r in rows:
        r["d"] = r.pop("value")
    d = np.array([r["d"] for r in rows], dtype=float)
    fits, agreement = {}, {}
    for m in METRICS:
        a, a_err, b = extrapolate(d, np.array([r[f"{m}_mean"] for r in rows]), np.array([r[f"{m}_sem"] for r in rows]))
        theory = float(getattr(sol, m))
        fits[m] = {"extrapolated": a, "extrapolated_err": a_err, "slope": b, "theory": theory}
        agreement[f"{m}_extrapolated_rel_gap"] = abs(a - theory) / theory
        agreement[f"{m}_largest_d_rel_gap"] = abs(rows[-1][f"{m}_mean"] - theory) / theory
    return FigureData("", tables={"sim": rows}, meta={"problem": params, "fits": fits, "agreement": agreement,
                                                      "seeds": [r["n_seeds"] for r in rows]})


def draw(data: FigureData):
    fig, axes = subplots(len(METRICS))
    rows = data.tables["sim"]
    inv_d = np.array([1.0 / r["d"] for r in rows])
    x = np.linspace(0, inv_d.max() * 1.05, 50)
    for ax, m, color in zip(axes, METRICS, colors(len(METRICS))):
        fit = data.meta["fits"][m]
        ax.errorbar(inv_d, [r[f"{m}_mean"] for r in rows], yerr=[r[f"{m}_sem"] for r in rows], fmt="o",
                    color=color, label="simulation (mean over seeds)")
        ax.plot(x, fit["extrapolated"] + fit["slope"] * x, "--", color=color,
                label=f"fit a + b/d: a = {fit['extrapolated']:.4g} +- {fit['extrapolated_err']:.2g}")
        ax.plot([0], [fit["theory"]], "k*", ms=12, label=f"theory (d = inf): {fit['theory']:.4g}")
        ax.set_xlabel("1/d")
        ax.set_title(f"long-time {m}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    p = data.meta["problem"]
    fig.suptitle(", ".join(f"{k}={v}" for k, v in p.items()), fontsize=9)
    return fig
