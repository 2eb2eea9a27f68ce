"""The DMFT against real-input GD over the whole curve, d = 32-256: a resumable measurement.

    python scripts/validation/dmft_curves.py --out docs/results/dmft_curves --cases A,B --sizes 32,64,128,256
    python scripts/validation/dmft_curves.py --out docs/results/dmft_curves --report --figure docs/figures/dmft_curves.png

Cases A (kappa > 1, noiseless, lam = 0) and B (kappa < 1, noisy, lam > 0) of the GOE-design table in
docs/validation.md ("DMFT vs simulation", ``scripts/benchmarks/dmft_validation.py``), same step h = 0.05,
200 steps (t <= 10), sigma0 = 1. GD runs on real Gaussian inputs in fp32, recording every ``every``
steps; the DMFT (the d -> infinity prediction) at ``d_eff`` with ``samples`` copies. Each GD seed and
the DMFT solve is one point cached under ``<out>/points/<hash>.json``
(:func:`quadflow.analysis.points.run_points`); the report compares with the solve of the largest d_eff.

**Report** (``<out>/summary.json``, :func:`quadflow.analysis.curves.case_report`), per case and curve (mse,
train_loss, in_sample_error):

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

import time
from pathlib import Path

import numpy as np
import torch

from quadflow import Problem, simulate
from quadflow.analysis.curves import CASES, CURVE_KEYS, H, STEPS, best_solve, case_report, show
from quadflow.analysis.points import load_points, parse_names, parse_sizes, parser, run_measurement
from quadflow.io import atomic_write_text, dumps
from quadflow.theory.dmft import solve_dmft

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


def report(out: Path, fit_min_d: int = FIT_MIN_D) -> dict:
    points = load_points(out)
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
        best = best_solve(solves)
        summary[case] = {"params": CASES[case], "dmft_d_eff": best["config"]["d_eff"],
                         "dmft_samples": best["config"]["samples"], "dmft_converged": best["result"]["converged"],
                         **case_report(best["result"], runs, fit_min_d)}
    atomic_write_text(out / "summary.json", dumps(summary, indent=1))
    return summary


def plan_from(args) -> list[dict]:
    """The plan of the command line's arguments (ValueError naming a bad one)."""
    cases = parse_names(args.cases, CASES, "--cases")
    sizes = parse_sizes(args.sizes)
    counts = [int(s) for s in args.seeds.split(",")]
    if len(counts) not in (1, len(sizes)) or min(counts) < 1:
        raise ValueError(f"--seeds: {args.seeds!r}; give one count >= 1 or one per size ({len(sizes)})")
    if STEPS % args.every:
        raise ValueError(f"--every: {args.every} must divide the {STEPS} steps")
    seeds = dict(zip(sizes, counts * len(sizes) if len(counts) == 1 else counts))
    return plan(cases, sizes, seeds, args.every, args.d_eff, args.samples)


def main(argv=None) -> None:
    ap = parser(__doc__, figure=True, report_help="only write summary.json from the cached points")
    ap.add_argument("--cases", default="A,B", help=f"comma-separated among {', '.join(CASES)}")
    ap.add_argument("--sizes", default="32,64,128,256")
    ap.add_argument("--seeds", default="8,8,6,4", help="seeds per size, in the order of --sizes (or one count)")
    ap.add_argument("--every", type=int, default=5, help="GD records every this many steps")
    ap.add_argument("--d-eff", type=int, default=128)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--fit-min-d", type=int, default=FIT_MIN_D, help="smallest d in the fits")
    args = ap.parse_args(argv)
    _, summary = run_measurement(
        args, plan=plan_from, report=lambda a: report(a.out, a.fit_min_d), measure=measure,
        label=lambda c: f"{c['kind']} {c['case']} " + (f"d_eff={c['d_eff']}" if c["kind"] == "dmft"
                                                        else f"d={c['d']} seed={c['seed']}"),
        line=lambda r: f"mse(t=10) {r['mse'][-1]:.4g} ({r['wall_s']:.0f} s)")
    show(summary, args.figure)


if __name__ == "__main__":
    main()
