"""Benchmark of the DMFT solver: the marching solver against the 9a5c334 one in the same run, and its
cost against the simulation at equal statistical error.

``run(quick, device)`` returns a JSON-serialisable dict (called by scripts/bench.py):

- ``speed``: per (d_eff, T) at (kappa, kappa*, alpha, Delta, lam) = (1.2, 0.4, 0.7, 0.1, 0.02), h = 0.02,
  4 samples, 4 channels, a float64 process: for the 9a5c334 solver (plain iteration over the whole
  trajectory, float64 tangents, loaded with ``git archive`` by :mod:`baseline`) and the current one (one marching
  pass, float32 tangents), the wall seconds, iterations, passes (process steps run / (T+1)), the flops
  of one pass by dtype (:func:`pass_flops`), the achieved GFLOP/s and its fraction of the float64 and
  float32 GEMM peaks measured in the same run; the speed-up; and the agreement of the curves (max over
  t > 0 of |new - old| / jackknife error of the old, and the max relative gap).
- ``windows``: the current solver at one size for several window lengths (the default's choice).
- ``optimisers``: the solve that follows GD, heavy-ball momentum 0.9, Adam (lr 0.01) and minibatch SGD
  (batch fraction 0.1) at (d_eff, T) = (128, 1000) (the speed problem), each in seconds and as a ratio to
  GD's in the same run.
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
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script or from scripts/bench.py
from benchmarks import baseline  # noqa: E402
from benchmarks.sim import gemm_peak, time_calls  # noqa: E402
from quadflow import Problem, simulate  # noqa: E402
from quadflow.optim import by_name  # noqa: E402
from quadflow.theory.dmft import solve_dmft  # noqa: E402

PROBLEM = dict(kappa=1.5, kappa_star=0.5, alpha=1.5, Delta=0.2, lam=0.05)
H = 0.05
SPEED_PROBLEM = dict(kappa=1.2, kappa_star=0.4, alpha=0.7, Delta=0.1, lam=0.02)
SPEED_H = 0.02
SPEED_SIZES = ((64, 400), (128, 400), (64, 1000), (128, 1000))
WINDOWS = (1, 5, 10, 25, 50)
# what the DMFT follows, as solve_dmft's keywords
OPTIMISERS = (("gd", {}), ("momentum", {"optim": "momentum"}), ("adam", {"optim": by_name("adam", 0.01)}),
              ("sgd_b0.1", {"batch_fraction": 0.1}))
CURVE_KEYS = ("mse", "train_loss", "in_sample_error")


def pass_flops(d_eff: int, steps: int, kappa: float, samples: int = 4, channels: int = 4,
               tangents_fp32: bool = True) -> dict:
    """Flops of one full pass of the effective process, split by dtype: ``{"fp64": ..., "fp32": ...}``.

    Step products ``2 m d^2 B`` each: 2 for the process (``W^T W``, ``W M``), 3P for the tangents. Per pair of
    steps j < k, ``2 B n`` for each of the memory sum of the process, the noise and C_e, and of the memory
    sums of the P tangents and R: ``T^2 B n (3 + P + 1)`` in all, with ``n = D = d(d+1)/2`` numbers per
    history row for the current solver (Sym(d) coordinates) and ``n = d^2`` for the 9a5c334 one. The tangent
    share is float32 when ``tangents_fp32`` (the current solver), float64 otherwise (the 9a5c334 solver).
    """
    m, T, B, P = max(1, round(kappa * d_eff)), steps + 1, samples, channels
    n = d_eff * (d_eff + 1) // 2 if tangents_fp32 else d_eff ** 2
    process = 2 * m * d_eff ** 2 * B * 2 * T + T ** 2 * B * n * 3
    tangents = 2 * m * d_eff ** 2 * B * 3 * P * T + T ** 2 * B * n * (P + 1)
    return {"fp64": process + (0 if tangents_fp32 else tangents), "fp32": tangents if tangents_fp32 else 0}


def history_bytes(d_eff: int, steps: int, samples: int = 4, channels: int = 4) -> int:
    """Bytes the marching solve must read from its histories in one pass: at step k, every row j < k of the
    error history (the C_e row, float64) and of its float32 copy (the memory sum), of the GOE draws (the noise,
    float32), of the P tangent histories (their memory sums, float32) and of the probes (the R row, float32),
    each row ``samples x D`` numbers in the coordinates of Sym(d_eff), ``D = d_eff (d_eff + 1) / 2``:
    ``T (T + 1) / 2 x B D (8 + 4 + 4 + 4 P + 4)``. The physical limit of a step is these bytes over the memory
    bandwidth."""
    D = d_eff * (d_eff + 1) // 2
    return steps * (steps + 1) // 2 * samples * D * (8 + 4 + 4 + 4 * channels + 4)


def stream_bandwidth(device: str) -> float:
    """GB/s of a float64 matrix-vector product over a 512 MB matrix (the access pattern of the marching
    solve's history sums), best of 3."""
    dev = torch.device(device)
    rows = torch.randn(1, 1024, dtype=torch.float64, device=dev)
    big = torch.randn(1024, 65536, dtype=torch.float64, device=dev)
    best = min(time_calls(lambda: rows @ big, dev, 3))
    return big.numel() * 8 / best / 1e9


def gemm_peaks(device: str, quick: bool) -> dict:
    """``{"fp64": GFLOP/s, "fp32": GFLOP/s}`` of square GEMMs (512 with ``quick``, else 2048), timed by the
    simulation benchmark's :func:`benchmarks.sim.gemm_peak`."""
    size, dev = (512 if quick else 2048), torch.device(device)
    return {prec: 1e3 * gemm_peak(dev, prec, size)["tflops"] for prec in ("fp64", "fp32")}


def _baseline_solver():
    """The 9a5c334 ``solve_dmft`` (None and the reason when the baseline cannot be loaded)."""
    base, why = baseline.load_or_reason()
    return (base.module("theory.dmft").solve_dmft, None) if base is not None else (None, why)


def _timed(solver, d_eff: int, steps: int, device: str, peaks: dict, tangents_fp32: bool = True,
           **kw) -> tuple[dict, dict]:
    """Solve once and time it. ``fraction_of_gemm_peak``: the time the passes' flops would take at the GEMM
    peaks of their dtypes (``fp64 / peak_fp64 + fp32 / peak_fp32``) over the measured time."""
    p = Problem(d=d_eff, **SPEED_PROBLEM)
    t0 = time.perf_counter()
    th = solver(p, h=SPEED_H, steps=steps, d_eff=d_eff, samples=4, seed=0, device=device, **kw)
    wall = time.perf_counter() - t0
    passes = float(th.get("passes", th["iterations"]))
    flops = pass_flops(d_eff, steps, SPEED_PROBLEM["kappa"], tangents_fp32=tangents_fp32)
    at_peak = passes * sum(flops[k] / (peaks[k] * 1e9) for k in flops)
    history = passes * history_bytes(d_eff, steps)
    return {"seconds": wall, "iterations": int(th["iterations"]), "passes": passes, "pass_flops": flops,
            "gflops": passes * sum(flops.values()) / wall / 1e9, "fraction_of_gemm_peak": at_peak / wall,
            "history_bytes": history, "history_gb_per_s": history / wall / 1e9,
            "converged": bool(th["converged"])}, th


def _agreement(new: dict, old: dict) -> dict:
    out = {}
    for k in CURVE_KEYS:
        se = np.asarray(old["stderr"][k])[1:]
        gap = np.abs(np.asarray(new[k]) - np.asarray(old[k]))[1:]
        out[f"{k}_max_gap_over_stderr"] = float(np.max(gap / se))
        out[f"{k}_max_rel_gap"] = float(np.max(gap / np.abs(np.asarray(old[k])[1:])))
    return out


def speed(device: str, quick: bool, d_effs=None) -> dict:
    """The current solver against the 9a5c334 one at the issue's sizes (those with d_eff in ``d_effs`` when
    given), in the same process. The history bytes of the current solver count its Sym(d) coordinates;
    the 9a5c334 solver read full d x d matrices, twice the bytes."""
    sizes = ((24, 60),) if quick else tuple(s for s in SPEED_SIZES if d_effs is None or s[0] in d_effs)
    peaks = gemm_peaks(device, quick)
    bandwidth = stream_bandwidth(device)
    old_solver, why = _baseline_solver()
    rows = []
    for d_eff, steps in sizes:
        row = {"d_eff": d_eff, "T": steps}
        new, th_new = _timed(solve_dmft, d_eff, steps, device, peaks)
        row["new"] = new
        if old_solver is None:
            row["old"] = {"skipped": why}
        else:
            row["old"], th_old = _timed(old_solver, d_eff, steps, device, peaks, tangents_fp32=False)
            row["speedup"] = row["old"]["seconds"] / new["seconds"]
            row["agreement"] = _agreement(th_new, th_old)
        print(f"[dmft] D={d_eff} T={steps}: new {new['seconds']:.1f} s ({new['passes']:.2f} passes), old "
              f"{row['old'].get('seconds', float('nan')):.1f} s ({row['old'].get('iterations', '-')} iterations)",
              flush=True)
        rows.append(row)
    for row in rows:
        row["new"]["fraction_of_bandwidth"] = row["new"]["history_gb_per_s"] / bandwidth
        row["new"]["history_seconds_at_bandwidth"] = row["new"]["history_bytes"] / bandwidth / 1e9
    return {"problem": SPEED_PROBLEM, "h": SPEED_H, "gemm_peak_gflops": peaks, "stream_gb_per_s": bandwidth,
            "sizes": rows}


def windows(device: str, quick: bool) -> list[dict]:
    """The current solver at one size for each window length in ``WINDOWS`` (and None: one window)."""
    d_eff, steps = (24, 60) if quick else (64, 400)
    peaks = gemm_peaks(device, quick)
    out = []
    for w in (*WINDOWS, None):
        res, _ = _timed(solve_dmft, d_eff, steps, device, peaks, window=w)
        out.append({"window": w, "d_eff": d_eff, "T": steps, **res})
    return out


def optimisers(device: str, quick: bool) -> dict:
    """The DMFT following each optimiser of :data:`OPTIMISERS` at one size, with its time over GD's."""
    d_eff, steps = (24, 60) if quick else (128, 1000)
    peaks = gemm_peaks(device, quick)
    rows = {name: _timed(solve_dmft, d_eff, steps, device, peaks, **kw)[0] for name, kw in OPTIMISERS}
    for name, row in rows.items():
        row["over_gd"] = row["seconds"] / rows["gd"]["seconds"]
        print(f"[dmft] D={d_eff} T={steps} {name}: {row['seconds']:.1f} s ({row['over_gd']:.2f}x GD)", flush=True)
    return {"d_eff": d_eff, "T": steps, **rows}


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


def run(quick: bool = False, device: str = "cpu", threads: int = 1, sizes=None, speed_only: bool = False) -> dict:
    """Time converged solves over a small (d_eff, T) grid; see the module docstring.

    ``threads``: torch CPU threads (1 by default). ``sizes``: the d_eff of the speed sizes to run (default
    all). ``speed_only``: the speed comparison alone.
    """
    torch.set_num_threads(threads)
    strip = lambda r: {k: v for k, v in r.items() if k != "mse"}  # noqa: E731
    out = {"device": device, "threads": threads, "speed": speed(device, quick, sizes)}
    if speed_only:
        return out
    out.update(windows=windows(device, quick), optimisers=optimisers(device, quick))
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
