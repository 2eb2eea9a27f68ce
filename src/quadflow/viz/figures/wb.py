"""One W&B run per figure, in the experiment's group: the PNG and its tables.

Offline by default; ``mode="disabled"`` or ``WANDB_MODE=disabled`` logs nothing
(:class:`quadflow.logging.WandbSink` handles both and any failure to start).
"""
from __future__ import annotations

from pathlib import Path

from quadflow.logging import WandbSink
from quadflow.viz.figures.data import FigureData


def log_figure(data: FigureData, png: Path, *, out_dir: Path, mode: str = "offline", project: str = "quadflow",
               entity: str | None = None, group: str | None = None) -> str | None:
    """Log ``png`` and every table of ``data`` (as ``wandb.Table``) to a new run; returns its id (None if off)."""
    sink = WandbSink.start(mode=mode, project=project, entity=entity, group=group or data.name,
                           name=f"figure:{data.name}", tags=["figure", data.name],
                           config={"figure": data.name, **{k: v for k, v in data.meta.items() if k != "agreement"}},
                           out_dir=Path(out_dir))
    if sink is None:
        return None
    logged = {}
    for table, rows in data.tables.items():
        columns = list(dict.fromkeys(k for r in rows for k in r))
        logged[f"{data.name}/{table}"] = sink.wandb.Table(columns=columns,
                                                          data=[[r.get(c) for c in columns] for r in rows])
    sink.run.log(logged)
    sink.log_images([png])
    flat = {f"agreement/{k}": v for k, v in data.meta.get("agreement", {}).items()}
    sink.finish(flat, 0)
    return sink.run_id
