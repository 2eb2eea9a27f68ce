"""The DMFT against real-input GD over the whole curve, d = 32-256: a resumable measurement.

    python scripts/validation/dmft_curves.py --out docs/results/dmft_curves --cases A,B --sizes 32,64,128,256
    python scripts/validation/dmft_curves.py --out docs/results/dmft_curves --report --figure docs/figures/dmft_curves.png

Cases A (kappa > 1, noiseless, lam = 0) and B (kappa < 1, noisy, lam > 0) of the GOE-design table in
docs/validation.md ("DMFT vs simulation", ``scripts/benchmarks/dmft_validation.py``), same step h = 0.05,
200 steps (t <= 10), sigma0 = 1. GD runs on real Gaussian inputs in fp32, recording every ``every``
steps; the DMFT (the d -> infinity prediction) at ``d_eff`` with ``samples`` copies. Each GD seed and
the DMFT solve is one point cached under ``<out>/points/<hash>.json`` (:func:`scale.run_points`); the
report compares with the solve of the largest d_eff.

**Report** (``<out>/summary.json``), per case and curve (mse, train_loss, in_sample_error):

- per d: the mean over the grid of ``|GD mean / DMFT - 1|`` and its maximum, the signed time average
  of ``GD / DMFT`` per seed (its mean, seed std and s.e.m.), and the GD mean's largest relative s.e.m.;
- the finite-size law of that time average (fitted over d >= ``--fit-min-d``, default 64: at d = 32 some
  seeds oscillate with period 2 at h = 0.05, which the DMFT's discrete flow at d -> infinity does not), ``quadflow.analysis.extrapolate`` of every seed with
  theory = 1 (the DMFT curve itself): the extrapolated ratio, its gap to 1 with error, the exponent
  p of the gap law ``|ratio - 1| = b d^-p`` and the d at which it predicts 5 % and 2 %;
- the whole curve extrapolated to d -> infinity: at each recorded time, the ``a + b/d`` extrapolation
  of the seeds, its largest deviation from the DMFT and the largest in units of the combined error
  (extrapolation error and the DMFT's jackknife error in quadrature).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.dmft_validation import CASES, CURVE_KEYS, H, STEPS  # noqa: E402
from scale import parse_names, parse_sizes, run_points  # noqa: E402

from quadflow import Problem, simulate  # noqa: E402
from quadflow.analysis import extrapolate_or_explain  # noqa: E402
from quadflow.io import atomic_write_text, dumps  # noqa: E402
from quadflow.theory.dmft import solve_dmft  # noqa: E402


FIT_MIN_D = 64  # at d = 32 and h = 0.05 some seeds oscillate with period 2 (the saw-tooth of their mean curve)


def plan(cases: list[str], sizes: list[int], seeds: dict, every: int, d_eff: int, samples: int) -> list[dict]:
    """The DMFT solve of each case first, then GD seeds smallest d first. ``seeds``: count per d."""
    common = {"h": H, "steps": STEPS}
    configs = [{"kind": "dmft", "case": c, **CASES[c], **common, "d_eff": d_eff, "samples": samples, "seed": 1000}
               for c in cases]
    configs += [{"kind": "gd", "case": c, **CASES[c], **common, "d": d, "seed": s, "every": every,
                 "precision": "fp32", "design": "gaussian"}
                for d in sorted(sizes) for s in range(seeds[d]) for c in cases]
    return configs


def measure(cfg: dict) -> dict:
    """One point: the curves on the grid ``t = step * h`` (every step for the DMFT, every ``every`` for GD)."""
    params = {k: cfg[k] for k in CASES[cfg["case"]]}
    t0 = time.perf_counter()
    if cfg["kind"] == "dmft":
        out = solve_dmft(Problem(d=cfg["d_eff"], **params), h=cfg["h"], steps=cfg["steps"], d_eff=cfg["d_eff"],
                         samples=cfg["samples"], seed=cfg["seed"])
        curves = {k: out[k].tolist() for k in ("t", *CURVE_KEYS)}
        extra = {"converged": bool(out["converged"]), "iterations": out["iterations"],
                 "stderr": {k: np.asarray(out["stderr"][k]).tolist() for k in CURVE_KEYS}}
    else:
        torch.set_num_threads(1)
        steps = np.arange(0, cfg["steps"] + 1, cfg["every"])
        out = simulate(Problem(d=cfg["d"], **params), h=cfg["h"], steps=cfg["steps"], seed=cfg["seed"],
                       precision=cfg["precision"], design=cfg["design"], record_steps=steps)
        curves = {k: np.asarray(out[k], dtype=float).tolist() for k in ("t", *CURVE_KEYS)}
        extra = {"converged": True}
    return {"status": "ok", **curves, **extra, "wall_s": time.perf_counter() - t0}


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


def report(out: Path, fit_min_d: int = FIT_MIN_D) -> dict:
    points = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*.json"))]
    summary = {}
    for case in sorted({p["config"]["case"] for p in points}):
        mine = [p for p in points if p["config"]["case"] == case]
        solves = [p for p in mine if p["config"]["kind"] == "dmft"]
        runs: dict = {}
        for p in mine:
            if p["config"]["kind"] == "gd":
                runs.setdefault(p["config"]["d"], []).append(p["result"])
        if not solves or not runs:
            summary[case] = {"refused": "needs the DMFT solve and GD runs"}
            continue
        best = max(solves, key=lambda p: (p["config"]["d_eff"], p["config"]["samples"]))  # the sharpest reference
        summary[case] = {"params": CASES[case], "dmft_d_eff": best["config"]["d_eff"],
                         "dmft_samples": best["config"]["samples"], "dmft_converged": best["result"]["converged"],
                         **case_report(best["result"], runs, fit_min_d)}
    atomic_write_text(out / "summary.json", dumps(summary, indent=1))
    return summary


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
                ax.errorbar(t, ext["value"], yerr=ext["error"], fmt="o", ms=2, color="0.3", label="GD, d -> inf (a + b/d)")
            ax.plot(t, c["dmft"], "k--", lw=2, label="DMFT")
            ax.set_yscale("log")
            ax.set_xlabel("t")
            ax.set_title(f"{case} {key}: " + ", ".join(f"{k}={v:g}" for k, v in s["params"].items()), fontsize=8)
        ax = axes[2, col]
        for key in ("mse", "train_loss"):
            rows = s["curves"][key]["per_d"]
            ax.plot([r["d"] for r in rows], [r["mean_rel"] for r in rows], "o-", label=key)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("d")
        ax.set_title(f"{case}: mean over t of |GD mean / DMFT - 1|", fontsize=8)
        ax.legend(fontsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--cases", default="A,B", help=f"comma-separated among {', '.join(CASES)}")
    ap.add_argument("--sizes", default="32,64,128,256")
    ap.add_argument("--seeds", default="8,8,6,4", help="seeds per size, in the order of --sizes (or one count)")
    ap.add_argument("--every", type=int, default=5, help="GD records every this many steps")
    ap.add_argument("--d-eff", type=int, default=128)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--fit-min-d", type=int, default=FIT_MIN_D, help="smallest d in the fits")
    ap.add_argument("--figure", type=Path, default=None, help="also draw the figure here (png)")
    args = ap.parse_args(argv)
    if not args.report:
        cases = parse_names(args.cases, CASES, "--cases")
        sizes = parse_sizes(args.sizes)
        counts = [int(s) for s in args.seeds.split(",")]
        if len(counts) not in (1, len(sizes)) or min(counts) < 1:
            raise ValueError(f"--seeds: {args.seeds!r}; give one count >= 1 or one per size ({len(sizes)})")
        if STEPS % args.every:
            raise ValueError(f"--every: {args.every} must divide the {STEPS} steps")
        seeds = dict(zip(sizes, counts * len(sizes) if len(counts) == 1 else counts))
        run_points(plan(cases, sizes, seeds, args.every, args.d_eff, args.samples), args.out, args.max_minutes,
                   measure=measure,
                   label=lambda c: f"{c['kind']} {c['case']} " + (f"d_eff={c['d_eff']}" if c["kind"] == "dmft"
                                                                   else f"d={c['d']} seed={c['seed']}"),
                   line=lambda r: f"mse(t=10) {r['mse'][-1]:.4g} ({r['wall_s']:.0f} s)",
                   log=lambda text: print(text, flush=True))
    summary = report(args.out, args.fit_min_d)
    if args.figure is not None:
        figure(summary, args.figure)
    print(json.dumps(headline(summary), indent=1))


if __name__ == "__main__":
    main()
