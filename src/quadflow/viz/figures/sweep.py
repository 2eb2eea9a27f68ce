"""Any sweep: a final value against a swept config key, with the theories' values, and the learning curves.

``x``: a dotted config key of the jobs (``problem.alpha``, ``trainer.h``, ``optim._target_``; default: the
first key that differs between the jobs). ``y``: a summary.json key (default ``sim/mse``). For ``y =
sim/<metric>`` the summary's ``theory/<name>/<metric>`` values are drawn at the same x, one line per theory.
The other swept keys (not following from x) split the jobs into series. When the jobs optimised another
``objective`` (summary ``objective_key``, e.g. Optuna's ``steps_to:sim/mse:0.02``) it gets its own panel.
The learning curves ``y(t)`` (metrics.jsonl) are coloured by x. Failed jobs are marked on the x axis.
"""
from __future__ import annotations

import math

from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.jobs import config_value, flat_config, series_label, varying_keys
from quadflow.viz.figures.style import colors, log_axes, subplots


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _x(value):
    """A config value as a table cell: numbers stay numbers, anything else a string."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


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
                    theory.append({"x": xv, "series": series, "theory": parts[1], "y": float(value)})
        curves += [{"job": j.path.name, "x": xv, "series": series, "t": r["t"], "y": _number(r.get(y))}
                   for r in j.rows if "t" in r and y in r]
    first = flat_config(jobs[0].config)
    fixed = {k[len("problem."):]: v for k, v in first.items() if k.startswith("problem.") and k not in keys}
    return FigureData("", tables={"sim": sim, "theory": theory, "curves": curves, "failed": failed},
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
            for i, name in enumerate(sorted({r["theory"] for r in data.tables["theory"] if r["series"] == s})):
                th = sorted(((pos[r["x"]], r["y"]) for r in data.tables["theory"]
                             if r["series"] == s and r["theory"] == name))
                ax.plot(*zip(*th), ("-", "--", ":", "-.")[i % 4], color=color, label=f"{name}{tag}")
                ys += [v for _, v in th]
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
