"""quadflow's main job: train a student, compute the theory, log both.

    python scripts/run.py                                   # default config (CPU, < 1 min)
    python scripts/run.py problem.d=512 theory=[dmft] device=cuda
    python scripts/run.py -m problem.alpha=0.5,1,2          # sweep, one W&B run per job
    python scripts/run.py -m experiment=optuna_step_size    # Optuna search of trainer.h
    torchrun --nproc_per_node=2 scripts/run.py ...          # one run, samples sharded
    python scripts/run.py ... hydra.run.dir=<dir>           # continue a killed run (the same overrides)

Exit codes: 0 ok; 1 a run (or any job of a sweep) failed or diverged (in a search such as Optuna's, a
trial that diverged or was unstable is a result, not a failure); 2 an override Hydra would refuse (an
unknown key or group option: :mod:`quadflow.cli.errors`), a configuration value out of range or a run
too large for the machine (one ``error:`` line on stderr, no traceback; a sweep is checked point by
point before its first job); 3 a run that did not descend as a smaller step would
(status ``unstable``: it oscillated or stalled; ``error`` in summary.json says how); 143 stopped by a signal.

The task function returns the float a sweeper optimises: the summary value named by ``objective``
(default ``sim/mse``; see :func:`quadflow.cli.sweeps.objective_value`), NaN when the job failed.
"""
import logging
import math
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from quadflow.cli.app import register_configs, run_hydra_job
from quadflow.cli.build import ConfigError
from quadflow.cli.callbacks import EXIT_CONFIG_ERROR, SweepSummary
from quadflow.cli.console import route_warnings
from quadflow.cli.errors import CommandLineError, check_command_line
from quadflow.cli.job import EXIT_CODES
from quadflow.cli.sweeps import failed_value, record_failure
from quadflow.cli.validate import check_job_fits
from quadflow.runtime import InsufficientMemoryError

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> float:
    start, hydra_cfg = time.time(), HydraConfig.get()
    route_warnings()
    out = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        check_job_fits(cfg)  # the DMFT's memory at trainer.steps, before any work
        summary = run_hydra_job(cfg, hydra_cfg)
    except Exception as err:
        logging.getLogger("quadflow.traceback").error("job raised", exc_info=True)  # run.log only
        if not multirun:
            if isinstance(err, (ConfigError, InsufficientMemoryError)):
                print(f"error: {err} (traceback in {out / 'run.log'})", file=sys.stderr)
                sys.exit(EXIT_CONFIG_ERROR)
            raise
        # under -m a job that raised is recorded, so that the other jobs run and the sweep reports it
        summary = record_failure(out, err, start) if _rank() == 0 else {"status": "failed", "error": str(err)}
        print(f"[failed] stage {summary.get('stage')}: {summary['error']} | results in {out}", file=sys.stderr)
        return failed_value(hydra_cfg.sweeper)
    value = summary.get("objective", math.nan)  # also in summary.json
    if not multirun and summary["status"] != "ok":
        print(f"run {summary['status']}: {summary['error']}", file=sys.stderr)
        sys.exit(EXIT_CODES[summary["status"]])
    if summary["status"] == "interrupted" and stops_the_sweep(hydra_cfg):
        print(f"sweep interrupted: the jobs after {out.name} did not start; run the same command with "
              f"hydra.sweep.dir={hydra_cfg.sweep.dir} to go on (finished jobs are skipped, the interrupted one "
              "continues from its checkpoint)", file=sys.stderr)
        sys.exit(EXIT_CODES["interrupted"])
    return value


def stops_the_sweep(hydra_cfg) -> bool:
    """Whether a signal that stopped a job stops its sweep: under Hydra's basic launcher the jobs run one after
    the other in this process, so Ctrl-C or a kill meant for the sweep reaches only the job it interrupted
    (launchers with a process per job, submitit's, forward the signal instead)."""
    return str(hydra_cfg.launcher.get("_target_", "")).endswith("BasicLauncher")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


if __name__ == "__main__":
    try:
        check_command_line(sys.argv[1:], str(Path(__file__).resolve().parent.parent / "conf"), "config")
    except CommandLineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    main()
    sys.exit(1 if SweepSummary.failed else 0)  # a multirun with a failed job (quadflow.cli.sweeps.sweep_failed)
