"""The data of the charts that put theory on the simulation's axes (no W&B import here).

A chart is ``{label: [(x, y), ...]}``: one series per label, e.g. ``"simulation"``,
``"theory: dmft"``. :func:`overlay_table` turns it into the table of a ``wandb.plot.line`` chart
(columns ``series``, x, y; each series on its own points: a theory missing at some t is simply
absent there; a constant long-time theory is a flat line).

Log axes: W&B's built-in chart presets have linear axes only, and a custom Vega-Lite preset must
first be saved in the W&B entity that views the run (an offline run synced to a new account would
show an error instead of the chart). So an axis whose values span more than :data:`LOG_DECADES`
decades (and none of them negative) is logged as ``log10`` of its values, in a column named
``"log10 <name>"``: the built-in ``wandb/line/v0`` preset labels its axes with the column names.
"""
from __future__ import annotations

import math

import numpy as np

MAX_ROWS = 10_000  # wandb.Table truncates a chart's table beyond this many rows
MAX_BINS = 512  # W&B histograms have at most 512 bins
LOG_DECADES = 1.5  # an axis spanning more decades than this is charted in log10
SIMULATION, THEORY, SERIES = "simulation", "theory", "series"
SPECTRUM_COLUMNS = [SERIES, "t", "x", "density"]


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


def log_scale(values) -> bool:
    """Whether an axis holding ``values`` is drawn in log10: none negative, and the positive ones spanning more
    than :data:`LOG_DECADES` decades (zeros, e.g. t = 0, are then left out of the chart)."""
    v = np.asarray([x for x in values if _finite(x)], dtype=float)
    positive = v[v > 0]
    return bool(positive.size) and not np.any(v < 0) and math.log10(positive.max() / positive.min()) > LOG_DECADES


def overlay_table(series: dict, xname: str, yname: str) -> dict | None:
    """The table of one chart of ``{label: [(x, y), ...]}``: ``{"columns": ["series", x, y], "data": [[label, x, y],
    ...], "x": x, "y": y}``, an axis in log10 (column ``"log10 <name>"``) where :func:`log_scale` says so; None when
    no series has a point. Series are thinned evenly (first and last points kept) to fit :data:`MAX_ROWS`."""
    cleaned = {label: points(pairs) for label, pairs in series.items()}
    cleaned = {label: xy for label, xy in cleaned.items() if xy[0]}
    log_x = log_scale(x for xs, _ in cleaned.values() for x in xs)
    log_y = log_scale(y for _, ys in cleaned.values() for y in ys)
    shown = {}
    for label, (xs, ys) in cleaned.items():
        kept = [(x, y) for x, y in zip(xs, ys) if (x > 0 or not log_x) and (y > 0 or not log_y)]
        if kept:
            shown[label] = ([math.log10(x) if log_x else x for x, _ in kept],
                            [math.log10(y) if log_y else y for _, y in kept])
    if not shown:
        return None
    most = MAX_ROWS // len(shown)
    x_col, y_col = (f"log10 {n}" if log else n for n, log in ((xname, log_x), (yname, log_y)))
    data = [[label, x, y] for label, xy in shown.items() for x, y in zip(*thin(*xy, most))]
    return {"columns": [SERIES, x_col, y_col], "data": data, "x": x_col, "y": y_col}


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


BAND = ("simulation - s.e.", "simulation + s.e.")  # the band of a run of replicas, around their mean


def overlay_series(rows: list[dict], metric: str) -> dict:
    """``{"simulation": [(t, v)], "theory: <name>": [(t, v)], ...}`` of one metric over a run's rows; a run of
    replicas (``sim/<metric>_se`` in its rows) adds the band of their mean, ``simulation -/+ s.e.``."""
    series: dict = {SIMULATION: []}
    for row in rows:
        for key, value in row.items():
            parts = key.split("/")
            if key == f"sim/{metric}":
                series[SIMULATION].append((row.get("t"), value))
                se = row.get(f"sim/{metric}_se")
                if _finite(se) and _finite(value):
                    for label, sign in zip(BAND, (-1, 1)):
                        series.setdefault(label, []).append((row.get("t"), value + sign * se))
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
