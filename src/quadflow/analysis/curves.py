"""Curves of finite-size runs against a d -> infinity theory curve (the DMFT): the report of
scripts/validation/dmft_curves.py and optimiser_dmft.py.

    from quadflow.analysis.curves import case_report, show
    rep = case_report(dmft, {d: [run, ...]}, fit_min_d=64)   # dmft, run: {"t", "mse", ...} as lists
    show({"A": {"params": {...}, **rep}}, figure=Path("curves.png"))   # draw, print the headline numbers

Per curve (:data:`CURVE_KEYS`) :func:`case_report` gives, per d, the mean and largest relative gap of the
seed mean to the theory and the signed time average of each seed's ratio to it; the finite-size law of
that ratio (:func:`quadflow.analysis.extrapolate`, theory = 1); and the whole curve extrapolated to
d -> infinity (``a + b/d`` at every time) against the theory, relative and in combined errors.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quadflow.analysis.finite_size import extrapolate_or_explain

CURVE_KEYS = ("mse", "train_loss", "in_sample_error")
# The problems of the "DMFT vs simulation" table of docs/validation.md (scripts/benchmarks/dmft_validation.py,
# scripts/validation/dmft_curves.py), all at step H for STEPS steps, sigma0 = 1
H, STEPS = 0.05, 200
CASES = {
    "A": dict(kappa=1.5, kappa_star=0.5, alpha=1.0, Delta=0.0, lam=0.0),
    "B": dict(kappa=0.5, kappa_star=0.3, alpha=1.5, Delta=0.5, lam=0.1),
    "C": dict(kappa=2.0, kappa_star=1.0, alpha=0.8, Delta=0.2, lam=0.0),
}


def best_solve(solves: list[dict]) -> dict:
    """The sharpest reference among cached DMFT points: the largest ``(d_eff, samples)``."""
    return max(solves, key=lambda p: (p["config"]["d_eff"], p["config"]["samples"]))


def case_report(dmft: dict, runs: dict, fit_min_d: int = 0) -> dict:
    """The report of one case (module docstring); ``runs``: {d: [GD results]}; the fits use d >= ``fit_min_d``."""
    sizes = sorted(runs)
    t = np.asarray(runs[sizes[0]][0]["t"])
    on_grid = np.searchsorted(np.asarray(dmft["t"]), t)  # GD records a subset of the DMFT's steps
    out = {"t": t.tolist(), "sizes": sizes, "seeds": [len(runs[d]) for d in sizes], "fit_min_d": fit_min_d,
           "curves": {}}
    for key in CURVE_KEYS:
        th = np.asarray(dmft[key])[on_grid]
        th_err = np.asarray(dmft["stderr"][key])[on_grid]
        live = t > 0  # t = 0 is the shared initialisation: no information
        per_d, all_d, all_ratio = [], [], []
        for d in sizes:
            vals = np.array([r[key] for r in runs[d]])
            mean = vals.mean(0)
            rel = np.abs(mean[live] / th[live] - 1)
            ratios = (vals[:, live] / th[live]).mean(1)  # the seed's curve over the DMFT's, time-averaged
            sem = vals.std(0, ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else np.full_like(mean, np.nan)
            per_d.append({"d": d, "seeds": len(vals), "mean_rel": float(rel.mean()), "max_rel": float(rel.max()),
                          "t_max_rel": float(t[live][int(np.argmax(rel))]),
                          "ratio": float(ratios.mean()), "ratio_std": float(ratios.std(ddof=1)) if len(vals) > 1 else None,
                          "sim_rel_sem": float(np.nanmax(sem[live] / mean[live])), "sim_mean": mean.tolist()})
            if d >= fit_min_d:
                all_d += [d] * len(vals)
                all_ratio += ratios.tolist()
        fit, why = extrapolate_or_explain(all_d, all_ratio, theory=1.0)
        entry = {"per_d": per_d, "dmft": th.tolist(), "dmft_stderr": th_err.tolist()}
        if fit is None:
            entry["ratio_extrapolation"] = {"refused": why}
        else:
            entry["ratio_extrapolation"] = {"value": fit.value, "error": fit.error, "model": fit.model,
                                            "gap_p": fit.gap_law.p, "gap_p_err": fit.gap_law.p_err,
                                            "d_for_5pct": fit.size_at_gap(0.05), "d_for_2pct": fit.size_at_gap(0.02),
                                            "alternatives_refused": why}
        entry["curve_extrapolation"] = curve_extrapolation(t, live, th, th_err,
                                                           {d: r for d, r in runs.items() if d >= fit_min_d}, key)
        out["curves"][key] = entry
    return out


def curve_extrapolation(t, live, th, th_err, runs: dict, key: str) -> dict:
    """At each live time, ``a + b/d`` through every seed; its deviation from the DMFT, relative and in errors."""
    d = np.concatenate([[s] * len(runs[s]) for s in sorted(runs)])
    vals = np.concatenate([np.array([r[key] for r in runs[s]]) for s in sorted(runs)])
    value, error = np.full(t.size, np.nan), np.full(t.size, np.nan)
    for i in np.flatnonzero(live):
        fit, _ = extrapolate_or_explain(d, vals[:, i], models=("1/d",))
        if fit is not None:
            value[i], error[i] = fit.value, fit.error
    rel = np.abs(value / th - 1)
    z = np.abs(value - th) / np.hypot(error, th_err)
    ok = np.isfinite(rel)
    if not ok.any():
        return {"refused": "no time with an extrapolation"}
    return {"value": value.tolist(), "error": error.tolist(), "max_rel": float(np.max(rel[ok])),
            "mean_rel": float(np.mean(rel[ok])), "t_max_rel": float(t[ok][int(np.argmax(rel[ok]))]),
            "max_z": float(np.max(z[ok])), "mean_z": float(np.mean(z[ok])), "times": int(ok.sum())}


def headline(summary: dict) -> dict:
    """The numbers of the docs table: per case and curve, the per-d mean errors and the fits."""
    rows = {}
    for case, s in summary.items():
        for key, c in s.get("curves", {}).items():
            rows[f"{case} {key}"] = {
                "mean_rel_by_d": {r["d"]: round(r["mean_rel"], 4) for r in c["per_d"]},
                "ratio_extrapolation": {k: v for k, v in c["ratio_extrapolation"].items() if k != "alternatives_refused"},
                "curve_extrapolation": {k: v for k, v in c["curve_extrapolation"].items() if k not in ("value", "error")}}
    return rows


def figure(summary: dict, path: Path) -> None:
    """Per case: the mse and train-loss curves of the GD mean at each d, the DMFT and the d -> infinity
    extrapolation (top rows); the time-averaged |GD / DMFT - 1| against d, log-log (bottom row)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c, s in summary.items() if "curves" in s]
    fig, axes = plt.subplots(3, len(cases), figsize=(4.5 * len(cases), 10), squeeze=False)
    for col, case in enumerate(cases):
        s = summary[case]
        t = np.asarray(s["t"])
        for row, key in enumerate(("mse", "train_loss")):
            ax, c = axes[row, col], s["curves"][key]
            for r in c["per_d"]:
                ax.plot(t, r["sim_mean"], lw=1, label=f"GD d={r['d']} ({r['seeds']} seeds)")
            ext = c["curve_extrapolation"]
            if "value" in ext:
                ax.errorbar(t, np.asarray(ext["value"], dtype=float), yerr=np.asarray(ext["error"], dtype=float), fmt="o", ms=2, color="0.3", label="GD, d -> inf (a + b/d)")
            ax.plot(t, c["dmft"], "k--", lw=2, label="DMFT")
            ax.set_yscale("log")
            ax.set_xlabel("t")
            ax.set_title(f"{case} {key}: " + ", ".join(f"{k}={_short(v)}" for k, v in s["params"].items()), fontsize=8)
        ax = axes[2, col]
        for key in ("mse", "train_loss"):
            rows = s["curves"][key]["per_d"]
            ax.plot([r["d"] for r in rows], [r["mean_rel"] for r in rows], "o-", label=key)
        gap_against_d_axes(ax, f"{case}: mean over t of |GD mean / DMFT - 1|", fontsize=8)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def gap_against_d_axes(ax, title: str, fontsize: int = 7) -> None:
    """Finish a panel of a time-averaged relative gap against d: log-log axes, the x label, title and legend."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("d")
    ax.set_title(title, fontsize=fontsize)
    ax.legend(fontsize=fontsize - 1)


def _short(value) -> str:
    """A number in ``g`` format, anything else (an optimiser's name, a design) as it is."""
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def show(summary: dict, figure_path: Path | None = None) -> None:
    """Draw :func:`figure` at ``figure_path`` (if given) and print the :func:`headline` numbers as JSON."""
    if figure_path is not None:
        figure(summary, figure_path)
    print(json.dumps(headline(summary), indent=1))
