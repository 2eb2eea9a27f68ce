"""The agreement map: where converged GD on real Gaussian inputs agrees with the long-time theory.

A map is a table with one row per grid point and size: ``kappa_star, lam, Delta, alpha, kappa, d`` and, as
measured by ``experiment=agreement_map`` (docs/results/agreement_map/agreement_map.csv), the seed count,
whether every seed converged, the long-time solution's ``valid`` flag and the relative gaps
``gap_<metric> = sim / theory - 1`` (seed means; metrics ``mse``, ``train_loss``, ``in_sample_error``).

A grid point **disagrees** when its long-time solution is flagged (``valid`` False: the top-m cut binds),
or when at its largest d the mse or train-loss gap exceeds :data:`DISAGREE_GAP` in size. 15 % sits above
the finite-size excess of the points where the theory holds (+6-12 % mse at d = 64 on real inputs,
falling as d^-1.3..1.6: docs/validation.md), so a flagged point is a disagreement, not finite size.

:func:`lookup` places a run's point on the map; the map quadflow ships (:data:`MAP_FILE`) is a copy of
the measured one.
"""
from __future__ import annotations

import csv
import functools
import math
from pathlib import Path

MAP_FILE = Path(__file__).with_name("agreement_map.csv")
DISAGREE_GAP = 0.15
METRICS = ("mse", "train_loss", "in_sample_error")
JUDGED = ("mse", "train_loss")  # the metrics whose gap decides a disagreement
KEY = ("kappa_star", "lam", "Delta", "alpha", "kappa")


def grid_points(rows: list[dict]) -> list[dict]:
    """One row per grid point (``KEY``): the gaps at its largest d (``d``), the gaps at every d
    (``gap_<metric>_d<d>``), ``valid``, ``converged`` and ``disagrees``."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(float(r[k]) for k in KEY), []).append(r)
    out = []
    for key, rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: int(r["d"]))
        top = rs[-1]
        point = {**dict(zip(KEY, key)), "d": int(top["d"]), "valid": all(flag(r["valid"]) for r in rs),
                 "converged": all(flag(r["converged"]) for r in rs)}
        for m in METRICS:
            point[f"gap_{m}"] = float(top[f"gap_{m}"])
            point[f"spread_{m}"] = spread(top, m)
            for r in rs:
                point[f"gap_{m}_d{int(r['d'])}"] = float(r[f"gap_{m}"])
        point["disagrees"] = (not point["valid"]) or any(abs(point[f"gap_{m}"]) > DISAGREE_GAP for m in JUDGED)
        out.append(point)
    return out


def spread(row: dict, metric: str) -> float:
    """The seed spread of single runs at a row's point and d, std / mean of the metric over its seeds, from the
    row's seed-mean gap and its standard error: ``gap_sem sqrt(seeds) / (1 + gap)`` (NaN with one seed, or
    without the columns)."""
    sem, seeds = float(row.get(f"gap_{metric}_sem", math.nan)), int(float(row.get("seeds", 1)))
    return sem * math.sqrt(seeds) / (1 + float(row[f"gap_{metric}"])) if seeds > 1 and math.isfinite(sem) else math.nan


def flag(value) -> bool:
    """A flag given as a bool or read back from CSV (``True``/``False`` strings, 0/1)."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "1.0")


def load_map(path: Path | str = MAP_FILE) -> list[dict]:
    """The grid points (:func:`grid_points`) of a map CSV."""
    with open(path, newline="") as f:
        return grid_points(list(csv.DictReader(f)))


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple:
    """The shipped map's grid points, read once per process (a run looks it up at every summary)."""
    return tuple(load_map(MAP_FILE))


def lookup(alpha: float, kappa: float, kappa_star: float, lam: float, Delta: float,
           points: list[dict] | None = None) -> dict:
    """Where a parameter point lies on the map (default: the shipped one).

    The map's points with the same ``kappa_star``, ``lam`` and ``Delta`` (to 1e-9 relative) form a grid in
    ``(alpha, kappa)``; the query must lie within its range (10 % margin, in log scale) and takes its
    nearest point in ``(log alpha, log kappa)``. Returns ``{"map_point": "alpha=..., kappa=...",
    "map_d": d, "map_gap_mse": ..., "map_gap_train_loss": ..., "map_spread_mse": ... (the seed spread of
    single runs there), "map_valid": ..., "map_disagrees": ...}``,
    or ``{"map_point": None, "map_why": "..."}`` when the map does not cover the point.
    """
    points = _shipped() if points is None else points
    close = lambda a, b: abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)  # noqa: E731
    same = [p for p in points if close(p["kappa_star"], kappa_star) and close(p["lam"], lam)
            and close(p["Delta"], Delta)]
    if not same:
        have = sorted({(p["kappa_star"], p["lam"], p["Delta"]) for p in points})
        return {"map_point": None, "map_why": f"the map has no points at (kappa_star, lam, Delta) = "
                                              f"({kappa_star:g}, {lam:g}, {Delta:g}); it covers {have}"}
    for name, value in (("alpha", alpha), ("kappa", kappa)):
        lo, hi = min(p[name] for p in same), max(p[name] for p in same)
        if not (lo / 1.1 <= value <= 1.1 * hi):
            return {"map_point": None, "map_why": f"{name}={value:g} lies outside the map's range "
                                                  f"[{lo:g}, {hi:g}] at these kappa_star, lam, Delta"}
    best = min(same, key=lambda p: math.hypot(math.log(p["alpha"] / alpha), math.log(p["kappa"] / kappa)))
    return {"map_point": f"alpha={best['alpha']:g}, kappa={best['kappa']:g}", "map_d": best["d"],
            "map_gap_mse": best["gap_mse"], "map_gap_train_loss": best["gap_train_loss"],
            "map_spread_mse": best["spread_mse"], "map_valid": best["valid"], "map_disagrees": best["disagrees"]}
