"""Benchmark of the DMFT solver: time to a converged solution vs (d_eff, T), and its cost
against the simulation at equal statistical error.

``run(quick, device)`` returns a JSON-serialisable dict (called by scripts/bench.py):

- ``grid``: per (d_eff, T): wall seconds, iterations, seconds per iteration, converged.
- ``app_default``: the app's default CPU-sized solve (d_eff=64, T=400, 4 samples).
- ``equal_error``: relative statistical error (RMS over t of seed-to-seed std / mean
  of mse) of the DMFT and of the simulation (Gaussian inputs) at two d; the d
  where the simulation's error (fitted ~ d^-a) equals the DMFT's, the
  simulation's time there (fitted ~ d^b from the measured times) and the ratio
  DMFT time / simulation time.

    python scripts/benchmarks/dmft.py [--quick] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from quadflow import Problem, simulate
from quadflow.theory.dmft import solve_dmft

PROBLEM = dict(kappa=1.5, kappa_star=0.5, alpha=1.5, Delta=0.2, lam=0.05)
H = 0.05


def _solve(d_eff: int, steps: int, device: str, seed: int = 0, samples: int = 4) -> dict:
    t0 = time.perf_counter()
    th = solve_dmft(Problem(d=d_eff, **PROBLEM), h=H, steps=steps, d_eff=d_eff, samples=samples, seed=seed,
                    device=device)
    wall = time.perf_counter() - t0
    return {"d_eff": d_eff, "T": steps, "samples": samples, "seconds": wall, "iterations": th["iterations"],
            "seconds_per_iteration": wall / th["iterations"], "converged": bool(th["converged"]), "mse": th["mse"]}


def _rel_error(curves: list[np.ndarray]) -> float:
    """RMS over t of the seed-to-seed relative standard deviation."""
    c = np.array(curves)
    return float(np.sqrt(np.mean((c.std(0, ddof=1) / c.mean(0)) ** 2)))


def equal_error(device: str, quick: bool) -> dict:
    steps, seeds = (100, 3) if quick else (200, 4)
    d_eff = 32 if quick else 64
    dmft = [_solve(d_eff, steps, device, seed=10 * s) for s in range(seeds)]
    out = {"T": steps, "d_eff": d_eff, "dmft_seconds": float(np.mean([r["seconds"] for r in dmft])),
           "dmft_rel_error": _rel_error([r["mse"] for r in dmft]), "sim": []}
    for d in ((16, 32) if quick else (32, 64)):
        runs, times = [], []
        for s in range(seeds):
            t0 = time.perf_counter()
            runs.append(simulate(Problem(d=d, **PROBLEM), h=H, steps=steps, seed=s, device=device,
                                 precision="fp64", record_steps=np.arange(steps + 1))["mse"])
            times.append(time.perf_counter() - t0)
        out["sim"].append({"d": d, "seconds": float(np.mean(times)), "rel_error": _rel_error(runs)})
    (d1, e1, t1), (d2, e2, t2) = ((r["d"], r["rel_error"], r["seconds"]) for r in out["sim"])
    a, b = -np.log(e2 / e1) / np.log(d2 / d1), np.log(t2 / t1) / np.log(d2 / d1)
    d_star = d1 * (e1 / out["dmft_rel_error"]) ** (1 / a)
    sim_time = t1 * (d_star / d1) ** b
    out.update(error_exponent=float(a), time_exponent=float(b), d_equal_error=float(d_star),
               sim_seconds_at_d_equal=float(sim_time), dmft_over_sim=float(out["dmft_seconds"] / sim_time))
    return out


def run(quick: bool = False, device: str = "cpu", threads: int = 1) -> dict:
    """Time converged solves over a small (d_eff, T) grid; see the module docstring.

    ``threads``: torch CPU threads (1 by default: the per-step matrices are small,
    and on a shared 2-core machine 2 threads measured 20x slower than 1).
    """
    torch.set_num_threads(threads)
    if quick:
        d_effs, Ts = (24, 32), (50, 100)
    elif device.startswith("cuda"):
        d_effs, Ts = (64, 128, 256), (200, 400, 1000)
    else:
        d_effs, Ts = (32, 64, 128), (100, 200, 400)
    strip = lambda r: {k: v for k, v in r.items() if k != "mse"}  # noqa: E731
    out = {"device": device, "threads": threads, "problem": PROBLEM, "h": H,
           "grid": [strip(_solve(d, T, device)) for d in d_effs for T in Ts]}
    if not quick:
        out["app_default"] = strip(_solve(64, 400, device))
    out["equal_error"] = equal_error(device, quick)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(json.dumps(run(args.quick, args.device), indent=1))
