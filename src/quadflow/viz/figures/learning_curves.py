"""Learning curves: mse(t) and train_loss(t) of the simulation against the DMFT (theory.md section 4).

One job per student width kappa (under- and over-parameterised) at fixed alpha, kappa_star;
the jobs must have run with ``theory=[dmft, ...]``. Agreement: relative gap
``|sim - dmft| / dmft`` over the logged times ``t >= T_MIN``.
"""
from __future__ import annotations

import numpy as np

from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.style import colors, log_axes, subplots

METRICS = ("mse", "train_loss")
T_MIN = 0.5  # the first steps are dominated by the initialisation and agree trivially


def collect(jobs, quick: bool) -> FigureData:
    rows, agreement, longtime = [], {}, []
    for j in (j for j in jobs if j.ok):
        kappa = j.problem["kappa"]
        for r in j.rows:
            rows.append({"kappa": kappa, "t": r["t"], **{f"sim_{m}": r.get(f"sim/{m}") for m in METRICS},
                         **{f"dmft_{m}": r.get(f"theory/dmft/{m}") for m in METRICS}})
        longtime.append({"kappa": kappa, **{m: j.summary.get(f"theory/longtime/{m}") for m in METRICS}})
        for m in METRICS:
            pairs = np.array([(r[f"sim/{m}"], r[f"theory/dmft/{m}"]) for r in j.rows
                              if r["t"] >= T_MIN and r.get(f"theory/dmft/{m}") is not None], dtype=float)
            if len(pairs):
                gap = np.abs(pairs[:, 0] - pairs[:, 1]) / np.abs(pairs[:, 1])
                agreement[f"kappa={kappa}/{m}_rel_gap_median"] = float(np.median(gap))
                agreement[f"kappa={kappa}/{m}_rel_gap_max"] = float(np.max(gap))
    first = next(j for j in jobs if j.ok)
    params = {k: v for k, v in first.problem.items() if k != "kappa"}
    return FigureData("", tables={"sim": rows, "longtime": longtime},
                      meta={"problem": params, "h": first.h,
                            "dmft": first.config["theory"].get("dmft"), "t_min": T_MIN, "agreement": agreement})


def draw(data: FigureData):
    fig, axes = subplots(2)
    kappas = sorted({r["kappa"] for r in data.tables["sim"]})
    for kappa, color in zip(kappas, colors(len(kappas))):
        rows = [r for r in data.tables["sim"] if r["kappa"] == kappa and r["t"] > 0]
        lt = next((r for r in data.tables["longtime"] if r["kappa"] == kappa), {})
        for ax, m in zip(axes, METRICS):
            t = [r["t"] for r in rows]
            ax.plot(t, [r[f"sim_{m}"] for r in rows], "o", ms=3, color=color, mfc="none",
                    label=f"simulation, kappa={kappa}")
            ax.plot(t, [r[f"dmft_{m}"] for r in rows], "-", color=color, label=f"DMFT, kappa={kappa}")
            if lt.get(m) is not None and np.isfinite(lt[m]):
                ax.axhline(lt[m], color=color, ls=":", lw=1)
    for ax, m in zip(axes, METRICS):
        log_axes(ax)
        ax.set_xlabel("t")
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    p = data.meta["problem"]
    fig.suptitle(f"d={p['d']}, alpha={p['alpha']}, kappa*={p['kappa_star']}, lam={p['lam']}, Delta={p['Delta']}, "
                 f"h={data.meta['h']} (dotted: long-time limit)", fontsize=9)
    return fig
