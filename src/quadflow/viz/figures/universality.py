"""Gaussian universality: the GOE design against real Gaussian inputs at the same parameters.

Jobs differ in ``data.design`` (``gaussian | goe``) and seed. Curves are seed means of
``sim/mse`` and ``sim/train_loss`` over t; the final values are compared with each other
and with the long-time theory (derived for the GOE design, theory.md section 3).
"""
from __future__ import annotations

import numpy as np

from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.stats import seed_means
from quadflow.viz.figures.style import colors, log_axes, subplots

METRICS = ("mse", "train_loss")


def _design(job) -> str:
    return job.config["data"]["design"]


def collect(jobs, quick: bool) -> FigureData:
    ok = [j for j in jobs if j.ok]
    curves = []
    for design in sorted({_design(j) for j in ok}):
        runs = [j.rows for j in ok if _design(j) == design]
        length = min(len(r) for r in runs)
        for i in range(length):
            curves.append({"design": design, "t": runs[0][i]["t"],
                           **{f"{m}_mean": float(np.mean([r[i][f"sim/{m}"] for r in runs])) for m in METRICS}})
    finals = seed_means(ok, _design, METRICS)
    for r in finals:
        r["design"] = r.pop("value")
    theory = {m: ok[0].summary.get(f"theory/longtime/{m}") for m in METRICS}
    agreement = {}
    for r in finals:
        for m in METRICS:
            if theory[m]:
                agreement[f"{r['design']}/{m}_rel_gap_to_theory"] = abs(r[f"{m}_mean"] - theory[m]) / theory[m]
    by = {r["design"]: r for r in finals}
    if {"gaussian", "goe"} <= set(by):
        for m in METRICS:
            agreement[f"gaussian_vs_goe/{m}_rel_diff"] = (abs(by["gaussian"][f"{m}_mean"] - by["goe"][f"{m}_mean"])
                                                         / by["goe"][f"{m}_mean"])
    return FigureData("", tables={"sim": finals, "curves": curves},
                      meta={"problem": ok[0].problem, "theory_longtime": theory, "agreement": agreement})


def draw(data: FigureData):
    fig, axes = subplots(len(METRICS))
    designs = [r["design"] for r in data.tables["sim"]]
    for design, color in zip(designs, colors(len(designs))):
        rows = [r for r in data.tables["curves"] if r["design"] == design and r["t"] > 0]
        final = next(r for r in data.tables["sim"] if r["design"] == design)
        for ax, m in zip(axes, METRICS):
            ax.plot([r["t"] for r in rows], [r[f"{m}_mean"] for r in rows], "-", color=color,
                    label=f"{design}: final {final[f'{m}_mean']:.4g} +- {final[f'{m}_sem']:.2g} "
                          f"({final['n_seeds']} seeds)")
    for ax, m in zip(axes, METRICS):
        th = data.meta["theory_longtime"].get(m)
        if th:
            ax.axhline(th, color="k", ls=":", label=f"long-time theory {th:.4g}")
        log_axes(ax)
        ax.set_xlabel("t")
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    p = data.meta["problem"]
    fig.suptitle(f"design: GOE vs Gaussian inputs, d={p['d']}, kappa={p['kappa']}, kappa*={p['kappa_star']}, "
                 f"alpha={p['alpha']}, lam={p['lam']}, Delta={p['Delta']}", fontsize=9)
    return fig
