"""The Hydra entry point's pieces: the schema registration, W&B group names, a job in Hydra's folder."""
from __future__ import annotations

from pathlib import Path

from quadflow.cli.job import run_job
from quadflow.cli.schema import RunConfig


def register_configs() -> None:
    """Register the structured schema (``run_schema``) that conf/config.yaml extends."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="run_schema", node=RunConfig)


def wandb_group(experiment: str | None, sweep_folder: str | None) -> str | None:
    """W&B group of a job: ``<experiment>-<sweep folder>`` under -m, the experiment or the sweep folder alone."""
    experiment = None if experiment in (None, "null") else experiment
    parts = [x for x in (experiment, sweep_folder) if x]
    return "-".join(parts) or None


def sweep_folder(sweep_dir: str) -> str:
    """``<date>_<time>`` of a sweep folder ``multirun/<date>/<time>`` (its last two parts)."""
    parts = Path(sweep_dir).parts[-2:]
    return "_".join(parts)


def run_name(overrides: str, job_num: int | None = None) -> str:
    """W&B name of a job: its command-line overrides (Hydra's ``override_dirname``, e.g.
    ``problem.alpha=2,trainer.h=0.1``), ``default`` for a job without any; ``<job_num>:`` before it under -m."""
    name = overrides or "default"
    return name if job_num is None else f"{job_num}:{name}"


def run_hydra_job(cfg, hydra_cfg) -> dict:
    """:func:`quadflow.cli.job.run_job` in the Hydra output folder; W&B group = experiment name or sweep folder,
    W&B name = :func:`run_name`; a job that does not finish ok has the objective :func:`failed_value` of the
    sweeper."""
    from hydra.types import RunMode

    from quadflow.cli.sweeps import failed_value

    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    group = wandb_group(hydra_cfg.runtime.choices.get("experiment"), sweep_folder(hydra_cfg.sweep.dir) if multirun else None)
    name = run_name(hydra_cfg.job.override_dirname, hydra_cfg.job.num if multirun else None)
    return run_job(cfg, out_dir, wandb_group=group, job_name=name,
                   failed_objective=failed_value(hydra_cfg.sweeper if multirun else None))
