"""Device resolution: ``auto|cpu|cuda`` (or ``cuda:N``) to a ``torch.device``."""
from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error.

    ``cuda:N`` selects a specific GPU.
    """
    if not isinstance(name, str) or name.split(":")[0] not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} (or cuda:N), got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device=cuda was requested but torch finds no CUDA device; use device=cpu or device=auto")
    return torch.device(name)


def cpu_threads(requested: int | None, d: int) -> int:
    """Threads for CPU work: ``requested``, else about one per 128 input dimensions.

    The matrices of a small run (and the DMFT's d_eff x d_eff process) are too
    small for threads to pay: measured 21 s with one thread against 160 s with
    two for the default config on a loaded 2-core machine.
    """
    if requested is not None:
        return requested
    return max(1, min(torch.get_num_threads(), d // 128))
