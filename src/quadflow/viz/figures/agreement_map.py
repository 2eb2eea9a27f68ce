"""Agreement map: the relative gap of converged GD to the long-time theory over a grid of (alpha, kappa).

Table ``sim`` (``agreement_map.csv``): one row per grid point and d, seed means of ``gap_<metric> =
sim / theory - 1`` with their standard errors, the seed count (jobs, or the replicas of a job run with
``replicas=R``), ``converged`` (every job's mse moved by less than 1e-3 relative over its last recorded
interval) and the theory's ``valid`` flag. Table ``map``: one row per grid point
(:func:`quadflow.analysis.agreement.grid_points`: gaps and seed spread at the largest d, ``disagrees``).
The figure: a heatmap per (kappa*, Delta) and metric of the gap at the largest d, with the interpolation line
(Delta > 0), the perfect-recovery line (Delta = 0, lam -> 0+), cells where the top-m cut binds hatched and
disagreeing cells boxed; each cell gives the gap and, below it, the seed spread of single runs (%).
"""
from __future__ import annotations

import numpy as np

from quadflow.analysis.agreement import DISAGREE_GAP, METRICS, flag, grid_points
from quadflow.theory import interpolation_threshold, perfect_recovery_threshold
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.style import subplots

CONVERGED_CHANGE = 1e-3


def _converged(job) -> bool:
    mse = [r["sim/mse"] for r in job.rows if "sim/mse" in r]
    return len(mse) >= 2 and abs(mse[-1] - mse[-2]) <= CONVERGED_CHANGE * abs(mse[-1])


def collect(jobs, quick: bool, join=None) -> FigureData:
    """The map of ``jobs``; ``join``: a folder holding a saved agreement map whose ``sim`` rows are joined to
    these (a grid extended by a later sweep: other kappa*, lam or Delta; rows of the same point and d are
    replaced by the new ones)."""
    ok = [j for j in jobs if j.ok and f"theory/longtime/{METRICS[0]}" in j.summary]
    if not ok:
        raise ValueError("agreement_map figure: no finished job with a long-time theory (theory=[longtime])")
    groups: dict = {}
    for j in ok:
        groups.setdefault(_key(j.problem), []).append(j)
    rows = []
    for (d, ks, lam, Delta, alpha, kappa), js in sorted(groups.items()):
        row = {"d": d, "kappa_star": ks, "lam": lam, "Delta": Delta, "alpha": alpha, "kappa": kappa,
               "seeds": sum(j.replicas for j in js), "converged": all(_converged(j) for j in js),
               "valid": all(bool(j.summary.get("theory/longtime/valid", True)) for j in js)}
        for m in METRICS:
            gaps = np.array([v / j.summary[f"theory/longtime/{m}"] - 1 for j in js for v in j.values(m)])
            row[f"gap_{m}"] = float(gaps.mean())
            row[f"gap_{m}_sem"] = float(gaps.std(ddof=1) / np.sqrt(gaps.size)) if gaps.size > 1 else float("nan")
        rows.append(row)
    if join is not None:
        keys = {_key(r) for r in rows}
        rows = [r for r in FigureData.load(join, "agreement_map").tables["sim"] if _key(r) not in keys] + rows
    return from_rows(rows, quick)


def _key(row: dict) -> tuple:
    """``(d, kappa_star, lam, Delta, alpha, kappa)`` of a job's problem or a ``sim`` row."""
    return (int(row["d"]), *(float(row[k]) for k in ("kappa_star", "lam", "Delta", "alpha", "kappa")))


def from_rows(rows: list[dict], quick: bool = False) -> FigureData:
    """The figure's tables from its ``sim`` table alone (one row per grid point and d, as :func:`collect`
    makes them): the map at the largest d and the threshold lines. Rows measured by separate sweeps (a grid
    extended later) are joined by concatenating their ``sim`` tables."""
    points = grid_points(rows)
    stars = sorted({float(r["kappa_star"]) for r in rows})
    kappas = np.linspace(min(r["kappa"] for r in rows) / 1.2, max(r["kappa"] for r in rows) * 1.1,
                         12 if quick else 60)
    lines = [{"kappa_star": ks, "kappa": float(k), "alpha_inter": interpolation_threshold(float(k), ks, Delta),
              "alpha_pr": perfect_recovery_threshold(float(k), ks) if k >= ks else float("nan"), "Delta": Delta}
             for ks in stars for Delta in sorted({r["Delta"] for r in rows}) for k in kappas]
    summary = {"points": len(points), "disagreeing": sum(p["disagrees"] for p in points),
               "flagged_invalid": sum(not p["valid"] for p in points),
               "not_converged": sum(not p["converged"] for p in points), "disagree_gap": DISAGREE_GAP,
               "sizes": sorted({r["d"] for r in rows}), "kappa_star": stars, "lam": sorted({r["lam"] for r in rows}),
               "median_spread": {m: _median([p.get(f"spread_{m}", float("nan")) for p in points]) for m in METRICS}}
    return FigureData("", tables={"sim": rows, "map": points, "lines": lines}, meta={"summary": summary})


def _median(values) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres: midpoints, and half a spacing beyond the ends."""
    mid = (values[1:] + values[:-1]) / 2
    first = values[0] - (mid[0] - values[0]) if values.size > 1 else values[0] - 0.1
    last = values[-1] + (values[-1] - mid[-1]) if values.size > 1 else values[-1] + 0.1
    return np.concatenate([[first], mid, [last]])


def draw(data: FigureData):
    points, lines = data.tables["map"], data.tables["lines"]
    panels = sorted({(float(p["kappa_star"]), p["Delta"]) for p in points})
    metrics = METRICS
    fig, axes = subplots(len(metrics), len(panels), width=4.2, height=3.6)
    axes = np.asarray(axes).reshape(len(panels), len(metrics))
    alphas = np.array(sorted({p["alpha"] for p in points}))
    kappas = np.array(sorted({p["kappa"] for p in points}))
    for row, (ks, Delta) in zip(axes, panels):
        at = {(p["alpha"], p["kappa"]): p for p in points if p["Delta"] == Delta and float(p["kappa_star"]) == ks}
        for ax, m in zip(row, metrics):
            grid = np.full((alphas.size, kappas.size), np.nan)
            for (a, k), p in at.items():
                grid[np.searchsorted(alphas, a), np.searchsorted(kappas, k)] = 100 * p[f"gap_{m}"]
            mesh = ax.pcolormesh(_edges(kappas), _edges(alphas), grid, cmap="RdBu_r", vmin=-30, vmax=30)
            for (a, k), p in at.items():
                spread = p.get(f"spread_{m}", float("nan"))  # saved maps without the column: none
                ax.text(k, a, f"{100 * p[f'gap_{m}']:+.0f}" + (f"\n({100 * spread:.0f})" if np.isfinite(spread) else ""),
                        ha="center", va="center", fontsize=6)
                i, j = np.searchsorted(alphas, a), np.searchsorted(kappas, k)
                ke, ae = _edges(kappas)[j:j + 2], _edges(alphas)[i:i + 2]
                if not flag(p["valid"]):
                    ax.fill_between(ke, ae[0], ae[1], facecolor="none", edgecolor="0.3", hatch="//", lw=0)
                if flag(p["disagrees"]):
                    ax.plot(ke[[0, 1, 1, 0, 0]], ae[[0, 0, 1, 1, 0]], "k-", lw=1.5)
            sel = [r for r in lines if r["Delta"] == Delta and float(r.get("kappa_star", ks)) == ks]
            line_k = [r["kappa"] for r in sel]
            if Delta > 0:
                ax.plot(line_k, [r["alpha_inter"] for r in sel], "k--", lw=1, label="interpolation alpha_inter")
            else:
                ax.plot(line_k, [r["alpha_pr"] for r in sel], "k:", lw=1.5, label="perfect recovery (lam -> 0+)")
            ax.set_xlim(_edges(kappas)[0], _edges(kappas)[-1])
            ax.set_ylim(_edges(alphas)[0], _edges(alphas)[-1])
            ax.set_xlabel("kappa")
            ax.set_ylabel("alpha")
            ax.set_title(f"{m}: gap % (seed spread %) at d = {max(p['d'] for p in points)}, kappa* = {ks:g}, "
                         f"Delta = {Delta:g}", fontsize=7)
            ax.legend(fontsize=6, loc="upper right")
            fig.colorbar(mesh, ax=ax, fraction=0.046)
    s = data.meta["summary"]
    fig.suptitle(f"GD (Gaussian inputs) vs long-time theory, lam = {s['lam']}: "
                 f"hatched = top-m cut binds (valid=False), boxed = disagrees (|gap| > {100 * s['disagree_gap']:.0f} % "
                 "or flagged)", fontsize=8)
    return fig
