"""Hydra callbacks (an edge module: imports Hydra)."""
from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback

from quadflow.app import print_sweep_table, sweep_failures


class SweepSummary(Callback):
    """At the end of a multirun, write ``sweep_summary.json`` and print which jobs failed and why."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        rows = sweep_failures(sweep_dir)
        (sweep_dir / "sweep_summary.json").write_text(json.dumps(rows, indent=2))
        print_sweep_table(rows)
