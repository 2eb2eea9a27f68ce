"""Memory needed by a simulation, estimated before anything is allocated."""
from __future__ import annotations

import torch

from quadflow.problem import Problem


class InsufficientMemoryError(ValueError):
    """The run would not fit on its device; the message names the bytes and the options."""


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def estimate_bytes(p: Problem, *, design: str, storage: str, storage_bytes: int, compute_bytes: int,
                   chunk_rows: int, world_size: int = 1, replicas: int = 1) -> dict:
    """Bytes per rank: ``data`` (inputs), ``labels``, ``work`` (chunk temporaries, matrices) and ``total``;
    ``floor``: the total with the smallest need any data, precision and sharding setting gives (inputs
    regenerated in bfloat16, one-row chunks, float32 compute, one sample per rank), which only a smaller
    problem lowers.

    The Gaussian design stores ``n d`` numbers, the GOE design ``n d^2``; the
    regenerate mode stores none (one chunk at a time). Labels are two vectors of n. ``replicas`` runs hold
    all of it R times (each its own data, student and d x d matrices).
    """
    need = _bytes(p, design, storage, storage_bytes, compute_bytes, chunk_rows, world_size)
    least = _bytes(p, design, "regenerate", 2, 4, 1, p.n)
    return {**{k: v * replicas for k, v in need.items()}, "floor": least["total"] * replicas, "replicas": replicas}


def _bytes(p: Problem, design: str, storage: str, storage_bytes: int, compute_bytes: int, chunk_rows: int,
           world_size: int) -> dict:
    n_local = -(-p.n // world_size)
    per_row = p.d * p.d if design == "goe" else p.d
    data = 0 if storage == "regenerate" else n_local * per_row * storage_bytes
    labels = 3 * n_local * compute_bytes
    rows = min(chunk_rows, n_local)
    width = per_row + (max(p.d, p.m) if design == "gaussian" else 0)
    work = rows * width * max(storage_bytes, compute_bytes) * 2 + 6 * p.d * max(p.d, p.m) * compute_bytes
    return {"data": data, "labels": labels, "work": work, "total": data + labels + work}


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: ``cudaMemGetInfo`` on CUDA, MemAvailable on Linux CPUs."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not block


def usable_bytes(device: torch.device) -> float:
    """The bytes a job may take on ``device``: 90 % of its free memory."""
    return 0.9 * available_bytes(device)


def largest_fitting(fits, high: int, low: int = 0) -> int:
    """The largest integer ``t`` in ``[low, high]`` with ``fits(t)`` (``fits`` true up to some t, false beyond;
    ``low`` when none fits)."""
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def require_bytes(need: int, device: torch.device, what: str, options) -> None:
    """Raise :class:`InsufficientMemoryError` when ``need`` bytes exceed 90 % of free memory on ``device``.

    The message says ``what`` needs the bytes, how much is free, and the ``options`` to change: a list of
    strings, or ``usable -> list`` called only when the bytes do not fit (``usable``: the 90 % of free memory a
    setting must fit in), for options that take work to find.
    """
    free = available_bytes(device)
    if need <= usable_bytes(device):
        return
    if callable(options):
        options = options(usable_bytes(device))
    raise InsufficientMemoryError(f"{what} needs about {_gib(need)} on {device} but only {_gib(free)} is free. "
                                  "Options: " + "; ".join(options) + ".")


def check_fits(need: dict, device: torch.device, *, design: str) -> None:
    """Raise :class:`InsufficientMemoryError` when a simulation's ``need['total']`` does not fit; when even its
    ``need['floor']`` does not, the message says so and how much smaller the problem must be, instead of
    listing settings that cannot help."""
    free = available_bytes(device)
    if need["total"] <= 0.9 * free:
        return
    replicas = need.get("replicas", 1)
    if need["floor"] > 0.9 * free and replicas > 1 and need["floor"] / replicas <= 0.9 * free:
        most = int(0.9 * free // (need["floor"] / replicas))
        raise InsufficientMemoryError(
            f"this run needs about {_gib(need['total'])} on {device} but only {_gib(free)} is free, and no setting "
            f"of data, precision or GPUs brings its {replicas} replicas (each its own data) below "
            f"{_gib(need['floor'])}: use fewer replicas (now {replicas}; at most {most} fit), over several jobs.")
    if need["floor"] > 0.9 * free:
        shrink = (need["floor"] / replicas / (0.9 * free)) ** 0.5
        raise InsufficientMemoryError(
            f"this run needs about {_gib(need['total'])} on {device} but only {_gib(free)} is free, and no setting "
            f"of data, precision or GPUs brings it below {_gib(need['floor'])} (the student's weights and the "
            f"d x d matrices every device holds grow as d^2): reduce problem.d about {shrink:.3g}-fold.")
    gaussian = design == "gaussian"
    options = [f"fewer replicas (now {need['replicas']}: each holds its own data)" if need.get("replicas", 1) > 1
               else None,
               "a smaller problem.d or problem.alpha",
               "precision=bf16 (halves the stored inputs)" if gaussian else None,
               "data.storage=regenerate (recompute inputs each step, bounded memory)" if gaussian else None,
               "a smaller data.chunk_rows",
               "more GPUs (torchrun --nproc_per_node=N shards the samples)"]
    what = (f"this run (inputs {_gib(need['data'])}, labels {_gib(need['labels'])}, work {_gib(need['work'])})")
    require_bytes(need["total"], device, what, [o for o in options if o])
