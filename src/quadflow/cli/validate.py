"""One job's configuration checked without running it: every range a job would refuse, and its memory need.

:func:`validate_config` builds what a :class:`quadflow.cli.job.Job` builds before its first
allocation (the problem, the trainer and its callbacks, the optimiser on a one-number parameter,
the student and teacher factories, the data spec, the theories, the checkpointer, the W&B
factory) and checks the batch size, the route and the memory need, all in a few milliseconds
and without touching the dataset. A value out of range raises the same one-line
:class:`ConfigError` the job would raise.

A memory refusal is *not* raised: it depends on the machine, not on the configuration, so a
sweep records that job as failed (stage ``build``) and runs the others. It is returned as a
warning instead; with ``local=False`` (jobs launched on other machines, e.g. SLURM) the device
and the memory are not checked at all, since the launching host is not the one that runs them.
"""
from __future__ import annotations

import torch
from omegaconf import OmegaConf

from quadflow.cli.build import ConfigError, build, build_callbacks, build_problem, build_theories
from quadflow.cli.schema import check_config
from quadflow.models.objective import choose_route
from quadflow.runtime import InsufficientMemoryError, check_fits, estimate_bytes, resolve_device, resolve_precision
from quadflow.train import record_schedule
from quadflow.train.batches import check_batch_size


def validate_config(cfg, *, local: bool = True) -> list[str]:
    """Raise :class:`ConfigError` (one line naming key, value and allowed range) for the first bad value of
    ``cfg``; return the warnings that do not stop a sweep (the memory refusal of this machine, if any).

    ``local``: the job runs on this machine, so ``device`` is resolved here and its free memory checked.
    """
    try:
        check_config(cfg)
        precision = resolve_precision(cfg.precision)
        device = resolve_device(cfg.device) if local else None
    except ValueError as err:
        raise ConfigError(str(err)) from None
    problem = build_problem(cfg)
    trainer = build(cfg.trainer, "trainer", callbacks=build_callbacks(cfg), progress=False)
    _check_optimizer(build(cfg.optim, "optim"), cfg.optim)
    build(cfg.student, "student")
    build(cfg.teacher, "teacher")
    spec = build(cfg.data, "data")
    build_theories(cfg)
    build(cfg.checkpoint, "checkpoint")
    if cfg.tracking.get("wandb") is not None:
        build(cfg.tracking.wandb, "tracking.wandb")
    try:
        check_batch_size(trainer.batch_size, problem.n)
        if trainer.batch_size is not None and spec.storage != "materialized":
            raise ValueError("trainer.batch_size needs data.storage=materialized (minibatches index stored inputs)")
        choose_route(spec.route, spec.design, problem.m, problem.d)
        record_schedule(trainer.steps, cfg.record.points, cfg.record.every)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if device is None:
        return []
    need = estimate_bytes(problem, design=spec.design, storage=spec.storage,
                          storage_bytes=precision.storage.itemsize, compute_bytes=precision.compute.itemsize,
                          chunk_rows=spec.rows_per_chunk(problem, device.type))
    try:
        check_fits(need, device, design=spec.design)
    except InsufficientMemoryError as err:
        return [str(err)]
    return []


def _check_optimizer(make_optimizer, node) -> None:
    """The optimiser partial called on one scalar parameter: torch checks ``lr``, betas, ... in the constructor."""
    try:
        make_optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        target = OmegaConf.select(node, "_target_") if OmegaConf.is_config(node) else None
        raise ConfigError(f"optim ({target}): {' '.join(str(err).split())}") from None
