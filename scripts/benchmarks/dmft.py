"""Benchmark of the DMFT solver: the windowed solver against the 9a5c334 one in the same run, and its
cost against the simulation at equal statistical error.

``run(quick, device)`` returns a JSON-serialisable dict (called by scripts/bench.py):

- ``speed``: per (d_eff, T) at (kappa, kappa*, alpha, Delta, lam) = (1.2, 0.4, 0.7, 0.1, 0.02), h = 0.02,
  4 samples, 4 channels, float64: for the 9a5c334 solver (plain iteration over the whole trajectory,
  loaded with ``git archive`` by :mod:`baseline`) and the current one, the wall seconds, iterations,
  passes (process steps run / (T+1)), the flops of one pass (:func:`pass_flops`), the achieved GFLOP/s and
  its fraction of the float64 GEMM peak measured in the same run; the speed-up; and the agreement of the
  curves (max over t > 0 of |new - old| / jackknife error of the old, and the max relative gap).
- ``windows``: the current solver at one size for several window lengths (the default's choice).
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
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from quadflow import Problem, simulate
from quadflow.theory.dmft import solve_dmft

PROBLEM = dict(kappa=1.5, kappa_star=0.5, alpha=1.5, Delta=0.2, lam=0.05)
H = 0.05
SPEED_PROBLEM = dict(kappa=1.2, kappa_star=0.4, alpha=0.7, Delta=0.1, lam=0.02)
SPEED_H = 0.02
SPEED_SIZES = ((64, 400), (128, 400), (64, 1000), (128, 1000))
WINDOWS = (5, 10, 25, 50)
CURVE_KEYS = ("mse", "train_loss", "in_sample_error")


def pass_flops(d_eff: int, steps: int, kappa: float, samples: int = 4, channels: int = 4) -> int:
    """Flops of one full pass of the effective process: the step products ``2 m d^2 B (2 + 3P)`` per step,
    and per pair of steps j < k the memory sum over the history ``2 (1 + P) B d^2``, the noise ``2 B d^2``
    and the kernel rows C_e and R (``2 B d^2`` each): ``T^2 B d^2 (1 + P + 3)`` in all."""
    m, T, B, P = max(1, round(kappa * d_eff)), steps + 1, samples, channels
    return int(2 * m * d_eff ** 2 * B * (2 + 3 * P) * T + T ** 2 * B * d_eff ** 2 * (4 + P))


def gemm_peak_fp64(device: str, size: int) -> float:
    """GFLOP/s of a plain ``size x size`` float64 ``torch.mm`` (best of 3), at the current thread count."""
    a = torch.randn(size, size, dtype=torch.float64, device=device)
    b = torch.randn(size, size, dtype=torch.float64, device=device)
    best = float("inf")
    for _ in range(4):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best / 1e9


def _baseline_solver():
    """The 9a5c334 ``solve_dmft`` (None and the reason when the baseline cannot be loaded)."""
    spec = importlib.util.spec_from_file_location("quadflow_bench_baseline", Path(__file__).with_name("baseline.py"))
    loader = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loader  # its dataclasses look their module up
    spec.loader.exec_module(loader)
    base, why = loader.load_or_reason()
    return (base.module("theory.dmft").solve_dmft, None) if base is not None else (None, why)


def _timed(solver, d_eff: int, steps: int, device: str, peak: float, **kw) -> tuple[dict, dict]:
    p = Problem(d=d_eff, **SPEED_PROBLEM)
    t0 = time.perf_counter()
    th = solver(p, h=SPEED_H, steps=steps, d_eff=d_eff, samples=4, seed=0, device=device, **kw)
    wall = time.perf_counter() - t0
    passes = float(th.get("passes", th["iterations"]))
    flops = pass_flops(d_eff, steps, SPEED_PROBLEM["kappa"])
    gflops = passes * flops / wall / 1e9
    return {"seconds": wall, "iterations": int(th["iterations"]), "passes": passes, "pass_flops": flops,
            "gflops": gflops, "fraction_of_gemm_peak": gflops / peak, "converged": bool(th["converged"])}, th


def _agreement(new: dict, old: dict) -> dict:
    out = {}
    for k in CURVE_KEYS:
        se = np.asarray(old["stderr"][k])[1:]
        gap = np.abs(np.asarray(new[k]) - np.asarray(old[k]))[1:]
        out[f"{k}_max_gap_over_stderr"] = float(np.max(gap / se))
        out[f"{k}_max_rel_gap"] = float(np.max(gap / np.abs(np.asarray(old[k])[1:])))
    return out


def speed(device: str, quick: bool) -> dict:
    """The windowed solver against the 9a5c334 one at the issue's sizes, in the same process."""
    sizes = ((24, 60),) if quick else SPEED_SIZES
    peak = gemm_peak_fp64(device, 512 if quick else 2048)
    old_solver, why = _baseline_solver()
    rows = []
    for d_eff, steps in sizes:
        row = {"d_eff": d_eff, "T": steps}
        new, th_new = _timed(solve_dmft, d_eff, steps, device, peak)
        row["new"] = new
        if old_solver is None:
            row["old"] = {"skipped": why}
        else:
            row["old"], th_old = _timed(old_solver, d_eff, steps, device, peak)
            row["speedup"] = row["old"]["seconds"] / new["seconds"]
            row["agreement"] = _agreement(th_new, th_old)
        print(f"[dmft] D={d_eff} T={steps}: new {new['seconds']:.1f} s ({new['passes']:.2f} passes), old "
              f"{row['old'].get('seconds', float('nan')):.1f} s ({row['old'].get('iterations', '-')} iterations)",
              flush=True)
        rows.append(row)
    return {"problem": SPEED_PROBLEM, "h": SPEED_H, "gemm_peak_fp64_gflops": peak, "sizes": rows}


def windows(device: str, quick: bool) -> list[dict]:
    """The current solver at one size for each window length in ``WINDOWS`` (and None: one window)."""
    d_eff, steps = (24, 60) if quick else (64, 400)
    peak = gemm_peak_fp64(device, 512 if quick else 2048)
    out = []
    for w in (*WINDOWS, None):
        res, _ = _timed(solve_dmft, d_eff, steps, device, peak, window=w)
        out.append({"window": w, "d_eff": d_eff, "T": steps, **res})
    return out


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
    strip = lambda r: {k: v for k, v in r.items() if k != "mse"}  # noqa: E731
    out = {"device": device, "threads": threads, "speed": speed(device, quick), "windows": windows(device, quick)}
    if not quick:
        out["app_default"] = strip(_solve(64, 400, device))
    out["equal_error"] = {"problem": PROBLEM, "h": H, **equal_error(device, quick)}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(json.dumps(run(args.quick, args.device), indent=1))
