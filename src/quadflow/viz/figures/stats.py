"""Seed averages of final job values, grouped by one config key."""
from __future__ import annotations

import numpy as np


def seed_means(jobs, key, metrics) -> list[dict]:
    """Rows ``{key: value, n_seeds, <m>_mean, <m>_sem}`` of the final ``sim/<m>`` per value of ``key(job)``.

    ``sem`` is the standard error of the mean over seeds (0 with one seed).
    """
    groups: dict = {}
    for j in (j for j in jobs if j.ok):
        groups.setdefault(key(j), []).append(j)
    rows = []
    for value in sorted(groups):
        row = {"value": value, "n_seeds": len(groups[value])}
        for m in metrics:
            x = np.array([j.summary[f"sim/{m}"] for j in groups[value]], dtype=float)
            row[f"{m}_mean"] = float(x.mean())
            row[f"{m}_sem"] = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0
        rows.append(row)
    return rows
