"""File writing shared by every part: atomic replacement, JSON-safe values and the hash of a config.

A kill at any moment leaves either the previous file or the new one, never a torn one.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, IO

import numpy as np


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(text.encode()))


def jsonable(value):
    """``value`` as plain JSON: numpy scalars to Python, non-finite floats to None, other objects to str."""
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    return str(value)


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` with :func:`jsonable` applied to every value (nested too)."""
    return json.dumps(_deep(obj), **kwargs)


def _deep(obj):
    if isinstance(obj, dict):
        return {str(k): _deep(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_deep(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_deep(v) for v in obj.tolist()]
    return jsonable(obj)


def stable_hash(values) -> str:
    """The first 16 hex digits of the sha256 of ``values`` as sorted JSON (other objects as ``str``).

    The cache key of a result, the same across processes and machines: the app's checkpoints and theory
    caches (:func:`quadflow.cli.job.config_hash`) and the points of the resumable measurements
    (:func:`quadflow.analysis.points.point_hash`). Changing the serialisation would orphan every cache.
    """
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; a last line cut short by a crash is skipped."""
    rows = []
    with open(path) as fh:
        for line in fh:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
