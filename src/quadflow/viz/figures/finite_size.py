"""Finite-size scaling: long-time simulation values at several d, extrapolated to d -> infinity.

Each d is averaged over seeds; the extrapolation is :func:`quadflow.analysis.extrapolate` of every
seed's value (``a + b/d`` or ``a + b d^-p``, chosen by its nested-model test; ``a + b/d`` when there
are too few sizes for the power law), ``a`` compared with the static equations (theory.md section 5).
"""
from __future__ import annotations

import numpy as np

from quadflow.analysis import extrapolate_or_explain
from quadflow.theory import solve_longtime
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.stats import seed_means
from quadflow.viz.figures.style import colors, subplots

METRICS = ("mse", "train_loss")
PARAMS = ("alpha", "kappa", "kappa_star", "lam", "Delta")


def collect(jobs, quick: bool) -> FigureData:
    ok = [j for j in jobs if j.ok]
    params = {k: ok[0].problem[k] for k in PARAMS}
    sol = solve_longtime(**params)
    rows = seed_means(ok, lambda j: j.problem["d"], METRICS)
    for r in rows:
        r["d"] = r.pop("value")
    d = np.array([j.problem["d"] for j in ok], dtype=float)
    fits, agreement = {}, {}
    for m in METRICS:
        theory = float(getattr(sol, m))
        ex, refused = extrapolate_or_explain(d, [j.summary[f"sim/{m}"] for j in ok], theory=theory)
        if ex is None:
            raise ValueError(f"finite_size figure, {m}: {refused['1/d']}")
        a = ex.value
        fits[m] = {"extrapolated": a, "extrapolated_err": ex.error, "slope": ex.fit.b, "theory": theory,
                   "model": ex.model, "p": ex.p, "p_err": ex.p_err}
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
        p = fit.get("p", 1.0)  # figures saved before the power law have a + b/d
        law = "a + b/d" if p == 1.0 else f"a + b d^-p (p = {p:.2f})"
        ax.plot(x, fit["extrapolated"] + fit["slope"] * x ** p, "--", color=color,
                label=f"fit {law}: a = {fit['extrapolated']:.4g} +- {fit['extrapolated_err']:.2g}")
        ax.plot([0], [fit["theory"]], "k*", ms=12, label=f"theory (d = inf): {fit['theory']:.4g}")
        ax.set_xlabel("1/d")
        ax.set_title(f"long-time {m}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    p = data.meta["problem"]
    fig.suptitle(", ".join(f"{k}={v}" for k, v in p.items()), fontsize=9)
    return fig
