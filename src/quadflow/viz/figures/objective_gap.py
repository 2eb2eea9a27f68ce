"""The regularised objective's approach to its long-time limit: ``loss_reg(t) - loss_reg(infinity)`` against t.

``loss_reg = train_loss + lam * trace`` is the objective GD descends, per unit of ``m d`` (docs/architecture.md,
"Metrics"); its limit is the static solution's ``train_loss + lam * trace`` (``LongTimeSolution.loss_reg``,
docs/theory.md section 5) at the ratios the run realises. One curve per series (the swept keys other than
``seed``, e.g. ``alpha=0.2``): the mean over its seeds of ``sim/loss_reg`` at each logged time minus the limit,
and the DMFT's ``theory/dmft/loss_reg`` minus the same limit where the jobs logged it. On log axes the absolute
value is drawn, with open markers where the simulation's mean is below the limit (its finite-size offset).
"""
from __future__ import annotations

import math

import numpy as np

from quadflow.problem import Problem
from quadflow.theory import solve_longtime
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.jobs import run_values, series_label, varying_keys
from quadflow.viz.figures.style import colors, log_axes, subplots


def _seed_mean(group, key: str) -> dict:
    """``{t: (mean, standard error, n)}`` of ``key`` over the runs of ``group`` (its jobs, and their replicas) at
    each logged time."""
    by_t: dict = {}
    for j in group:
        for r in j.rows:
            if run_values(r, key):
                by_t.setdefault(r["t"], []).extend(run_values(r, key))
    out = {}
    for t, values in sorted(by_t.items()):
        x = np.asarray(values, dtype=float)
        out[t] = (float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0, x.size)
    return out


def collect(jobs, quick: bool) -> FigureData:
    """Tables ``sim`` ``{series, t, n_seeds, sim_loss_reg, sim_loss_reg_sem, sim_excess, dmft_excess}`` and
    ``limit`` ``{series, loss_reg, train_loss, trace, valid}``; meta ``agreement``: the last logged excess of
    each series relative to its limit."""
    ok = [j for j in jobs if j.ok]
    keys = [k for k in varying_keys(ok) if k != "seed"] or ["problem.alpha"]
    groups: dict = {}
    for j in ok:
        groups.setdefault(series_label(j, keys), []).append(j)
    rows, limits, agreement = [], [], {}
    for series, group in groups.items():
        sol = solve_longtime(Problem(**group[0].problem).realised())
        sim, dmft = _seed_mean(group, "sim/loss_reg"), _seed_mean(group, "theory/dmft/loss_reg")
        for t, (mean, sem, n) in sim.items():
            rows.append({"series": series, "t": t, "n_seeds": n, "sim_loss_reg": mean, "sim_loss_reg_sem": sem,
                         "sim_excess": mean - sol.loss_reg,
                         "dmft_excess": dmft[t][0] - sol.loss_reg if t in dmft else math.nan})
        limits.append({"series": series, "loss_reg": sol.loss_reg, "train_loss": sol.train_loss, "trace": sol.trace,
                       "valid": int(sol.valid)})
        agreement[f"{series}/final_excess_rel"] = rows[-1]["sim_excess"] / sol.loss_reg if sim else math.nan
    first = ok[0]
    params = {k: v for k, v in first.problem.items() if f"problem.{k}" not in keys}
    return FigureData("", tables={"sim": rows, "limit": limits},
                      meta={"problem": params, "h": first.h, "series_keys": keys, "agreement": agreement})


def draw(data: FigureData):
    fig, (ax,) = subplots(1, width=7.4, height=4.8)
    series = list(dict.fromkeys(r["series"] for r in data.tables["sim"]))
    for label, color in zip(series, colors(len(series))):
        rows = [r for r in data.tables["sim"] if r["series"] == label and r["t"] > 0]
        t = np.array([r["t"] for r in rows])
        excess = np.array([r["sim_excess"] for r in rows])
        above = excess > 0
        ax.plot(t[above], excess[above], "o", ms=3, color=color, label=f"simulation, {label}")
        ax.plot(t[~above], -excess[~above], "o", ms=3, color=color, mfc="none")
        dmft = np.array([r["dmft_excess"] for r in rows], dtype=float)
        if np.isfinite(dmft).any():
            ax.plot(t, np.abs(dmft), "-", color=color, lw=1, label=f"DMFT, {label}")
    log_axes(ax)
    ax.set_xlabel("t")
    ax.set_ylabel("|loss_reg(t) - loss_reg(infinity)|")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    p = data.meta["problem"]
    fixed = ", ".join(f"{k}={p[k]}" for k in ("d", "kappa", "kappa_star", "lam", "Delta") if k in p)
    ax.set_title(f"regularised objective minus its long-time limit (seed means)\n{fixed}, h={data.meta['h']}; "
                 "open markers: below the limit", fontsize=9)
    return fig
