"""The data of the charts that put theory on the simulation's axes (no W&B import here).

A chart is ``{label: [(x, y), ...]}``: one series per label, e.g. ``"simulation"``,
``"theory: dmft"``. :func:`line_series_args` turns it into the arguments of
``wandb.plot.line_series`` (each series on its own points: a theory missing at
some t is simply absent there; a constant long-time theory is a flat line).
"""
from __future__ import annotations

import math

import numpy as np

MAX_ROWS = 10_000  # wandb.Table truncates a chart's table beyond this many rows
MAX_BINS = 512  # W&B histograms have at most 512 bins
SIMULATION, THEORY = "simulation", "theory"
SPECTRUM_COLUMNS = ["series", "t", "x", "density"]


def _finite(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)


def points(pairs) -> tuple[list, list]:
    """``(xs, ys)`` of the finite pairs, sorted by x; the y of a repeated x are averaged (e.g. seeds)."""
    by_x: dict = {}
    for x, y in pairs:
        if _finite(x) and _finite(y):
            by_x.setdefault(float(x), []).append(float(y))
    xs = sorted(by_x)
    return xs, [sum(by_x[x]) / len(by_x[x]) for x in xs]


def thin(xs: list, ys: list, most: int) -> tuple[list, list]:
    """At most ``most`` points, evenly spaced in index, first and last kept."""
    if len(xs) <= most:
        return xs, ys
    idx = np.unique(np.linspace(0, len(xs) - 1, max(2, most)).round().astype(int))
    return [xs[i] for i in idx], [ys[i] for i in idx]


def line_series_args(series: dict) -> dict | None:
    """``xs, ys, keys`` of ``wandb.plot.line_series`` for ``{label: pairs}`` (None when no series has a point)."""
    cleaned = {label: points(pairs) for label, pairs in series.items()}
    cleaned = {label: xy for label, xy in cleaned.items() if xy[0]}
    if not cleaned:
        return None
    most = MAX_ROWS // len(cleaned)
    cleaned = {label: thin(*xy, most) for label, xy in cleaned.items()}
    return {"xs": [xy[0] for xy in cleaned.values()], "ys": [xy[1] for xy in cleaned.values()],
            "keys": list(cleaned)}


def row_metrics(rows: list[dict]) -> list[str]:
    """Metrics with a ``sim/<m>`` or ``theory/<name>/<m>`` value in ``rows``, in order of appearance
    (standard errors ``*_se`` excluded)."""
    found: dict = {}
    for row in rows:
        for key in row:
            parts = key.split("/")
            if (parts[0] == "sim" and len(parts) == 2) or (parts[0] == THEORY and len(parts) == 3):
                if not parts[-1].endswith("_se"):
                    found[parts[-1]] = None
    return list(found)


def overlay_series(rows: list[dict], metric: str) -> dict:
    """``{"simulation": [(t, v)], "theory: <name>": [(t, v)], ...}`` of one metric over a run's rows."""
    series: dict = {SIMULATION: []}
    for row in rows:
        for key, value in row.items():
            parts = key.split("/")
            if key == f"sim/{metric}":
                series[SIMULATION].append((row.get("t"), value))
            elif parts[0] == THEORY and len(parts) == 3 and parts[2] == metric:
                series.setdefault(f"{THEORY}: {parts[1]}", []).append((row.get("t"), value))
    return series


def num_bins(n: int) -> int:
    """Histogram bins for ``n`` eigenvalues (8 to 128, always within W&B's 512)."""
    return min(128, MAX_BINS, max(8, n // 4))


def spectrum_rows(spectra: dict, h: float, density=None, label: str = THEORY) -> list[list]:
    """Rows ``[series, t, x, density]`` (:data:`SPECTRUM_COLUMNS`): the normalised histogram of each spectrum
    (``{step: eigenvalues}``, at bin centres, series ``"empirical t=<t>"``) and the theory density ``(x, rho)``
    (series ``label``, t None). Spectra are thinned evenly (first and last kept) to fit :data:`MAX_ROWS`."""
    theory = []
    if density is not None:
        xs, rho = points(zip(np.asarray(density[0], dtype=float), np.asarray(density[1], dtype=float)))
        xs, rho = thin(xs, rho, MAX_ROWS // 2)
        theory = [[label, None, x, r] for x, r in zip(xs, rho)]
    steps = sorted(s for s, e in spectra.items() if np.size(e))
    if steps:
        per = max(num_bins(np.size(spectra[s])) for s in steps)
        steps = [steps[i] for i in np.unique(np.linspace(0, len(steps) - 1,
                                                         max(1, min(len(steps), (MAX_ROWS - len(theory)) // per)))
                                             .round().astype(int))]
    rows = []
    for step in steps:
        eigs = np.asarray(spectra[step], dtype=float).ravel()
        eigs = eigs[np.isfinite(eigs)]
        if not eigs.size:
            continue
        counts, edges = np.histogram(eigs, bins=num_bins(eigs.size), density=True)
        t = float(step * h)
        rows += [[f"empirical t={t:g}", t, float(c), float(d)]
                 for c, d in zip(0.5 * (edges[1:] + edges[:-1]), counts)]
    return rows + theory
