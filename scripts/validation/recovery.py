"""The perfect-recovery threshold measured from GD, against the lam = 0 flow's closed form: a resumable sweep.

    python scripts/validation/recovery.py --out docs/results/recovery --sizes 32,64 --seeds 2
    python scripts/validation/recovery.py --out docs/results/recovery --report

Noiseless labels (Delta = 0), no l2 (lam = 0), the paper's initialisation (sigma0 = 1), real Gaussian
inputs, fp64 GD at step ``h``. Per width pair (kappa, kappa*) the sample ratios are a grid around the
predicted threshold ``alpha_PR`` of the lam = 0 flow (:func:`quadflow.theory.perfect_recovery_threshold`
with ``unregularized=True``, at the ratios the finite d realises). A run goes in chunks of ``chunk_t``
until it **recovers** (``mse < recover`` x its initial mse) or **stalls** (the mse moved by less than
``rtol`` relative over the last chunk), or ``t_max``. Each run is cached under ``<out>/points/<hash>.json``
(:func:`quadflow.analysis.points.run_points`).

The report (``<out>/summary.json``) gives, per pair and d, the recovered fraction at each alpha, the alpha
where that fraction crosses 1/2 at ``t_max`` (linear between the bracketing grid points, half the bracket as
its error; an upper bound, the flow slows down critically near the threshold), the undecided band between
the largest alpha where a seed stalled and the smallest where one recovered (:func:`band`), and the
recovery times, beside the lam = 0 flow and lam -> 0+ predictions.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from quadflow import Problem, Simulation
from quadflow.analysis.points import load_points, parse_names, parse_numbers, parse_sizes, parser, run_measurement
from quadflow.io import atomic_write_text, dumps
from quadflow.theory import perfect_recovery_threshold

# (name, kappa, kappa*): the parameter-count branch of the lam = 0 threshold (kappa close to kappa*), its
# plateau (kappa* < kappa < 1), and kappa > 1 at another kappa*
PAIRS = {"count": (0.4, 0.3), "plateau": (0.8, 0.3), "wide": (1.5, 0.5)}
GRID = (0.8, 0.88, 0.94, 0.97, 1.0, 1.03, 1.06, 1.12, 1.2)  # alpha / alpha_PR(lam = 0 flow)


def predicted(kappa: float, kappa_star: float) -> dict:
    return {"alpha_pr_lam0": perfect_recovery_threshold(kappa, kappa_star, unregularized=True),
            "alpha_pr_lam0plus": perfect_recovery_threshold(kappa, kappa_star)}


def realised(d: int, kappa: float, kappa_star: float) -> tuple[float, float]:
    p = Problem(d=d, kappa=kappa, kappa_star=kappa_star, alpha=1.0).realised()
    return p.kappa, p.kappa_star


def parse_grid(text: str) -> tuple[float, ...]:
    """``--grid``: comma-separated alpha / alpha_PR ratios, each > 0 (SystemExit with one line otherwise)."""
    try:
        return tuple(parse_numbers(text, "--grid", float, 0, strict=True))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def plan(pairs: list[str], sizes: list[int], seeds: int, h: float, t_max: float,
         grid: tuple[float, ...] = GRID) -> list[dict]:
    configs = []
    for d in sizes:
        for name in pairs:
            kappa, kappa_star = PAIRS[name]
            centre = predicted(*realised(d, kappa, kappa_star))["alpha_pr_lam0"]
            for ratio in grid:
                for seed in range(seeds):
                    configs.append({"pair": name, "kappa": kappa, "kappa_star": kappa_star,
                                    "alpha": round(ratio * centre, 6), "d": d, "seed": seed, "h": h,
                                    "t_max": t_max, "chunk_t": 20.0, "recover": 1e-4, "rtol": 1e-4,
                                    "lam": 0.0, "Delta": 0.0, "precision": "fp64", "design": "gaussian"})
    return configs


def measure(cfg: dict) -> dict:
    p = Problem(d=cfg["d"], kappa=cfg["kappa"], kappa_star=cfg["kappa_star"], alpha=cfg["alpha"])
    t0 = time.perf_counter()
    sim = Simulation(p, h=cfg["h"], seed=cfg["seed"], precision="fp64")
    records: list[dict] = []
    sim.run(0, record_steps=[0], on_record=records.append)
    chunk, last = round(cfg["chunk_t"] / cfg["h"]), round(cfg["t_max"] / cfg["h"])
    status = "running"
    while sim.step < last and status == "running":
        target = min(sim.step + chunk, last)
        sim.run(target, record_steps=[target], on_record=records.append)
        prev, now = records[-2]["mse"], records[-1]["mse"]
        if now < cfg["recover"] * records[0]["mse"]:
            status = "recovered"
        elif abs(now - prev) <= cfg["rtol"] * now:
            status = "stalled"
    r = p.realised()
    return {"status": status, "mse": float(records[-1]["mse"]), "mse0": float(records[0]["mse"]),
            "train_loss": float(records[-1]["train_loss"]), "t": float(records[-1]["t"]),
            "realised": {"alpha": r.alpha, "kappa": r.kappa, "kappa_star": r.kappa_star},
            "wall_s": time.perf_counter() - t0}


def threshold(alphas: list[float], fractions: list[float]) -> dict:
    """Where the recovered fraction (non-decreasing in alpha, ideally) first crosses 1/2: linear between the
    bracketing alphas; error half the bracket. ``None`` values when it never crosses inside the grid."""
    for (a0, f0), (a1, f1) in zip(zip(alphas, fractions), zip(alphas[1:], fractions[1:])):
        if f0 < 0.5 <= f1:
            at = a0 + (a1 - a0) * (0.5 - f0) / (f1 - f0)
            return {"alpha_pr": at, "error": (a1 - a0) / 2, "bracket": [a0, a1]}
    return {"alpha_pr": None, "error": None, "bracket": None,
            "why": "every run recovered" if min(fractions) >= 0.5 else "no run recovered"}


def band(alphas: list[float], runs: list[list[dict]]) -> dict:
    """The undecided band ``[largest alpha where a seed stalled, smallest alpha where a seed recovered]``.

    Near the threshold the flow slows down critically: runs neither stall nor recover by ``t_max``, so the
    1/2-crossing of the recovered fraction at ``t_max`` is an upper bound that falls as ``t_max`` grows,
    and the threshold lies in this band (``None`` ends when no seed stalled or none recovered)."""
    stalled = [a for a, rs in zip(alphas, runs) if any(r["status"] == "stalled" for r in rs)]
    recovered = [a for a, rs in zip(alphas, runs) if any(r["status"] == "recovered" for r in rs)]
    return {"band": [max(stalled) if stalled else None, min(recovered) if recovered else None],
            "recovery_t": [[r["t"] for r in rs if r["status"] == "recovered"] for rs in runs]}


def report(out: Path) -> dict:
    points = load_points(out)
    groups: dict = {}
    for pt in points:
        c = pt["config"]
        groups.setdefault((c["pair"], c["d"]), {}).setdefault(c["alpha"], []).append(pt["result"])
    summary = {}
    for (pair, d), by_alpha in sorted(groups.items()):
        alphas = sorted(by_alpha)
        runs = [by_alpha[a] for a in alphas]
        fractions = [sum(r["status"] == "recovered" for r in rs) / len(rs) for rs in runs]
        real = runs[0][0]["realised"]
        alphas = [rs[0]["realised"]["alpha"] for rs in runs]  # n / d^2 as drawn
        summary[f"{pair} d={d}"] = {
            "kappa": real["kappa"], "kappa_star": real["kappa_star"], **predicted(real["kappa"], real["kappa_star"]),
            **threshold(alphas, fractions), **band(alphas, runs), "alphas": alphas, "recovered_fraction": fractions,
            "final_mse": [[r["mse"] for r in rs] for rs in runs], "stalled": sum(r["status"] == "stalled" for rs in runs
                                                                                    for r in rs),
            "still_running": sum(r["status"] == "running" for rs in runs for r in rs)}
    atomic_write_text(out / "summary.json", dumps(summary, indent=1))
    return summary


def main(argv=None) -> None:
    ap = parser(__doc__, budget=False)
    ap.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated among {', '.join(PAIRS)}")
    ap.add_argument("--sizes", default="32,64")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--h", type=float, default=0.02)  # 0.04 oscillates at kappa* = 0.3, d = 32-64 (some seeds)
    ap.add_argument("--t-max", type=float, default=1000.0)
    ap.add_argument("--grid", default=",".join(f"{r:g}" for r in GRID),
                    help="alpha / alpha_PR(lam = 0 flow) ratios, comma-separated (fewer near the threshold at large d)")
    args = ap.parse_args(argv)
    grid = parse_grid(args.grid)
    _, summary = run_measurement(
        args, report=lambda a: report(a.out), measure=measure,
        plan=lambda a: plan(parse_names(a.pairs, PAIRS, "--pairs"), parse_sizes(a.sizes), a.seeds, a.h, a.t_max, grid),
        label=lambda c: f"{c['pair']} d={c['d']} alpha={c['alpha']:g} seed={c['seed']}",
        line=lambda r: f"{r['status']} at t={r['t']:g}: mse {r['mse']:.3g} ({r['wall_s']:.0f} s)")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
