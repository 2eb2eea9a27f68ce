"""One job's configuration checked without running it: every range a job would refuse, and its memory need.

:func:`validate_config` builds what a :class:`quadflow.cli.job.Job` builds before its first
allocation (the problem, the trainer and its callbacks, the optimiser on a one-number parameter,
the student and teacher factories, the data spec, the theories, the checkpointer, the W&B
factory) and checks the batch size, the route and the memory need (the dataset's and the DMFT's), all in a few milliseconds
and without touching the dataset. A value out of range raises the same one-line
:class:`ConfigError` the job would raise.

A memory refusal is *not* raised: it depends on the machine, not on the configuration, so a
sweep records that job as failed (stage ``build``) and runs the others. It is returned as a
warning instead; with ``local=False`` (jobs launched on other machines, e.g. SLURM) the device
and the memory are not checked at all, since the launching host is not the one that runs them.
"""
from __future__ import annotations

import inspect

import torch
from omegaconf import OmegaConf

from quadflow.cli.build import ConfigError, build, build_callbacks, build_problem, build_theories
from quadflow.cli.schema import check_config
from quadflow.models.objective import choose_route
from quadflow.optim import rk4_settings
from quadflow.runtime import (InsufficientMemoryError, check_fits, estimate_bytes, largest_fitting,
                              require_bytes, resolve_device, resolve_precision, usable_bytes)
from quadflow.train import record_schedule
from quadflow.train.batches import check_batch_size
from quadflow.train.simulation import check_replicas


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
    make_optimizer = build(cfg.optim, "optim")
    probe = _check_optimizer(make_optimizer, cfg.optim)
    build(cfg.student, "student")
    build(cfg.teacher, "teacher")
    spec = build(cfg.data, "data")
    replicas = cfg.get("replicas", 1)
    theories = build_theories(cfg)
    build(cfg.checkpoint, "checkpoint")
    if cfg.tracking.get("wandb") is not None:
        build(cfg.tracking.wandb, "tracking.wandb")
    try:
        check_batch_size(trainer.batch_size, problem.n)
        if trainer.batch_size is not None and spec.storage != "materialized":
            raise ValueError("trainer.batch_size needs data.storage=materialized (minibatches index stored inputs)")
        choose_route(spec.route, spec.design, problem.m, problem.d)
        record_schedule(trainer.steps, cfg.record.points, cfg.record.every)
        check_replicas(replicas, probe, trainer.batch_size, 1)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if device is None:
        return []
    need = estimate_bytes(problem, design=spec.design, storage=spec.storage,
                          storage_bytes=precision.storage.itemsize, compute_bytes=precision.compute.itemsize,
                          chunk_rows=spec.rows_per_chunk(problem, device.type, replicas), replicas=replicas)
    try:
        check_fits(need, device, design=spec.design)
        check_theories_fit(theories, trainer.steps, device, minibatch=trainer.batch_size is not None,
                           rows_per_step=dmft_rows_per_step(make_optimizer))
    except InsufficientMemoryError as err:
        return [str(err)]
    return []


def check_job_fits(cfg) -> None:
    """:func:`check_theories_fit` for a job about to run here; a bad value is left to the job's own checks."""
    try:
        theories, device = build_theories(cfg), resolve_device(cfg.device)
        rows = dmft_rows_per_step(build(cfg.optim, "optim"))
    except ValueError:
        return
    check_theories_fit(theories, cfg.trainer.steps, device, minibatch=cfg.trainer.batch_size is not None,
                       rows_per_step=rows)


def dmft_rows_per_step(make_optimizer) -> int:
    """Rows of the DMFT's kernels per step for the run's optimiser: 4 for RK4 (its evaluation points), else 1."""
    try:
        probe = make_optimizer([torch.zeros(1, requires_grad=True)])
    except Exception:  # an optimiser that cannot be built on a probe is reported by its own check
        return 1
    return 4 if rk4_settings(probe) else 1


def check_theories_fit(theories: dict, steps: int, device: torch.device, minibatch: bool = False,
                       rows_per_step: int = 1) -> None:
    """Raise :class:`InsufficientMemoryError` when the DMFT among ``theories`` (``{name: component}``) would not fit
    on ``device`` at ``steps`` steps (:func:`quadflow.theory.dmft.solver.memory_bytes`, with solve_dmft's
    precision and tangent channels; ``minibatch``: the run draws minibatches; ``rows_per_step``: kernel rows per
    step, 4 for RK4). With ``theory.dmft.history`` auto or compressed, a full-batch run other than RK4 is solved
    in the compressed mode where the exact one does not fit, and that mode's bytes are checked instead. The exact
    mode's (steps+1)^2 kernels need memory whatever its settings: when even the smallest settings do not fit,
    the message gives the most steps that do."""
    from quadflow.theory.dmft.compressed import history_bytes
    from quadflow.theory.dmft.solver import MIN_D_EFF, memory_bytes, solve_dmft
    from quadflow.cli.theories import DMFT

    dmft = next((t for t in theories.values() if isinstance(t, DMFT)), None)
    if dmft is None:
        return
    channels = inspect.signature(solve_dmft).parameters["channels"].default
    usable = usable_bytes(device)
    steps = dmft.horizon(steps)
    need = memory_bytes(rows_per_step * steps, dmft.d_eff, dmft.samples, channels, minibatch=minibatch)
    compressible = not minibatch and rows_per_step == 1
    if compressible and (dmft.history == "compressed" or (dmft.history == "auto" and need > usable)):
        require_bytes(history_bytes(steps, dmft.d_eff, dmft.samples, channels, dmft.resolution), device,
                      f"theory dmft over {steps} steps, compressed (d_eff={dmft.d_eff}, samples={dmft.samples})",
                      ["fewer trainer.steps or theory.dmft.max_steps (its curves keep every step)",
                       "a smaller theory.dmft.d_eff or theory.dmft.samples", "a larger theory.dmft.resolution"])
        return
    if need <= usable:
        return
    fits = lambda t: memory_bytes(rows_per_step * t, dmft.d_eff, dmft.samples, channels,  # noqa: E731
                                  minibatch=minibatch) <= usable
    horizon = f"theory.dmft.max_steps={largest_fitting(fits, steps)} (the DMFT over the first steps only)"
    if compressible:
        horizon = f"theory.dmft.history=compressed (the long-time mode) or {horizon}"
    least = lambda t: memory_bytes(rows_per_step * t, MIN_D_EFF, 1, 1, minibatch=minibatch)  # noqa: E731
    if least(steps) > usable:
        raise InsufficientMemoryError(
            f"theory dmft over {steps} steps needs about {need / 2**30:.3g} GiB on {device} but only "
            f"{usable / 0.9 / 2**30:.3g} GiB is free, and no theory.dmft.d_eff or samples brings it below "
            f"{least(steps) / 2**30:.3g} GiB (its (steps+1)^2 kernels): set {horizon}, at most trainer.steps="
            f"{largest_fitting(lambda t: least(t) <= usable, steps)} with dmft here, or leave it out "
            "(theory=[population,longtime])")
    require_bytes(need, device, f"theory dmft over {steps} steps (d_eff={dmft.d_eff}, samples={dmft.samples})",
                  [horizon, "a smaller theory.dmft.d_eff or theory.dmft.samples", "fewer trainer.steps",
                   "no dmft in theory=[...]"])


def _check_optimizer(make_optimizer, node) -> torch.optim.Optimizer:
    """The optimiser partial called on one scalar parameter (returned): torch checks ``lr``, betas, ... in the
    constructor."""
    try:
        return make_optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        target = OmegaConf.select(node, "_target_") if OmegaConf.is_config(node) else None
        raise ConfigError(f"optim ({target}): {' '.join(str(err).split())}") from None
