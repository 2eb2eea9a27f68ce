"""Long-time solver benchmark: quadflow's static-equation solver against a straightforward one.

Measured as CPU time of this process on one core (BLAS pinned to one thread,
so CPU time is single-core time even on a busy shared machine), every solve
cold (the cache of spectral tables cleared first, so a point pays for all its
tables):

- ``solve_longtime`` at every point of a grid of regimes (kappa < 1 and >= 1,
  kappa_star < 1 and >= 1, lam > 0 and lam = 0, Delta = 0 and > 0, alpha on
  both sides of the double-descent peak): median and max seconds per point;
- a 100-point alpha curve through a double-descent peak with continuation;
- the baseline: the same functionals (mse, I at a given (q, xi)) computed the
  straightforward way, ``scipy.integrate.quad`` over the density with
  ``numpy.roots`` of the cubic at every evaluation point (and ``brentq`` on a
  quad-CDF for the quantile), and a solve of the same equations with
  ``scipy.optimize.root`` started from the same coarse guess. Reported: time
  per functional evaluation and per solve, their agreement with quadflow's
  values, and the speedups.

``run(quick)`` returns a JSON-serialisable dict; ``python
scripts/benchmarks/longtime.py [--quick]`` prints it.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time

import numpy as np
from scipy.integrate import quad
from scipy.optimize import brentq, root

from quadflow.theory.longtime import longtime_curve, solve_longtime
from quadflow.theory.static.functionals import functionals_at
from quadflow.theory.static.spectral import support

GRID = [dict(alpha=a, kappa=k, kappa_star=ks, lam=lam, Delta=D)
        for (k, ks) in ((1.5, 0.5), (0.6, 0.3), (0.3, 0.5), (2.0, 2.0))
        for (lam, D) in ((0.1, 0.0), (0.01, 0.5), (0.0, 0.5))
        for a in (0.3, 0.7, 1.5)]
QUICK_GRID = GRID[::5]
CURVE = dict(kappa=1.5, kappa_star=0.5, lam=1e-3, Delta=0.5)
BASELINE_POINTS = [dict(alpha=1.0, kappa=1.5, kappa_star=0.5, lam=0.1, Delta=0.0),
                   dict(alpha=0.8, kappa=0.6, kappa_star=0.3, lam=0.1, Delta=0.5),
                   dict(alpha=0.5, kappa=2.0, kappa_star=2.0, lam=0.05, Delta=0.5)]


def _pin_one_thread() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # env vars above apply when numpy is loaded fresh
        pass


def _cold(fn, *args, **kwargs):
    """Call with an empty table cache; returns (result, CPU seconds of this process)."""
    functionals_at.cache_clear()
    t0 = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t0


# ---------------------------------------------------------------------------
# the straightforward implementation


class Baseline:
    """mse and I at (q, xi) by adaptive quadrature, a cubic root solve per evaluation point."""

    def __init__(self, kappa: float, kappa_star: float) -> None:
        self.kappa, self.ks = kappa, kappa_star

    def g(self, x: float, xi: float) -> complex:
        ks = self.ks
        r = np.roots([xi, -(x + ks * xi), 1 - ks + ks * x, -ks])
        return r[np.argmin(r.imag)]

    def rho(self, x: float, xi: float) -> float:
        return max(0.0, -self.g(x, xi).imag / math.pi)

    def functionals(self, q: float, xi: float) -> tuple[float, float]:
        edges = support(self.ks, xi)
        omega = -math.inf
        if self.kappa < 1:
            top = edges[-1, 1]

            def tail(w):
                return sum(quad(self.rho, max(lo, w), hi, args=(xi,), limit=200)[0]
                           for lo, hi in edges if hi > w) - self.kappa
            omega = brentq(tail, edges[0, 0], top, xtol=1e-12)
        b = max(q, omega)
        Q = I = 0.0
        for lo, hi in edges:
            if hi <= b:
                continue
            a = max(lo, b)
            Q += quad(lambda x: self.rho(x, xi) * (q * q - x * x), a, hi, limit=200)[0]
            I += quad(lambda x: self.rho(x, xi) * self.g(x, xi).real * (x - q), a, hi, limit=200)[0]
        return 1 + 1 / self.ks + Q + 4 * xi * I, I

    def solve(self, alpha: float, lam: float, Delta: float, y0: np.ndarray) -> tuple[np.ndarray, bool]:
        def F(y):
            xi, q = math.exp(y[0]), math.exp(y[1])
            mse, I = self.functionals(q, xi)
            return [math.log(mse + Delta / 2) - math.log(2 * alpha * xi), I / alpha + lam / q - 1]

        sol = root(F, y0, method="hybr", options={"xtol": 1e-10})
        return sol.x, bool(sol.success)


def _baseline(points, solves: bool) -> dict:
    rows = []
    for p in points:
        ref = solve_longtime(**p)
        base = Baseline(p["kappa"], p["kappa_star"])
        t0 = time.process_time()
        mse_b, I_b = base.functionals(ref.q, ref.xi)
        t_eval_base = time.process_time() - t0
        functionals_at.cache_clear()
        t0 = time.process_time()
        val = functionals_at(p["kappa_star"], ref.xi).values(ref.q, p["kappa"])
        t_eval_fast = time.process_time() - t0
        row = dict(point=p, eval_s_baseline=t_eval_base, eval_s_quadflow=t_eval_fast,
                   eval_speedup=t_eval_base / t_eval_fast,
                   mse_abs_diff=abs(mse_b - float(val["mse"][0])), I_abs_diff=abs(I_b - float(val["I"][0])))
        if solves:
            guess = np.log([(1 + 1 / p["kappa_star"] + p["Delta"] / 2) / (4 * p["alpha"]), 2 * p["lam"]])
            t0 = time.process_time()
            y, ok = base.solve(p["alpha"], p["lam"], p["Delta"], guess)
            t_solve_base = time.process_time() - t0
            _, t_solve_fast = _cold(solve_longtime, **p)
            row.update(solve_s_baseline=t_solve_base, solve_s_quadflow=t_solve_fast,
                       solve_speedup=t_solve_base / t_solve_fast, baseline_converged=ok,
                       baseline_q_rel_diff=abs(math.exp(y[1]) - ref.q) / ref.q)
        rows.append(row)
    out = {"points": rows,
           "eval_speedup_median": statistics.median(r["eval_speedup"] for r in rows)}
    if solves:
        out["solve_s_baseline_median"] = statistics.median(r["solve_s_baseline"] for r in rows)
        out["solve_speedup_median"] = statistics.median(r["solve_speedup"] for r in rows)
    return out


def run(quick: bool = False) -> dict:
    """Time the solver over a grid of regimes, a 100-point curve, and the baseline."""
    _pin_one_thread()
    grid = QUICK_GRID if quick else GRID
    times, unconverged = [], []
    for p in grid:
        sol, dt = _cold(solve_longtime, **p)
        times.append(dt)
        if not sol.converged:
            unconverged.append(p)
    values = np.linspace(0.1, 1.5, 30 if quick else 100)
    curve, t_curve = _cold(longtime_curve, "alpha", values, **CURVE)
    return {
        "solve_longtime": {"points": len(grid), "median_s": statistics.median(times),
                           "max_s": max(times), "target_median_s": 0.05,
                           "unconverged": unconverged},
        "curve": {"points": int(values.size), "seconds": t_curve, "target_s": 5.0 if not quick else None,
                  "converged": bool(curve["converged"].all()), "folds": len(curve["folds"]),
                  "fixed": CURVE},
        "baseline": _baseline(BASELINE_POINTS[:1] if quick else BASELINE_POINTS, solves=not quick),
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2, default=str))
