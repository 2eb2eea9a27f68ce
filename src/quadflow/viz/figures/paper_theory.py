"""The paper's theory-only figures: what quadflow's static equations, thresholds and population flow give for the
role of each (the paper's own panels are not reproduced; docs/results.md says which curves stand for which).

- Fig. 8, the long-time spectrum of the learned S: the density of the non-zero eigenvalues of ``S_inf`` and its
  mass at 0 (docs/theory.md section 5) at three alphas each of Fig. 7's and Fig. 4's widths (lam =
  :data:`SPECTRUM_LAM`, Delta = 0), beside the teacher's spectrum;
- Fig. 11, where double descent peaks: the interpolation threshold ``alpha_inter`` of the lam = 0 flow against
  kappa for several Delta > 0 (kappa* = :data:`PEAK_KAPPA_STAR`), the alpha at which the long-time mse peaks at
  the small lam :data:`PEAK_LAM`, and the parameter count ``kappa - kappa^2/2``;
- Fig. 13, Oja's flow without data: mse(t) of the population (alpha -> infinity) flow for several kappa at
  kappa* = :data:`POPULATION_KAPPA_STAR`, lam = 0 and 0.01, with its t -> infinity limit (the static solution at
  alpha = :data:`ALPHA_POPULATION`);
- Fig. 15, where the top-m cut binds: the (alpha, lam) plane at Fig. 4's and Fig. 16's widths (kappa* = 0.3,
  Delta = 0), shaded where ``omega > q`` (:func:`quadflow.theory.top_m_cut_binds`);
- Fig. 21, alpha_PR in the (kappa, kappa*) plane: contours of the lam = 0 flow's and the lam -> 0+ perfect-recovery
  thresholds (docs/theory.md section 6).

Fig. 3 (alpha_PR against kappa) is the phase diagram, :mod:`quadflow.viz.figures.phase_diagram`.
``collect(jobs, quick, figure=N)`` computes figure N's tables (``jobs`` is not read; ``quick``: coarse grids
for tests) and ``draw(data)`` draws it from them alone.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager

import numpy as np

from quadflow.problem import Ratios
from quadflow.theory import (LongTimeValidityWarning, interpolation_threshold, longtime_curve, parameter_count,
                             perfect_recovery_threshold, solve_longtime, solve_population, top_m_cut_binds)
from quadflow.theory.static.spectral import density
from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.style import colors, log_axes, subplots

SPECTRUM_PANELS = ({"source": "Fig. 7", "kappa": 0.3, "kappa_star": 0.2, "alphas": (0.1, 0.2, 0.35)},
                   {"source": "Fig. 4", "kappa": 0.35, "kappa_star": 0.3, "alphas": (0.1, 0.3, 0.6)})
SPECTRUM_LAM = 0.01

PEAK_KAPPA_STAR = 0.3
PEAK_DELTAS = (0.25, 0.5, 1.0)
PEAK_LAM = 1e-3  # the small lam at which the peak of the long-time mse is located
PEAK_WINDOW = (0.6, 1.6)  # the peak is searched for in this range of alpha / alpha_inter

POPULATION_KAPPA_STAR = 0.3
POPULATION_KAPPAS = (0.2, 0.3, 0.5, 1.0, 2.0)
POPULATION_LAMS = (0.0, 0.01)
POPULATION_H = 0.02  # GD step of the population flow, in the paper's time
ALPHA_POPULATION = 1e4  # the static solution there stands for the population flow's t -> infinity limit
MSE_FLOOR = 1e-9  # lowest mse on Fig. 13's axes (at kappa = kappa*, lam = 0 the flow reaches round-off, 1e-30)

CUT_KAPPA_STAR = 0.3
CUT_KAPPAS = (0.4, 0.35, 0.32, 0.3)  # Fig. 16's widths (Fig. 4's is 0.35)
CUT_LAMS_OF_FIGURES = (0.1, 0.05, 0.01)  # the lam of Figs. 4 and 16, marked on the plane

RECOVERY_LEVELS = np.round(np.arange(0.05, 0.55, 0.05), 2)  # contour levels of alpha_PR


@contextmanager
def _unwarned():
    """No :class:`LongTimeValidityWarning` inside: the figures mark where the top-m cut binds themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LongTimeValidityWarning)
        yield


def _solve(**params):
    """:func:`solve_longtime` at ``params``, unwarned."""
    with _unwarned():
        return solve_longtime(**params)


# -- Fig. 8: the long-time spectrum of S ---------------------------------------------------------------------
def _spectrum(quick: bool) -> FigureData:
    """Tables ``density`` ``{source, alpha, s, density}`` (non-zero eigenvalues of ``S_inf``) and ``teacher``
    ``{source, s, density}`` (of ``S*``); meta ``curves``: one dict per (source, alpha) with ``q, xi, omega,
    rank_fraction, atom, cut_binds, valid``."""
    points = 80 if quick else 600
    rows, teacher, curves = [], [], []
    for panel in SPECTRUM_PANELS:
        ks, kappa = panel["kappa_star"], panel["kappa"]
        edge = (1 + ks ** -0.5) ** 2  # upper edge of the teacher's spectrum
        s = np.linspace(0.0, 1.05 * edge, points)
        teacher += [{"source": panel["source"], "s": float(x), "density": float(r)}
                    for x, r in zip(s, density(s, ks, 0.0))]
        for alpha in panel["alphas"][::2] if quick else panel["alphas"]:
            sol = _solve(alpha=alpha, kappa=kappa, kappa_star=ks, lam=SPECTRUM_LAM)
            s = np.linspace(0.0, edge + 2 * math.sqrt(sol.xi), points)  # the noise widens Y's spectrum by 2 sqrt(xi)
            rows += [{"source": panel["source"], "alpha": alpha, "s": float(x), "density": float(r)}
                     for x, r in zip(s, sol.spectrum(s))]
            curves.append({"source": panel["source"], "kappa": kappa, "kappa_star": ks, "lam": SPECTRUM_LAM,
                           "alpha": alpha, "q": sol.q, "xi": sol.xi, "omega": sol.omega,
                           "rank_fraction": sol.rank_fraction, "atom": sol.atom,
                           "cut_binds": top_m_cut_binds(kappa, sol.q, sol.omega), "valid": sol.valid})
    return FigureData("", tables={"density": rows, "teacher": teacher}, meta={"curves": curves})


def _draw_spectrum(data: FigureData):
    sources = list(dict.fromkeys(c["source"] for c in data.meta["curves"]))
    fig, axes = subplots(len(sources), width=5.4, height=4.0)
    for ax, source in zip(axes, sources):
        curves = [c for c in data.meta["curves"] if c["source"] == source]
        ks = curves[0]["kappa_star"]
        support = [r["s"] for r in data.tables["teacher"] + data.tables["density"]
                   if r["source"] == source and r["density"] > 0]
        for c, color in zip(curves, colors(len(curves))):
            cut = ", top-m cut binds" if c["cut_binds"] else ""
            ax.plot(data.column("density", "s", source=source, alpha=c["alpha"]),
                    data.column("density", "density", source=source, alpha=c["alpha"]), color=color,
                    label=f"alpha={c['alpha']:g}: mass at 0 = {c['atom']:.3f}{cut}")
        ax.plot(data.column("teacher", "s", source=source), data.column("teacher", "density", source=source),
                color="k", ls="--", lw=1.2, label=f"teacher S*: mass at 0 = {1 - ks:.2f}")
        ax.set_xlim(0, 1.05 * max(support))
        ax.set_xlabel("eigenvalue s of S (non-zero part)")
        ax.set_ylabel("density")
        ax.set_title(f"{source}'s widths: kappa={curves[0]['kappa']}, kappa*={ks}, lam={curves[0]['lam']}, Delta=0",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("long-time spectrum of the learned S = eta(S* + sqrt(xi) G) (static equations)", fontsize=9)
    return fig


# -- Fig. 11: interpolation threshold and double-descent peak ------------------------------------------------
def _peak(kappa: float, Delta: float, alpha_inter: float, points: int) -> tuple[float, float]:
    """``(alpha, mse)`` of the interior maximum of the long-time mse along alpha at lam = :data:`PEAK_LAM`, in
    :data:`PEAK_WINDOW` times ``alpha_inter`` (NaN, NaN without one); the grid's top three points are refined by
    a parabola in log alpha."""
    grid = np.geomspace(PEAK_WINDOW[0] * alpha_inter, PEAK_WINDOW[1] * alpha_inter, points)
    with _unwarned():
        mse = longtime_curve("alpha", grid, kappa=kappa, kappa_star=PEAK_KAPPA_STAR, lam=PEAK_LAM, Delta=Delta)["mse"]
    i = int(np.nanargmax(mse)) if np.isfinite(mse).any() else 0
    if not 0 < i < points - 1 or not np.isfinite(mse[i - 1:i + 2]).all():
        return math.nan, math.nan
    a, b, c = np.polyfit(np.log(grid[i - 1:i + 2]), mse[i - 1:i + 2], 2)
    u = -b / (2 * a)
    return float(np.exp(u)), float(np.polyval([a, b, c], u))


def _interpolation(quick: bool) -> FigureData:
    """Table ``theory`` ``{Delta, kappa, alpha_inter, alpha_peak, mse_peak, parameter_count}``."""
    kappas = (0.5, 1.5) if quick else np.geomspace(0.1, 2.0, 16)
    deltas = (0.5,) if quick else PEAK_DELTAS
    rows = []
    for Delta in deltas:
        for kappa in map(float, kappas):
            alpha_inter = interpolation_threshold(kappa, PEAK_KAPPA_STAR, Delta)
            alpha_peak, mse_peak = _peak(kappa, Delta, alpha_inter, 9 if quick else 41)
            rows.append({"Delta": Delta, "kappa": kappa, "alpha_inter": alpha_inter, "alpha_peak": alpha_peak,
                         "mse_peak": mse_peak, "parameter_count": parameter_count(kappa)})
    return FigureData("", tables={"theory": rows},
                      meta={"kappa_star": PEAK_KAPPA_STAR, "peak_lam": PEAK_LAM, "deltas": list(deltas)})


def _draw_interpolation(data: FigureData):
    fig, (ax,) = subplots(1, width=7.0, height=4.6)
    rows = data.tables["theory"]
    kappa = sorted({r["kappa"] for r in rows})
    ax.plot(kappa, [parameter_count(k) for k in kappa], "k-", lw=1, label="parameter count kappa - kappa^2/2")
    for Delta, color in zip(data.meta["deltas"], colors(len(data.meta["deltas"]))):
        ax.plot(data.column("theory", "kappa", Delta=Delta), data.column("theory", "alpha_inter", Delta=Delta), "-",
                color=color, label=f"Delta={Delta:g}: interpolation threshold (lam = 0)")
        ax.plot(data.column("theory", "kappa", Delta=Delta), data.column("theory", "alpha_peak", Delta=Delta), "o",
                color=color, mfc="none",
                label=f"Delta={Delta:g}: peak of the long-time mse (lam = {data.meta['peak_lam']:g})")
    ax.axvspan(min(kappa), data.meta["kappa_star"], color="0.5", alpha=0.12,
               label="kappa < kappa*: the static equations are flagged invalid (top-m cut)")
    log_axes(ax, y=False)
    ax.set_xlabel("kappa (student width m/d)")
    ax.set_ylabel("alpha = n/d^2")
    ax.set_title(f"where double descent peaks, kappa*={data.meta['kappa_star']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


# -- Fig. 13: the population flow (Oja's flow without data) -------------------------------------------------------
def _population(quick: bool) -> FigureData:
    """Tables ``flow`` ``{lam, kappa, t, mse}`` (the population GD flow at step :data:`POPULATION_H` on a ``d_eff``
    instance) and ``limit`` ``{lam, kappa, mse, branch}`` (the static solution at :data:`ALPHA_POPULATION`)."""
    kappas, steps, d_eff = ((0.2, 1.0), 500, 30) if quick else (POPULATION_KAPPAS, 25000, 120)
    flow, limits = [], []
    for lam in POPULATION_LAMS:
        for kappa in kappas:
            ratios = Ratios(kappa=kappa, kappa_star=POPULATION_KAPPA_STAR, alpha=ALPHA_POPULATION, lam=lam)
            res = solve_population(ratios, h=POPULATION_H, steps=steps, d_eff=d_eff)
            flow += [{"lam": lam, "kappa": kappa, "t": float(t), "mse": float(m)}
                     for t, m in zip(res.t, res.mse) if t > 0]
            sol = _solve(alpha=ALPHA_POPULATION, kappa=kappa, kappa_star=POPULATION_KAPPA_STAR, lam=lam)
            limits.append({"lam": lam, "kappa": kappa, "mse": sol.mse, "branch": sol.branch})
    return FigureData("", tables={"flow": flow, "limit": limits},
                      meta={"kappa_star": POPULATION_KAPPA_STAR, "lams": list(POPULATION_LAMS), "kappas": list(kappas),
                            "h": POPULATION_H, "d_eff": d_eff, "alpha_limit": ALPHA_POPULATION})


def _draw_population(data: FigureData):
    meta = data.meta
    fig, axes = subplots(len(meta["lams"]), width=5.2, height=4.0)
    for ax, lam in zip(axes, meta["lams"]):
        for kappa, color in zip(meta["kappas"], colors(len(meta["kappas"]))):
            ax.plot(data.column("flow", "t", lam=lam, kappa=kappa), data.column("flow", "mse", lam=lam, kappa=kappa),
                    "-", color=color, label=f"kappa={kappa:g}")
            (limit,) = data.column("limit", "mse", lam=lam, kappa=kappa)
            if math.isfinite(limit) and limit > 0:  # 0 (perfect recovery) has no place on a log axis
                ax.axhline(limit, color=color, ls=":", lw=1)
        log_axes(ax)
        clipped = min(data.column("flow", "mse", lam=lam)) < MSE_FLOOR
        if clipped:
            ax.set_ylim(bottom=MSE_FLOOR)
        ax.set_xlabel("t")
        ax.set_ylabel("mse")
        ax.set_title(f"lam={lam:g}" + (f" (mse below {MSE_FLOOR:g} not shown)" if clipped else ""), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"population flow (alpha -> infinity), kappa*={meta['kappa_star']}, GD h={meta['h']}, "
                 f"d_eff={meta['d_eff']}; dotted: static solution at alpha={meta['alpha_limit']:g}", fontsize=9)
    return fig


# -- Fig. 15: where the top-m cut binds ------------------------------------------------------------------------
def _top_m_cut(quick: bool) -> FigureData:
    """Table ``theory`` ``{kappa, alpha, lam, q, omega, omega_minus_q, binds}`` on an (alpha, lam) grid per kappa
    (Delta = 0, kappa* = :data:`CUT_KAPPA_STAR`)."""
    kappas = (0.35,) if quick else CUT_KAPPAS
    alphas = np.linspace(0.05, 0.6, 4) if quick else np.linspace(0.02, 0.6, 24)
    lams = np.geomspace(1e-3, 0.3, 3 if quick else 16)
    rows = []
    for kappa in kappas:
        for alpha in map(float, alphas):
            for lam in map(float, lams):
                sol = _solve(alpha=alpha, kappa=kappa, kappa_star=CUT_KAPPA_STAR, lam=lam)
                rows.append({"kappa": kappa, "alpha": alpha, "lam": lam, "q": sol.q, "omega": sol.omega,
                             "omega_minus_q": sol.omega - sol.q,
                             "binds": int(sol.converged and top_m_cut_binds(kappa, sol.q, sol.omega))})
    return FigureData("", tables={"theory": rows}, meta={"kappa_star": CUT_KAPPA_STAR, "kappas": list(kappas),
                                                         "lams_of_figures": list(CUT_LAMS_OF_FIGURES)})


def _plane(rows: list[dict], x: str, y: str, z: str) -> tuple[np.ndarray, np.ndarray, np.ma.MaskedArray]:
    """``(xs, ys, Z)`` of rows on a full (x, y) grid: ``Z[j, i]`` is ``z`` at ``(xs[i], ys[j])``, masked where not
    finite."""
    xs, ys = sorted({r[x] for r in rows}), sorted({r[y] for r in rows})
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in rows:
        grid[ys.index(r[y]), xs.index(r[x])] = r[z]
    return np.array(xs), np.array(ys), np.ma.masked_invalid(grid)


def _draw_top_m_cut(data: FigureData):
    kappas = data.meta["kappas"]
    ncols = min(len(kappas), 2)
    fig, axes = subplots(ncols, nrows=math.ceil(len(kappas) / ncols), width=4.8, height=3.8)
    for ax, kappa in zip(axes, kappas):
        rows = [r for r in data.tables["theory"] if r["kappa"] == kappa]
        alphas, lams, gap = _plane(rows, "alpha", "lam", "omega_minus_q")
        if gap.max() > 0:
            ax.contourf(alphas, lams, gap, levels=[0.0, gap.max() + 1.0], colors=["C3"], alpha=0.3)
            ax.contour(alphas, lams, gap, levels=[0.0], colors=["C3"])
        unsolved = [r for r in rows if not math.isfinite(r["omega_minus_q"])]
        ax.plot([r["alpha"] for r in unsolved], [r["lam"] for r in unsolved], "x", color="0.4", ms=4,
                label="no static solution found" if unsolved else "_nolegend_")
        for lam in data.meta["lams_of_figures"]:
            ax.axhline(lam, color="0.4", ls=":", lw=1)
        if unsolved:
            ax.legend(fontsize=7, loc="upper left")
        ax.set_yscale("log")
        ax.set_ylim(lams.min() / 1.3, lams.max() * 1.3)  # the grid's edges (and its unsolved points) in view
        ax.set_xlabel("alpha")
        ax.set_ylabel("lam")
        ax.set_title(f"kappa={kappa}, kappa*={data.meta['kappa_star']}", fontsize=10)
    fig.suptitle("where the top-m cut binds (static equations, Delta = 0)\nshaded: omega > q, line: omega = q; "
                 "dotted: the lam of Figs. 4 and 16", fontsize=9)
    return fig


# -- Fig. 21: alpha_PR in the (kappa, kappa*) plane --------------------------------------------------------------
def _recovery_plane(quick: bool) -> FigureData:
    """Table ``theory`` ``{kappa, kappa_star, alpha_pr_lam0, alpha_pr_lam0plus}`` (``inf`` where kappa < kappa*)."""
    kappas = np.linspace(0.05, 1.2, 6 if quick else 47)
    kappa_stars = np.linspace(0.05, 1.0, 5 if quick else 39)
    rows = [{"kappa": k, "kappa_star": ks, "alpha_pr_lam0": perfect_recovery_threshold(k, ks, unregularized=True),
             "alpha_pr_lam0plus": perfect_recovery_threshold(k, ks)}
            for k in map(float, kappas) for ks in map(float, kappa_stars)]
    return FigureData("", tables={"theory": rows}, meta={"levels": RECOVERY_LEVELS.tolist()})


def _draw_recovery_plane(data: FigureData):
    fig, axes = subplots(2, width=5.0, height=4.2)
    rows = data.tables["theory"]
    for ax, (key, what) in zip(axes, (("alpha_pr_lam0", "lam = 0 flow"), ("alpha_pr_lam0plus", "lam -> 0+"))):
        kappas, kappa_stars, alpha = _plane(rows, "kappa", "kappa_star", key)
        filled = ax.contourf(kappas, kappa_stars, alpha, levels=data.meta["levels"], extend="both", cmap="viridis")
        lines = ax.contour(kappas, kappa_stars, alpha, levels=data.meta["levels"], colors="k", linewidths=0.6)
        ax.clabel(lines, fontsize=7, fmt="%g")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.text(0.08, 0.9, "kappa < kappa*:\nno perfect recovery", fontsize=8, va="top")
        ax.set_xlabel("kappa (student width m/d)")
        ax.set_ylabel("kappa* (teacher width m*/d)")
        ax.set_title(f"alpha_PR, {what} (Delta = 0)", fontsize=10)
        fig.colorbar(filled, ax=ax, label="alpha_PR")
    return fig


_FIGURES = {8: (_spectrum, _draw_spectrum), 11: (_interpolation, _draw_interpolation),
            13: (_population, _draw_population), 15: (_top_m_cut, _draw_top_m_cut),
            21: (_recovery_plane, _draw_recovery_plane)}


def collect(jobs, quick: bool, figure: int) -> FigureData:
    """The tables of the paper's figure ``figure`` (one of 8, 11, 13, 15, 21); ``jobs`` is not read."""
    if figure not in _FIGURES:
        raise ValueError(f"figure={figure!r}: the theory-only figures here are {sorted(_FIGURES)}")
    data = _FIGURES[figure][0](quick)
    data.meta["figure"] = figure
    return data


def draw(data: FigureData):
    return _FIGURES[data.meta["figure"]][1](data)
