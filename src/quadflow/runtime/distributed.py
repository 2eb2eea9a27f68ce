"""Sample sharding over torch.distributed processes (one run, many GPUs or CPU ranks).

Launch with ``torchrun --nproc_per_node=N``; every rank holds the same
teacher and initialisation (same seeds) and a contiguous range of sample
blocks, and per-step sums are all-reduced (SUM; ``ReduceOp.AVG`` is NCCL-only).
"""
from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def first_host(nodelist: str) -> str:
    """The first host name of a SLURM node list (``node[03-05,7],gpu2`` -> ``node03``)."""
    head = nodelist.split(",")[0] if "[" not in nodelist.split(",")[0] else nodelist[:nodelist.index("]") + 1]
    if "[" not in head:
        return head
    prefix, ranges = head.split("[", 1)
    return prefix + ranges.rstrip("]").split(",")[0].split("-")[0]


def export_slurm_env(env=os.environ) -> None:
    """Under a multi-task SLURM step (``srun -n N``, ``salloc``, or submitit's ``tasks_per_node`` > 1),
    set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from SLURM's variables.

    Nothing is changed when torchrun already set them or when the step has one task. The port is
    derived from the job id, so every task of the step agrees on it without talking.
    """
    if "WORLD_SIZE" in env or int(env.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in env:
        return
    env.setdefault("RANK", env["SLURM_PROCID"])
    env.setdefault("WORLD_SIZE", env["SLURM_NTASKS"])
    env.setdefault("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))
    env.setdefault("MASTER_ADDR", first_host(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "localhost"))))
    env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))


def shared_path(path: str) -> str:
    """Rank 0's value of ``path`` on every rank (one run folder for all the processes of a run)."""
    if world()[1] == 1:
        return path
    box = [path]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun or a multi-task SLURM step.

    Uses NCCL for CUDA and gloo for CPU. Returns True when a group is active. The group is destroyed
    at interpreter exit, after a barrier (:func:`_destroy`): gloo's threads left running can otherwise abort
    a rank (``terminate called without an active exception``) after the run itself succeeded.
    """
    export_slurm_env()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        atexit.register(_destroy)
    return True


def _destroy() -> None:
    """Tear the group down once every rank has reached its end (rank 0 writes the run's files after the last
    step while the others are done): a rank tearing down alone can abort in gloo's threads. A rank that
    died ends the barrier with an error, and the group is destroyed all the same."""
    if dist.is_initialized():
        try:
            dist.barrier()
        except Exception:
            pass
        dist.destroy_process_group()


def shard_blocks(n_blocks: int, rank: int, world_size: int) -> range:
    """Contiguous block indices ``[lo, hi)`` owned by ``rank`` (sizes differ by at most one)."""
    base, extra = divmod(n_blocks, world_size)
    lo = rank * base + min(rank, extra)
    return range(lo, lo + base + (1 if rank < extra else 0))


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """In-place SUM all-reduce of each tensor; no-op without a process group."""
    if world()[1] == 1:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
