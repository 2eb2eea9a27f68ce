"""Learning curves: mse(t) and train_loss(t) of the simulation against the DMFT (theory.md section 4).

One job per student width kappa (under- and over-parameterised) at fixed alpha, kappa_star in the
preset; any sweep works: the curves are labelled by the keys the jobs differ in (``kappa=0.25``,
``alpha=2.0``, ``trainer.h=0.05``). The DMFT line is drawn for jobs run with ``theory=[dmft, ...]``.
Agreement: relative gap ``|sim - dmft| / dmft`` over the logged times ``t >= T_MIN``. The long-time limit is a
dotted line, grey and dashed where the run's solution is flagged ``valid=False`` (the top-m cut binds).
"""
from __future__ import annotations

import numpy as np

from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.jobs import series_label, varying_keys
from quadflow.viz.figures.style import colors, log_axes, subplots
from quadflow.viz.plots import FLAGGED_STYLE, flagged_label

METRICS = ("mse", "train_loss")
T_MIN = 0.5  # the first steps are dominated by the initialisation and agree trivially


def collect(jobs, quick: bool) -> FigureData:
    ok = [j for j in jobs if j.ok]
    keys = varying_keys(ok) or ["problem.kappa"]  # the swept keys label the curves (kappa in the preset)
    rows, agreement, longtime = [], {}, []
    for j in ok:
        series = series_label(j, keys)
        for r in j.rows:
            rows.append({"series": series, "t": r["t"], **{f"sim_{m}": r.get(f"sim/{m}") for m in METRICS},
                         **{f"dmft_{m}": r.get(f"theory/dmft/{m}") for m in METRICS}})
        longtime.append({"series": series, **{m: j.summary.get(f"theory/longtime/{m}") for m in METRICS},
                         "valid": int(j.summary.get("theory/longtime/valid", True) is not False)})
        for m in METRICS:
            pairs = np.array([(r[f"sim/{m}"], r[f"theory/dmft/{m}"]) for r in j.rows
                              if r["t"] >= T_MIN and r.get(f"theory/dmft/{m}") is not None], dtype=float)
            if len(pairs):
                gap = np.abs(pairs[:, 0] - pairs[:, 1]) / np.abs(pairs[:, 1])
                agreement[f"{series}/{m}_rel_gap_median"] = float(np.median(gap))
                agreement[f"{series}/{m}_rel_gap_max"] = float(np.max(gap))
    first = ok[0]
    params = {k: v for k, v in first.problem.items() if f"problem.{k}" not in keys}
    return FigureData("", tables={"sim": rows, "longtime": longtime},
                      meta={"problem": params, "h": first.h, "series_keys": keys,
                            "dmft": first.config["theory"].get("dmft"), "t_min": T_MIN, "agreement": agreement})


def _series(row: dict) -> str:
    """The curve a row belongs to (saved data from before the ``series`` column: its kappa)."""
    return row["series"] if isinstance(row.get("series"), str) else f"kappa={row['kappa']}"


def _finite(values) -> bool:
    return any(v is not None and np.isfinite(v) for v in values)


def draw(data: FigureData):
    fig, axes = subplots(2)
    series = list(dict.fromkeys(_series(r) for r in data.tables["sim"]))
    for label, color in zip(series, colors(len(series))):
        rows = [r for r in data.tables["sim"] if _series(r) == label and r["t"] > 0]
        lt = next((r for r in data.tables["longtime"] if _series(r) == label), {})
        for ax, m in zip(axes, METRICS):
            t = [r["t"] for r in rows]
            ax.plot(t, [r[f"sim_{m}"] for r in rows], "o", ms=3, color=color, mfc="none",
                    label=f"simulation, {label}")
            dmft = [r[f"dmft_{m}"] for r in rows]
            if _finite(dmft):  # no DMFT line (nor legend entry) for a run without theory=[dmft]
                ax.plot(t, dmft, "-", color=color, label=f"DMFT, {label}")
            if _finite([lt.get(m)]) and lt.get("valid", 1) == 1:  # saved data without the column: not flagged
                ax.axhline(lt[m], color=color, ls=":", lw=1)
            elif _finite([lt.get(m)]):
                ax.axhline(lt[m], **FLAGGED_STYLE, label=flagged_label(ax))
    for ax, m in zip(axes, METRICS):
        log_axes(ax)
        ax.set_xlabel("t")
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    p = data.meta["problem"]
    fixed = ", ".join(f"{k}={p[k]}" for k in ("d", "kappa", "alpha", "kappa_star", "lam", "Delta") if k in p)
    fig.suptitle(f"{fixed}, h={data.meta['h']} (dotted: long-time limit)", fontsize=9)
    return fig
