"""Hydra callbacks: the sweep checked before its first job, its report at the end, the experiment's figure."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from quadflow.cli.app import sweep_folder, wandb_group
from quadflow.cli.sweeps import check_sweep, print_sweep_table, searches, sweep_failed, sweep_failures
from quadflow.io import atomic_write_text, dumps

EXIT_CONFIG_ERROR = 2  # a value out of range (scripts/run.py exits with it too)


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
                                                                   sweep_folder(str(folder)) if multirun else None)})
        print(f"figure {name}: " + ", ".join(result["files"]))
    except Exception as err:
        logging.getLogger("quadflow.traceback").error(f"figure {name} failed", exc_info=True)
        print(f"figure {name} failed ({type(err).__name__}: {err}); redraw with "
              f"`python scripts/figures.py {name} --sweep-dir {folder}`")


class SweepSummary(Callback):
    """The sweep's bookkeeping around the jobs.

    Before the first job (``on_multirun_start``) every point of the sweep is checked
    (:func:`quadflow.cli.sweeps.check_sweep`): a value a job would refuse stops the sweep at once, one
    ``error: job <k> (<override>): <message>`` line on stderr per bad job, exit code 2; a memory refusal
    of this machine is printed as a warning and that job is later recorded as failed.

    At the end (``on_multirun_end``) ``sweep_summary.json`` is written, the failed jobs and why are
    printed, the experiment's figure (``figure: <name>`` in the preset) is drawn, and the number of jobs
    that failed is kept in :attr:`failed` (scripts/run.py exits with 1 when it is not 0: Hydra returns
    nothing to the shell). Under a sweeper that searches an objective (Optuna), a trial that diverged or
    was unstable is a result, counted on the summary line, not a failure
    (:func:`quadflow.cli.sweeps.sweep_failed`). A single run draws its figure too.
    """

    failed: int | None = None  # jobs of the last multirun of this process that failed

    def on_multirun_start(self, config, **kwargs) -> None:
        SweepSummary.failed = None
        errors, warnings = check_sweep(config)
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        if errors:
            for line in errors:
                print(f"error: {line}", file=sys.stderr)
            sys.stderr.flush()
            raise SystemExit(EXIT_CONFIG_ERROR)  # not an Exception: Hydra's callback runner would only warn

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        rows = sweep_failures(sweep_dir)
        atomic_write_text(sweep_dir / "sweep_summary.json", dumps(rows, indent=2))
        search = searches(config.hydra.sweeper)
        print_sweep_table(rows, search)
        SweepSummary.failed = sweep_failed(rows, search)
        make_configured_figure(config, sweep_dir, multirun=True)

    def on_run_end(self, config, **kwargs) -> None:
        make_configured_figure(config, Path(config.hydra.runtime.output_dir), multirun=False)
