"""Atomic checkpoints: ``torch.save`` to a temporary file, fsync, then rename over the old one.

A kill at any moment leaves either the previous checkpoint or the new one, never a torn file.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` (tensors, numpy arrays, plain Python) atomically to ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, expected_key: str | None = None) -> dict | None:
    """The state saved at ``path`` (None when there is none).

    Raises ``ValueError`` when the checkpoint was written for another
    configuration (``state["key"] != expected_key``): resuming it would mix runs.
    """
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if expected_key is not None and state.get("key") != expected_key:
        raise ValueError(f"{path} was written by a run with a different configuration; resume with the "
                         "same overrides, or use a new hydra.run.dir")
    return state
