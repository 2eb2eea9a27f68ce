"""The DMFT of each optimiser against its own simulations over the whole curve, with the finite-size fit:
GD, SGD with momentum 0.9, Adam, and minibatch SGD at batch fractions 0.1 and 0.3, on the GOE design
(d = 32, 64, 128) and on real Gaussian inputs (d = 64, 128, 256). A resumable measurement:

    .venv/bin/python scripts/validation/optimiser_dmft.py --out docs/results/optimiser_dmft
    .venv/bin/python scripts/validation/optimiser_dmft.py --out docs/results/optimiser_dmft --report \\
        --figure docs/figures/optimiser_dmft.png

Problem: kappa 1.5, kappa* 0.5, alpha 1, Delta 0, lam 0.05, sigma0 1, h 0.02, 300 steps (t <= 6), the
simulations in fp32 recording every 5 steps (full-batch observables also for minibatch SGD), the DMFT at
``--d-eff`` (default 128) with ``--samples`` copies (8). Adam runs at lr 0.01, where its path differs from
GD's by about 90 % in mse. Every simulation seed and every DMFT solve is one point cached under
``<out>/points/<hash>.json``; an interrupted run continues where it stopped.

The report (``<out>/summary.json``, one entry per optimiser and design) is that of
``dmft_curves.py`` (:func:`quadflow.analysis.curves.case_report`): per d the mean and largest relative gap of the seed mean to the DMFT, the
finite-size law of each seed's time-averaged ratio (``quadflow.analysis``), and the whole curve
extrapolated to d -> infinity (``a + b/d`` at every recorded time) against the DMFT.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from quadflow import Problem, simulate
from quadflow.analysis.curves import CURVE_KEYS, best_solve, case_report, headline
from quadflow.analysis.points import load_points, parse_names, parser, run_measurement
from quadflow.io import atomic_write_text, dumps
from quadflow.optim import by_name
from quadflow.theory.dmft import solve_dmft

PARAMS = dict(kappa=1.5, kappa_star=0.5, alpha=1.0, Delta=0.0, lam=0.05, sigma0=1.0)
H, STEPS, EVERY = 0.02, 300, 5
# name -> (optimiser preset, its arguments, batch fraction)
OPTIMISERS = {
    "gd": ("gd", {}, 1.0),
    "momentum": ("momentum", {}, 1.0),
    "adam": ("adam", {"lr": 0.01}, 1.0),
    "sgd_b0.3": ("gd", {}, 0.3),
    "sgd_b0.1": ("gd", {}, 0.1),
}
SIZES = {"goe": {32: 8, 64: 4, 128: 3}, "gaussian": {64: 6, 128: 4, 256: 3}}  # d -> seeds


def plan(names: list[str], designs: list[str], d_eff: int, samples: int) -> list[dict]:
    """The simulations first (smallest d first), then the DMFT solves."""
    common = {**PARAMS, "h": H, "steps": STEPS}
    configs = [{"kind": "sim", "optimiser": o, **common, "design": g, "d": d, "seed": s, "every": EVERY,
                "precision": "fp32"}
               for g in designs for d, seeds in sorted(SIZES[g].items()) for s in range(seeds) for o in names]
    configs += [{"kind": "dmft", "optimiser": o, **common, "d_eff": d_eff, "samples": samples, "seed": 1000}
                for o in names]
    return configs


def measure(cfg: dict) -> dict:
    """One point: the curves on ``t = step * h`` (every step for the DMFT, every ``every`` for a simulation)."""
    preset, args, b = OPTIMISERS[cfg["optimiser"]]
    make = by_name(preset, cfg["h"], **args)
    params = {k: cfg[k] for k in PARAMS}
    t0 = time.perf_counter()
    if cfg["kind"] == "dmft":
        out = solve_dmft(Problem(d=cfg["d_eff"], **params), h=cfg["h"], steps=cfg["steps"], d_eff=cfg["d_eff"],
                         samples=cfg["samples"], seed=cfg["seed"], optim=make, batch_fraction=b)
        extra = {"converged": bool(out["converged"]),
                 "stderr": {k: np.asarray(out["stderr"][k]).tolist() for k in CURVE_KEYS}}
    else:
        p = Problem(d=cfg["d"], **params)
        out = simulate(p, h=cfg["h"], steps=cfg["steps"], seed=cfg["seed"], precision=cfg["precision"],
                       design=cfg["design"], optim=make, batch_size=None if b == 1 else round(b * p.n),
                       record_steps=np.arange(0, cfg["steps"] + 1, cfg["every"]))
        extra = {"converged": True}
    curves = {k: np.asarray(out[k], dtype=float).tolist() for k in ("t", *CURVE_KEYS)}
    return {"status": "ok", **curves, **extra, "wall_s": time.perf_counter() - t0}


def report(out: Path, fit_min_d: int) -> dict:
    """Per optimiser and design: :func:`quadflow.analysis.curves.case_report` of its runs against its own DMFT."""
    points = load_points(out)
    summary = {}
    for name in OPTIMISERS:
        solves = [p for p in points if p["config"]["kind"] == "dmft" and p["config"]["optimiser"] == name]
        for design in SIZES:
            runs: dict = {}
            for p in points:
                c = p["config"]
                if c["kind"] == "sim" and c["optimiser"] == name and c["design"] == design:
                    runs.setdefault(c["d"], []).append(p["result"])
            if not solves or not runs:
                continue
            best = best_solve(solves)
            preset, args, b = OPTIMISERS[name]
            summary[f"{name} {design}"] = {
                "params": {"optim": preset, **args, "batch_fraction": b, "design": design},
                "dmft_d_eff": best["config"]["d_eff"], "dmft_samples": best["config"]["samples"],
                **case_report(best["result"], runs, fit_min_d if design == "gaussian" else 0)}
    atomic_write_text(out / "summary.json", dumps(summary, indent=1))
    return summary


def figure(summary: dict, path: Path) -> None:
    """One row per optimiser, one column per (design, curve): the seed mean over the DMFT minus 1 against t,
    one line per d, the d -> infinity extrapolation (a + b/d at each time) with its error band, and the
    2 % band around the DMFT."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [(design, key) for design in SIZES for key in ("mse", "train_loss")]
    fig, axes = plt.subplots(len(OPTIMISERS), len(columns), figsize=(3.6 * len(columns), 2.4 * len(OPTIMISERS)),
                             sharex=True, squeeze=False)
    for row, name in enumerate(OPTIMISERS):
        for col, (design, key) in enumerate(columns):
            ax = axes[row, col]
            ax.axhspan(-0.02, 0.02, color="0.9")
            ax.axhline(0, color="k", lw=1)
            case = summary.get(f"{name} {design}")
            if case is not None:
                t, c = np.asarray(case["t"]), case["curves"][key]
                th = np.asarray(c["dmft"])
                for r in c["per_d"]:
                    ax.plot(t[1:], (np.asarray(r["sim_mean"]) / th - 1)[1:], lw=1, label=f"d={r['d']} ({r['seeds']} seeds)")
                ext = c["curve_extrapolation"]
                if "value" in ext:
                    gap, err = np.asarray(ext["value"], dtype=float) / th - 1, np.asarray(ext["error"], dtype=float) / th
                    ax.plot(t, gap, "k--", lw=1.2, label="d -> inf (a + b/d)")
                    ax.fill_between(t, gap - err, gap + err, color="k", alpha=0.12, lw=0)
            ax.set_ylim(-0.15, 0.2)
            ax.grid(alpha=0.3)
            ax.set_title(f"{name}, {'real inputs' if design == 'gaussian' else 'GOE'}: {key}", fontsize=9)
            if col == 0:
                ax.set_ylabel("sim / DMFT - 1")
            if row == len(OPTIMISERS) - 1:
                ax.set_xlabel("t")
            if row == 0 or col % 2 == 0:
                ax.legend(fontsize=6, loc="upper right")
    p = PARAMS
    fig.suptitle(f"Each optimiser against its own DMFT (d_eff 128, 8 samples): kappa {p['kappa']}, kappa* "
                 f"{p['kappa_star']}, alpha {p['alpha']}, lam {p['lam']}, Delta {p['Delta']}, h {H}; grey: +-2 %",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plan_from(args) -> list[dict]:
    """The plan of the command line's arguments, on ``--threads`` CPU threads."""
    torch.set_num_threads(args.threads)
    names = parse_names(args.optimisers, OPTIMISERS, "--optimisers")
    designs = parse_names(args.designs, SIZES, "--designs")
    return plan(names, designs, args.d_eff, args.samples)


def main(argv=None) -> None:
    ap = parser(__doc__, figure=True)
    ap.add_argument("--optimisers", default=",".join(OPTIMISERS), help=f"comma-separated among {', '.join(OPTIMISERS)}")
    ap.add_argument("--designs", default="goe,gaussian")
    ap.add_argument("--d-eff", type=int, default=128)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fit-min-d", type=int, default=64, help="smallest d of the real-input fits")
    args = ap.parse_args(argv)
    _, summary = run_measurement(
        args, plan=plan_from, report=lambda a: report(a.out, a.fit_min_d), measure=measure,
        label=lambda c: f"{c['kind']} {c['optimiser']} " + (
            f"d_eff={c['d_eff']}" if c["kind"] == "dmft" else f"{c['design']} d={c['d']} seed={c['seed']}"),
        line=lambda r: f"mse(t={r['t'][-1]:g}) {r['mse'][-1]:.4g} ({r['wall_s']:.0f} s)")
    if args.figure is not None:
        figure(summary, args.figure)
    print(json.dumps(headline(summary), indent=1))


if __name__ == "__main__":
    main()
