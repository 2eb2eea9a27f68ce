"""Sample sharding over torch.distributed processes (one run, many GPUs or CPU ranks).

Launch with ``torchrun --nproc_per_node=N``; every rank holds the same
teacher and initialisation (same seeds) and a contiguous range of sample
blocks, and per-step sums are all-reduced (SUM; ``ReduceOp.AVG`` is NCCL-only).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _export_slurm_env() -> None:
    """Under a multi-task SLURM job (Hydra's submitit launcher, ``tasks_per_node`` > 1) set
    RANK/WORLD_SIZE/MASTER_ADDR/... from SLURM's variables with submitit's helper."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export()


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun or a multi-task SLURM job.

    Uses NCCL for CUDA and gloo for CPU. Returns True when a group is active.
    """
    _export_slurm_env()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return True


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
