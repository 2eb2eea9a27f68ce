"""Perfect-recovery phase diagram (theory only, Delta = 0): alpha_PR against kappa for several kappa_star.

Lines (theory.md section 6): the ``lam -> 0+`` threshold (the paper's exact expression),
the ``lam = 0`` flow threshold (q = 0 branch), the parameter count of a rank-m PSD
matrix ``kappa - kappa^2/2`` (1/2 for kappa >= 1: the interpolation line, below which
a student of width m can fit generic labels), and the Bayes-optimal
``kappa_star - kappa_star^2/2``. No perfect recovery for ``kappa < kappa_star``.

Marked: the points of a (kappa, alpha) grid where the top-m cut of the long-time solution binds at small
``lam = CUT_LAM`` (:func:`quadflow.theory.top_m_cut_binds`: the static equations there assume a selection GD
need not make; below ``kappa_star`` GD does not reach the solution, above it single runs scatter around it,
docs/validation.md).
"""
from __future__ import annotations

import warnings

import numpy as np

from quadflow.theory import (LongTimeValidityWarning, interpolation_threshold, parameter_count,
                             perfect_recovery_threshold, solve_longtime, top_m_cut_binds)
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.style import colors, subplots

KAPPA_STARS = (0.1, 0.3, 0.5)
PLATEAU_TOL = 1e-4  # kappa_c: first kappa whose lam -> 0+ threshold is within this of its kappa -> inf value
CUT_LAM = 1e-3  # lam of the grid where the top-m cut is checked (Delta = 0)


def cut_grid(kappa_star: float, quick: bool) -> list[dict]:
    """``{kappa_star, kappa, alpha, binds (0 or 1)}`` on a grid of kappa < 1 and alpha in (0, 0.6]: binds is 1
    where the top-m cut of the long-time solution at ``lam = CUT_LAM``, ``Delta = 0`` binds."""
    kappas = np.linspace(0.1, 0.95, 4 if quick else 18)
    alphas = np.linspace(0.05, 0.6, 4 if quick else 12)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LongTimeValidityWarning)
        for k in kappas:
            for a in alphas:
                sol = solve_longtime(alpha=float(a), kappa=float(k), kappa_star=kappa_star, lam=CUT_LAM)
                rows.append({"kappa_star": kappa_star, "kappa": float(k), "alpha": float(a),
                             "binds": int(sol.converged and top_m_cut_binds(sol.kappa, sol.q, sol.omega))})
    return rows


def collect(jobs, quick: bool, kappa_stars=KAPPA_STARS) -> FigureData:
    kappas = np.unique(np.concatenate([np.linspace(0.05, 2.0, 12 if quick else 80), kappa_stars]))
    rows, summary = [], []
    for ks in kappa_stars:
        for k in kappas:
            rows.append({"kappa_star": ks, "kappa": float(k),
                         "alpha_pr_lam0plus": perfect_recovery_threshold(float(k), ks),
                         "alpha_pr_lam0": perfect_recovery_threshold(float(k), ks, unregularized=True),
                         "parameter_count": parameter_count(float(k)), "bayes_optimal": ks - ks**2 / 2})
        plateau = perfect_recovery_threshold(10.0, ks)
        on_plateau = [r["kappa"] for r in rows if r["kappa_star"] == ks
                      and abs(r["alpha_pr_lam0plus"] - plateau) < PLATEAU_TOL]
        summary.append({"kappa_star": ks, "bayes_optimal": ks - ks**2 / 2,
                        "alpha_pr_at_kappa_star": perfect_recovery_threshold(ks, ks),
                        "plateau_alpha_pr": plateau, "kappa_c": min(on_plateau) if on_plateau else None,
                        # Delta -> 0+ interpolation threshold of the lam = 0 flow, at kappa = 2 kappa_star
                        "interpolation_threshold_delta0_at_2ks": interpolation_threshold(2 * ks, ks, 0.0),
                        "alpha_pr_lam0_at_2ks": perfect_recovery_threshold(2 * ks, ks, unregularized=True)})
    agreement = {f"kappa_star={s['kappa_star']}/alpha_pr_at_kappa_star_minus_bayes":
                 s["alpha_pr_at_kappa_star"] - s["bayes_optimal"] for s in summary}
    cut = [r for ks in kappa_stars for r in cut_grid(ks, quick)]
    return FigureData("", tables={"theory": rows, "cut": cut},
                      meta={"kappa_stars": list(kappa_stars), "thresholds": summary, "agreement": agreement,
                            "cut_lam": CUT_LAM})


def draw(data: FigureData):
    fig, (ax,) = subplots(1, width=10.5, height=5.2)
    rows = data.tables["theory"]
    kappa = np.array(sorted({r["kappa"] for r in rows}))
    ax.plot(kappa, [parameter_count(k) for k in kappa], "k-", lw=1, label="interpolation line kappa - kappa^2/2")
    for ks, color in zip(data.meta["kappa_stars"], colors(len(data.meta["kappa_stars"]))):
        sel = [r for r in rows if r["kappa_star"] == ks and r["kappa"] >= ks]
        ax.plot([r["kappa"] for r in sel], [r["alpha_pr_lam0plus"] for r in sel], "-", color=color,
                label=f"kappa*={ks}: alpha_PR, lam -> 0+")
        ax.plot([r["kappa"] for r in sel], [r["alpha_pr_lam0"] for r in sel], "--", color=color,
                label=f"kappa*={ks}: alpha_PR, lam = 0 flow")
        ax.axhline(ks - ks**2 / 2, color=color, ls=":", lw=1)
        ax.axvspan(0, ks, color=color, alpha=0.05)
        binds = [r for r in data.tables.get("cut", []) if r["kappa_star"] == ks and r["binds"] == 1]
        if binds:
            offset = 0.006 * (data.meta["kappa_stars"].index(ks) - 1)  # the kappa_stars' marks side by side
            lam = data.meta.get("cut_lam", CUT_LAM)
            for narrow, marker, what in ((True, "x", "flagged invalid"), (False, "+", "seed mean only")):
                pts = [r for r in binds if (r["kappa"] < ks) == narrow]
                if pts:
                    ax.plot([r["kappa"] + offset for r in pts], [r["alpha"] for r in pts], marker, color=color, ms=4,
                            label=f"kappa*={ks}: top-m cut binds (lam = {lam:g}, {what})")
    ax.set_xlabel("kappa (student width m/d)")
    ax.set_ylabel("alpha = n/d^2")
    ax.set_xlim(0, kappa.max())
    ax.set_ylim(0, 0.6)
    ax.set_title("perfect recovery above the lines (Delta = 0)\n"
                 "dotted: Bayes-optimal; shaded: kappa < kappa* (none)\n"
                 "top-m cut binds: x flagged invalid (kappa < kappa*), + valid for the seed mean", fontsize=9)
    ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside right upper")  # off the curves
    return fig
