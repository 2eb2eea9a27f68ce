"""Any sweep: a final value against a swept config key, with the theories' values, and the learning curves.

``x``: a dotted config key of the jobs (``problem.alpha``, ``trainer.h``, ``optim._target_``; default: the
first key that differs between the jobs). ``y``: a summary.json key (default ``sim/mse``). For ``y =
sim/<metric>`` the summary's ``theory/<name>/<metric>`` values are drawn at the same x, one line per theory.
The other swept keys (not following from x) split the jobs into series. When the jobs optimised another
``objective`` (summary ``objective_key``, e.g. Optuna's ``steps_to:sim/mse:0.02``) it gets its own panel.
The learning curves ``y(t)`` (metrics.jsonl) are coloured by x. Failed jobs are marked on the x axis.

The theories' values at the swept points are markers (nothing is known between them), except the long-time
theory along a swept ``problem.alpha|kappa|lam|Delta``: it is solved on a fine grid of x (table ``theory_curve``,
:data:`CURVE_POINTS` points per series) and drawn as a curve, grey and dashed where flagged ``valid=False``.
"""
from __future__ import annotations

import math

import warnings

import numpy as np

from quadflow.theory import LongTimeValidityWarning, longtime_curve
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.jobs import config_value, flat_config, series_label, varying_keys
from quadflow.viz.figures.style import colors, log_axes, subplots
from quadflow.viz.plots import FLAGGED_STYLE, flagged_label, plot_flagged

CURVE_POINTS, QUICK_CURVE_POINTS = 60, 12  # the long-time theory's grid along x, per series
CURVE_PARAMETERS = ("alpha", "kappa", "lam", "Delta")  # the problem parameters longtime_curve varies
THEORY_MARKERS = ("s", "D", "^", "v")


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _x(value):
    """A config value as a table cell: numbers stay numbers, anything else a string."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def longtime_rows(jobs, x: str, metric: str, series: str, points: int) -> list[dict]:
    """Rows ``{series, theory: "longtime", x, y, valid (0/1)}``: the long-time ``metric`` (``mse``, ``test_error``,
    ``train_loss``, ``in_sample_error`` or ``rank_fraction``) on ``points`` values of the swept ``x = problem.<p>``,
    from the smallest to the largest swept value (log-spaced when they span a decade or more, and for lam), the
    other parameters those of ``jobs[0]``; none when x is no :data:`CURVE_PARAMETERS` key or the jobs span a single
    value."""
    vary = x[len("problem."):]
    if not x.startswith("problem.") or vary not in CURVE_PARAMETERS:
        return []
    values = sorted({float(config_value(j, x)) for j in jobs})
    values = [v for v in values if v > 0] if vary == "lam" else values
    if len(values) < 2:
        return []
    lo, hi = values[0], values[-1]
    grid = np.geomspace(lo, hi, points) if lo > 0 and (hi / lo >= 10 or vary == "lam") else np.linspace(lo, hi, points)
    fixed = {k: jobs[0].problem[k] for k in ("alpha", "kappa", "kappa_star", "lam", "Delta") if k != vary}
    with warnings.catch_warnings():  # flagged points are drawn as such
        warnings.simplefilter("ignore", LongTimeValidityWarning)
        curve = longtime_curve(vary, grid, **fixed)
    ys = curve[metric]
    if metric == "test_error" and config_value(jobs[0], "data.noisy_test"):
        ys = ys + (grid if vary == "Delta" else fixed["Delta"])  # 2 mse + Delta against noisy test labels
    return [{"series": series, "theory": "longtime", "x": float(v), "y": float(yv), "valid": int(ok)}
            for v, yv, ok, conv in zip(grid, ys, curve["valid"], curve["converged"]) if conv]


def collect(jobs, quick: bool, x: str | None = None, y: str | None = None) -> FigureData:
    y = y or "sim/mse"
    keys = varying_keys(jobs, first=x)
    if not keys:
        raise ValueError("the jobs differ in no config key: give the swept key (--x KEY)")
    x = keys[0]
    if all(config_value(j, x) is None for j in jobs):
        raise ValueError(f"no job has the config key {x!r}")
    series_keys = keys[1:]
    metric = y[len("sim/"):] if y.startswith("sim/") else None
    objective_key = next((j.summary.get("objective_key") for j in jobs if j.summary.get("objective_key")), None)
    sim, theory, curves, failed = [], [], [], []
    for j in jobs:
        xv, series = _x(config_value(j, x)), series_label(j, series_keys)
        if not j.ok:
            failed.append({"job": j.path.name, "x": xv, "series": series, "status": j.summary.get("status"),
                           "stage": j.summary.get("stage"), "error": j.summary.get("error")})
            continue
        sim.append({"job": j.path.name, "x": xv, "series": series, "y": _number(j.summary.get(y)),
                    "objective": _number(j.summary.get("objective"))})
        if metric is not None:
            for key, value in j.summary.items():
                parts = key.split("/")
                if len(parts) == 3 and parts[0] == "theory" and parts[2] == metric and _number(value) == _number(value):
                    theory.append({"x": xv, "series": series, "theory": parts[1], "y": float(value),
                                   "valid": int(j.summary.get(f"theory/{parts[1]}/valid", True) is not False)})
        curves += [{"job": j.path.name, "x": xv, "series": series, "t": r["t"], "y": _number(r.get(y))}
                   for r in j.rows if "t" in r and y in r]
    curve = []
    for series in dict.fromkeys(r["series"] for r in theory if r["theory"] == "longtime"):
        group = [j for j in jobs if j.ok and series_label(j, series_keys) == series]
        curve += longtime_rows(group, x, metric, series, QUICK_CURVE_POINTS if quick else CURVE_POINTS)
    first = flat_config(jobs[0].config)
    fixed = {k[len("problem."):]: v for k, v in first.items() if k.startswith("problem.") and k not in keys}
    return FigureData("", tables={"sim": sim, "theory": theory, "theory_curve": curve, "curves": curves,
                                  "failed": failed},
                      meta={"x": x, "y": y, "series_keys": series_keys, "objective_key": objective_key,
                            "fixed": fixed, "jobs": len(jobs), "failed_jobs": len(failed)})


def _positions(values: list) -> tuple[dict, list | None]:
    """x positions: the numbers themselves, or (categorical x) 0, 1, ... with the tick labels."""
    if all(isinstance(v, (int, float)) for v in values):
        return {v: v for v in values}, None
    labels = sorted({str(v) for v in values})
    return {v: labels.index(str(v)) for v in values}, labels


def _log_scales(ax, xs, ys, categorical: bool) -> None:
    finite = [v for v in ys if v == v and abs(v) != math.inf]
    log_x = not categorical and xs and min(xs) > 0 and max(xs) / min(xs) >= 10
    log_y = bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= 10
    if log_x or log_y:
        log_axes(ax, x=bool(log_x), y=log_y)


def _final_panel(ax, data: FigureData, value: str, pos: dict, ticks, ylabel: str) -> None:
    """``value`` (column of the sim table) against x, one colour per series; theory lines; failed jobs marked."""
    series = sorted({r["series"] for r in data.tables["sim"]} | {r["series"] for r in data.tables["failed"]})
    ys = []
    for s, color in zip(series, colors(len(series))):
        rows = sorted((r for r in data.tables["sim"] if r["series"] == s), key=lambda r: pos[r["x"]])
        tag = f", {s}" if s else ""
        finite = [r for r in rows if r[value] == r[value] and abs(r[value]) != math.inf]
        if finite:
            ax.plot([pos[r["x"]] for r in finite], [r[value] for r in finite], "o", color=color, mfc="none",
                    label=f"simulation{tag}")
            ys += [r[value] for r in finite]
        off = [r for r in rows if r not in finite]
        if off:  # inf: a steps_to objective never reached (or GD oscillated)
            ax.plot([pos[r["x"]] for r in off], [0.97] * len(off), "^", color=color, transform=ax.get_xaxis_transform(),
                    label=f"not reached / oscillating{tag}")
        if value == "y":
            ys += _theory_lines(ax, data, s, color, tag, pos)
        bad = [r for r in data.tables["failed"] if r["series"] == s]
        if bad:
            ax.plot([pos[r["x"]] for r in bad], [0.03] * len(bad), "x", color=color, transform=ax.get_xaxis_transform(),
                    label=f"failed / diverged{tag}")
    xs = [pos[r["x"]] for r in data.tables["sim"] + data.tables["failed"]]
    _log_scales(ax, xs, ys, ticks is not None)
    if ticks is not None:
        ax.set_xticks(range(len(ticks)), ticks, rotation=20, fontsize=7)
    ax.set_xlabel(data.meta["x"])
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _theory_lines(ax, data: FigureData, series: str, color, tag: str, pos: dict) -> list:
    """The theories of one series: a fine-grid curve (table ``theory_curve``) where there is one, else markers at
    the swept points; flagged values (``valid`` 0) in :data:`FLAGGED_STYLE`. Returns the y values drawn."""
    curves = [r for r in data.tables.get("theory_curve", []) if r["series"] == series]
    ys = []
    names = sorted({r["theory"] for r in data.tables["theory"] if r["series"] == series})
    for i, name in enumerate(names):
        curve = sorted((r for r in curves if r["theory"] == name), key=lambda r: r["x"])
        if curve:
            plot_flagged(ax, [r["x"] for r in curve], [r["y"] for r in curve], [r["valid"] == 1 for r in curve],
                         color=color, label=f"{name} (theory){tag}")
            ys += [r["y"] for r in curve]
            continue
        points = [r for r in data.tables["theory"] if r["series"] == series and r["theory"] == name]
        ok = [r for r in points if r.get("valid", 1) == 1]  # saved data without the column: nothing flagged
        marker = THEORY_MARKERS[i % len(THEORY_MARKERS)]
        if ok:
            ax.plot([pos[r["x"]] for r in ok], [r["y"] for r in ok], marker, ls="none", ms=4, color=color,
                    label=f"{name} (theory){tag}")
        flagged = [r for r in points if r not in ok]
        if flagged:
            ax.plot([pos[r["x"]] for r in flagged], [r["y"] for r in flagged], marker, ls="none", ms=4,
                    color=FLAGGED_STYLE["color"], label=flagged_label(ax))
        ys += [r["y"] for r in points]
    return ys


def _curves_panel(fig, ax, data: FigureData, pos: dict, ticks) -> None:
    """``y(t)`` of every finished job, coloured by its x (a colour bar for numeric x, a legend otherwise)."""
    import matplotlib as mpl

    jobs = list(dict.fromkeys(r["job"] for r in data.tables["curves"]))
    xs = {r["job"]: r["x"] for r in data.tables["curves"]}
    values = [pos[xs[j]] for j in jobs]
    if ticks is None:
        lo, hi = min(values), max(values)
        log = lo > 0 and hi / lo >= 10
        norm = (mpl.colors.LogNorm if log else mpl.colors.Normalize)(lo, hi if hi > lo else lo + 1)
        cmap = mpl.colormaps["viridis"]
        color = {j: cmap(norm(pos[xs[j]])) for j in jobs}
    else:
        palette = colors(len(ticks))
        color = {j: palette[pos[xs[j]]] for j in jobs}
    ys, seen = [], set()
    for j in jobs:
        rows = [r for r in data.tables["curves"] if r["job"] == j and r["t"] > 0 and r["y"] == r["y"]]
        label = None
        if ticks is not None and xs[j] not in seen:
            label, _ = f"{data.meta['x']}={xs[j]}", seen.add(xs[j])
        ax.plot([r["t"] for r in rows], [r["y"] for r in rows], "-", lw=1, color=color[j], label=label)
        ys += [r["y"] for r in rows]
    log_axes(ax, x=True, y=bool(ys) and min(ys) > 0)
    ax.set_xlabel("t")
    ax.set_ylabel(data.meta["y"])
    ax.set_title("learning curves", fontsize=10)
    ax.grid(alpha=0.3)
    if ticks is None:
        fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=data.meta["x"])
    else:
        ax.legend(fontsize=7)


def draw(data: FigureData):
    objective = data.meta.get("objective_key")
    with_objective = bool(objective) and objective != data.meta["y"] and any(
        r["objective"] == r["objective"] for r in data.tables["sim"])
    with_curves = bool(data.tables.get("curves"))
    fig, axes = subplots(1 + with_objective + with_curves)
    pos, ticks = _positions([r["x"] for r in data.tables["sim"] + data.tables["failed"] + data.tables.get("curves", [])])
    _final_panel(axes[0], data, "y", pos, ticks, f"final {data.meta['y']}")
    axes[0].set_title(f"final {data.meta['y']} against {data.meta['x']}", fontsize=10)
    if with_objective:
        _final_panel(axes[1], data, "objective", pos, ticks, objective)
        axes[1].set_title(f"objective {objective}", fontsize=10)
    if with_curves:
        _curves_panel(fig, axes[-1], data, pos, ticks)
    fixed = ", ".join(f"{k}={v}" for k, v in data.meta["fixed"].items())
    fig.suptitle(f"sweep of {data.meta['x']} ({data.meta['jobs']} jobs, {data.meta['failed_jobs']} failed); {fixed}",
                 fontsize=9)
    return fig
