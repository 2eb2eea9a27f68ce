"""DMFT vs finite-size GD: the table and figure of docs/validation.md ("DMFT vs simulation").

For each parameter set, the DMFT (large d_eff, the d -> infinity prediction) is
compared with GD simulations at growing d, GOE design and real Gaussian inputs,
averaged over seeds, on the same grid t = step * h. The error of a curve is its
whole-curve maximum relative deviation ``max_t |theory/sim - 1|``.

    python scripts/benchmarks/dmft_validation.py [--quick] [--json results.json]
    python scripts/benchmarks/dmft_validation.py --replot --json results.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from quadflow import Problem, simulate
from quadflow.analysis.curves import CASES, CURVE_KEYS, H, STEPS, gap_against_d_axes  # the cases, shared with validation/dmft_curves.py
from quadflow.theory.dmft import solve_dmft


def curve_error(theory: dict, sims: list[dict]) -> dict:
    """Per curve: whole-curve max and mean relative error, where the max is, and the
    simulation's own relative s.e.m. (max over t) for scale."""
    out = {}
    for k in CURVE_KEYS:
        vals = np.array([s[k] for s in sims])
        mean, sem = vals.mean(0), vals.std(0, ddof=1) / np.sqrt(len(vals))
        rel = np.abs(theory[k] / mean - 1)
        i = int(np.argmax(rel))
        out[k] = {"max_rel": float(rel[i]), "mean_rel": float(rel.mean()), "t": float(theory["t"][i]),
                  "sim_rel_sem": float(np.max(sem / mean))}
    return out


def run(quick: bool = False, d_effs: tuple = (48, 96), samples: int = 8) -> dict:
    """Errors per case, design and d against the DMFT at the largest d_eff; curves kept for the figure."""
    torch.set_num_threads(1)
    ds = {"goe": (16, 24), "gaussian": (16, 24)} if quick else {"goe": (16, 24, 32, 48, 64), "gaussian": (16, 32, 64)}
    seeds = 3 if quick else 8
    results = {}
    for name, params in CASES.items():
        p = Problem(d=16, **params)
        entry = {"params": params, "dmft_by_d_eff": {}, "runs": []}
        for d_eff in d_effs:
            t0 = time.perf_counter()
            th = solve_dmft(p, h=H, steps=STEPS, d_eff=d_eff, samples=samples, seed=1000)
            entry["dmft_by_d_eff"][d_eff] = {"converged": th["converged"], "iterations": th["iterations"],
                                             "seconds": time.perf_counter() - t0,
                                             **{k: th[k].tolist() for k in ("t", *CURVE_KEYS)}}
        entry["dmft"] = entry["dmft_by_d_eff"][d_effs[-1]]
        th = {k: np.array(v) for k, v in entry["dmft"].items() if k in ("t", *CURVE_KEYS)}
        for design in ("goe", "gaussian"):
            for d in ds[design]:
                q = Problem(d=d, **params)
                sims = [simulate(q, h=H, steps=STEPS, seed=s, design=design, precision="fp64",
                                 record_steps=np.arange(STEPS + 1)) for s in range(seeds)]
                entry["runs"].append({"design": design, "d": d, "seeds": seeds, "errors": curve_error(th, sims),
                                      "sim_mean": {k: np.mean([s[k] for s in sims], 0).tolist() for k in CURVE_KEYS}})
                print(name, design, d, {k: round(v["max_rel"], 3) for k, v in entry["runs"][-1]["errors"].items()},
                      flush=True)
        results[name] = entry
    return results


def figure(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(results), figsize=(4.2 * len(results), 10.5), squeeze=False)
    for col, (name, entry) in enumerate(results.items()):
        t = np.array(entry["dmft"]["t"])
        for row, key in enumerate(("mse", "train_loss")):
            ax = axes[row, col]
            for run_ in entry["runs"]:
                style = "-" if run_["design"] == "goe" else ":"
                ax.plot(t, run_["sim_mean"][key], style, lw=1, alpha=0.8, label=f"GD {run_['design']} d={run_['d']}")
            ax.plot(t, entry["dmft"][key], "k--", lw=2, label="DMFT")
            ax.set_yscale("log")
            ax.set_xlabel("t")
            ax.set_title(f"{name}: {key}  " + ", ".join(f"{k}={v}" for k, v in entry["params"].items()), fontsize=7)
        ax = axes[2, col]
        for design, marker in (("goe", "o-"), ("gaussian", "s:")):
            runs = [r for r in entry["runs"] if r["design"] == design]
            for key in ("mse", "train_loss"):
                ax.plot([r["d"] for r in runs], [r["errors"][key]["mean_rel"] for r in runs], marker,
                        label=f"{design} {key}")
        gap_against_d_axes(ax, f"{name}: mean |DMFT/GD - 1| over t")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="docs/figures/dmft_vs_simulation.png")
    ap.add_argument("--json", default=None, help="write the results here (or, with --replot, read them)")
    ap.add_argument("--replot", action="store_true", help="only redraw the figure from --json")
    args = ap.parse_args()
    if args.replot:
        res = json.loads(Path(args.json).read_text())
    else:
        res = run(quick=args.quick)
        if args.json:
            Path(args.json).write_text(json.dumps(res))
    figure(res, Path(args.out))


if __name__ == "__main__":
    main()
