"""When a run records: log-spaced or every-k observation steps, and the steps at which the spectrum is saved."""
from __future__ import annotations

import numpy as np


def log_schedule(steps: int, points: int = 100) -> list[int]:
    """About ``points`` distinct steps in ``[0, steps]``, log-spaced, always with 0, 1 and ``steps``."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    grid = {0, steps} | {int(round(x)) for x in np.geomspace(1, max(steps, 1), max(points, 1))}
    return sorted(s for s in grid if 0 <= s <= steps)


def record_schedule(steps: int, points: int = 100, every: int | None = None) -> list[int]:
    """Observation steps: every ``every`` steps (plus the last) when given, else :func:`log_schedule`."""
    if every:
        return sorted(set(range(0, steps + 1, every)) | {steps})
    return log_schedule(steps, points)


def spectrum_schedule(steps: int, points: int) -> list[int]:
    """``points`` log-spaced steps from ``steps / 100`` to ``steps`` (none when points = 0)."""
    if points <= 0:
        return []
    return sorted({int(round(x)) for x in np.geomspace(max(1, steps / 100), max(steps, 1), points)} | {steps})
