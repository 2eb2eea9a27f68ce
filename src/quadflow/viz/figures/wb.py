"""One W&B run per figure (``job_type="figure"``), in the experiment's group: the PNG, its tables, their charts.

Offline by default; ``mode="disabled"`` or ``WANDB_MODE=disabled`` logs nothing, and a mode or
project of None leaves W&B's environment in force (:class:`quadflow.logging.WandbSink` handles
these and any failure to start). Each table also becomes line charts ``charts/<table>/<quantity>``
(:func:`table_charts`): columns ``sim_<q>``, ``theory_<q>``, ``dmft_<q>``, ... of one quantity share
one chart against the table's x column, one line per value of a parameter column (e.g. kappa).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

from quadflow.logging import WandbSink
from quadflow.viz.figures.data import FigureData

X_COLUMNS = ("t", "s", "alpha", "d", "kappa")  # the x column of a table: meta["vary"] first, then these
PARAMETERS = ("kappa", "kappa_star", "Delta", "lam", "alpha", "design", "d")  # a line per value of the first
SOURCES = ("sim", "theory", "dmft", "population", "longtime")  # `<source>_<quantity>` columns share a chart
NOT_PLOTTED = ("seed", "n_seeds", "jobs")
MAX_LINES = 12


def _numeric(rows: list[dict], column: str) -> bool:
    values = [r.get(column) for r in rows if r.get(column) is not None]
    return (all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            and sum(math.isfinite(v) for v in values) >= 2)


def table_charts(rows: list[dict], x_hint: str | None = None) -> list[tuple[str, str, dict]]:
    """``(quantity, x column, {label: [(x, y), ...]})`` of each line chart of one figure table (none when the
    table has no x column with more than two values)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    numeric = [c for c in columns if _numeric(rows, c)]
    distinct = {c: {r.get(c) for r in rows} for c in columns}
    x = next((c for c in (x_hint, *X_COLUMNS) if c in numeric and len(distinct[c]) > 2), None)
    if x is None:
        return []
    group = next((c for c in PARAMETERS if c != x and c in columns and 1 < len(distinct[c]) <= MAX_LINES), None)
    families: dict = {}
    for c in numeric:
        if c == x or c in PARAMETERS or c in NOT_PLOTTED:
            continue
        source, _, quantity = c.partition("_")
        families.setdefault(quantity if source in SOURCES and quantity else c, []).append(c)
    values = sorted(distinct[group], key=str) if group else [None]
    charts = []
    for quantity, cols in families.items():
        series = {}
        for value in values:
            sub = [r for r in rows if group is None or r.get(group) == value]
            for c in cols:
                series[c if group is None else f"{c} {group}={value}"] = [(r.get(x), r.get(c)) for r in sub]
        charts.append((quantity, x, series))
    return charts


def log_figure(data: FigureData, png: Path, *, out_dir: Path, mode: str | None = None, project: str | None = None,
               entity: str | None = None, group: str | None = None) -> str | None:
    """Log ``png``, every table of ``data`` (as ``wandb.Table``) and its charts to a new run; returns its id
    (None if off)."""
    sink = WandbSink.start(mode=mode, project=project, entity=entity, group=group or data.name,
                           name=f"figure:{data.name}", tags=["figure", data.name],
                           config={"figure": data.name, **{k: v for k, v in data.meta.items() if k != "agreement"}},
                           out_dir=Path(out_dir), job_type="figure")
    if sink is None:
        return None
    logged = {}
    for table, rows in data.tables.items():
        columns = list(dict.fromkeys(k for r in rows for k in r))
        logged[f"{data.name}/{table}"] = sink.wandb.Table(columns=columns,
                                                          data=[[r.get(c) for c in columns] for r in rows])
    sink.run.log(logged)
    try:
        sink.log_charts({f"charts/{table}/{quantity}": sink.line_chart(series, xname=x, yname=quantity,
                                                                       title=f"{data.name} ({table}): {quantity}")
                         for table, rows in data.tables.items()
                         for quantity, x, series in table_charts(rows, data.meta.get("vary"))})
    except Exception as err:  # the tables and the PNG are logged already
        warnings.warn(f"W&B could not log the charts of {data.name} ({type(err).__name__}: {err})", RuntimeWarning)
    sink.log_images([png])
    flat = {f"agreement/{k}": v for k, v in data.meta.get("agreement", {}).items()}
    sink.finish(flat, 0)
    return sink.run_id
