"""Hydra callbacks: the sweep report and the experiment's figure."""
from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

from hydra.experimental.callback import Callback

from quadflow.cli.app import wandb_group
from quadflow.cli.sweeps import print_sweep_table, sweep_failures


def make_configured_figure(config, folder: Path, multirun: bool) -> None:
    """Draw ``config.figure`` (set by an experiment preset) from the jobs in ``folder``; a failure is reported,
    never raised, so that the sweep's own results stand."""
    name = config.get("figure")
    if not name or int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 draws
        return
    from quadflow.viz.figures import make_figure

    wb = config.tracking.wandb
    try:
        result = make_figure(name, folder, wandb={"mode": wb.mode, "project": wb.project, "entity": wb.entity,
                                                  "group": wb.group or wandb_group(config.hydra.runtime.choices.get("experiment"),
                                                                   folder.name if multirun else None)})
        print(f"figure {name}: " + ", ".join(result["files"]))
    except Exception as err:
        traceback.print_exc()
        print(f"figure {name} failed ({type(err).__name__}: {err}); redraw with "
              f"`python scripts/figures.py {name} --sweep-dir {folder}`")


class SweepSummary(Callback):
    """At the end of a multirun, write ``sweep_summary.json`` and print which jobs failed and why; then draw
    the experiment's figure (``figure: <name>`` in the preset). A single run draws its figure too."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        rows = sweep_failures(sweep_dir)
        (sweep_dir / "sweep_summary.json").write_text(json.dumps(rows, indent=2))
        print_sweep_table(rows)
        make_configured_figure(config, sweep_dir, multirun=True)

    def on_run_end(self, config, **kwargs) -> None:
        make_configured_figure(config, Path(config.hydra.runtime.output_dir), multirun=False)
