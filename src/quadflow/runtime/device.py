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
