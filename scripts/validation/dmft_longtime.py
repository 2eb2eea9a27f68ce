"""The DMFT's long-time mode on Fig. 14's line: its error against the exact solve, and GD to t = 1000.

    python scripts/validation/dmft_longtime.py --out docs/results/dmft_longtime
    python scripts/validation/dmft_longtime.py --out docs/results/dmft_longtime --report --figure docs/figures/dmft_longtime.png

Fig. 14's line (kappa 0.4, kappa* 0.3, lam 0.01, Delta 0, sigma0 1) at alpha = 0.02, 0.2, 0.5, at the paper's
step h = 0.005, d_eff 64, 4 copies, seed 0. Each solve is a point cached under ``<out>/points/<hash>.json``
(:func:`quadflow.analysis.points.run_points`):

- ``exact`` (T = 2000, the exact march) and ``compressed`` at resolution 0 and at the default, T = 2000: the
  error the compression adds (resolution 0 against the default, the same randomness) and the reservoir noise
  against the exact solve (another estimator of the same limit: relative gaps and gaps in combined standard
  errors);
- ``long``: the compressed mode to t = 1000 (200 000 steps), its wall time and columns, on a log grid of times.

**Report** (``<out>/summary.json``): per alpha, those errors; the long solve against GD (the seed means of
docs/results/paper/fig14_d64_real, real inputs at d = 64, 10 seeds, and of docs/results/paper/fig14_goe_d100,
the GOE design at d = 100, 10 seeds, to t = 20) at every GD time in 0.2 <= t <= 1000: the relative gap of
loss_reg (median and max per decade of t) and of its excess over the static limit. ``--figure``: loss_reg minus
its limit against t, log-log, GD as markers and the long DMFT as lines (the style of the paper's Fig. 14).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch

from quadflow import Problem
from quadflow.analysis.points import load_points, parser, run_measurement
from quadflow.io import atomic_write_text, dumps
from quadflow.theory.dmft import solve_dmft
from quadflow.theory.longtime import solve_longtime

ROOT = Path(__file__).resolve().parents[2]
LINE = dict(kappa=0.4, kappa_star=0.3, Delta=0.0, lam=0.01, sigma0=1.0)
ALPHAS = (0.02, 0.2, 0.5)
H, LONG_STEPS, SHORT_STEPS, RECORDS = 0.005, 200_000, 2000, 400
GD = {"real_d64": ROOT / "docs/results/paper/fig14_d64_real/paper_fig14.csv",
      "goe_d100": ROOT / "docs/results/paper/fig14_goe_d100/paper_fig14.csv"}
KEYS = ("mse", "train_loss", "trace", "loss_reg")


def plan(d_eff: int, samples: int, resolution: float) -> list[dict]:
    """The short solves (exact, compressed at 0 and ``resolution``) of every alpha, then the long ones."""
    common = {**LINE, "h": H, "d_eff": d_eff, "samples": samples, "seed": 0}
    configs = [{"kind": "exact", "alpha": a, "steps": SHORT_STEPS, **common} for a in ALPHAS]
    configs += [{"kind": "compressed", "alpha": a, "steps": SHORT_STEPS, "resolution": r, **common}
                for a in ALPHAS for r in (0.0, resolution)]
    configs += [{"kind": "long", "alpha": a, "steps": LONG_STEPS, "resolution": resolution, **common}
                for a in ALPHAS]
    return configs


def measure(cfg: dict) -> dict:
    """One solve: its curves and standard errors at every step (short solves) or on a log grid (long)."""
    torch.set_num_threads(2)
    params = {k: cfg[k] for k in (*LINE, "alpha")}
    extra = {"history": "exact"} if cfg["kind"] == "exact" else {"history": "compressed",
                                                                    "resolution": cfg["resolution"]}
    t0 = time.perf_counter()
    res = solve_dmft(Problem(d=cfg["d_eff"], **params), h=cfg["h"], steps=cfg["steps"], d_eff=cfg["d_eff"],
                     samples=cfg["samples"], seed=cfg["seed"], **extra)
    wall = time.perf_counter() - t0
    at = np.arange(cfg["steps"] + 1)
    if cfg["kind"] == "long":
        at = np.unique(np.concatenate([[0], np.geomspace(1, cfg["steps"], RECORDS).astype(int)]))
    out = {"status": "ok", "wall_s": wall, "t": res.t[at].tolist(),
           **{k: res[k][at].tolist() for k in KEYS}, "stderr": {k: res.stderr[k][at].tolist() for k in KEYS}}
    if cfg["kind"] != "exact":
        out["columns"] = res.windows[0]["columns"]
    return out


def _gd_curves(path: Path) -> dict:
    """``{alpha: (t, loss_reg seed mean, its s.e.m., limit)}`` from a Fig. 14 table of the app."""
    out: dict = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            alpha = float(row["series"].split("=")[1])
            t, lr, sem = float(row["t"]), float(row["sim_loss_reg"]), float(row["sim_loss_reg_sem"])
            out.setdefault(alpha, []).append((t, lr, sem, lr - float(row["sim_excess"])))
    return {a: tuple(np.array(v).T) for a, v in out.items()}


def _gaps(a: dict, b: dict) -> dict:
    """Per curve: max over t > 0 of |b/a - 1| and of |b - a| / (combined s.e.)."""
    out = {}
    for k in KEYS:
        x, y = np.array(a[k])[1:], np.array(b[k])[1:]
        se = np.hypot(np.array(a["stderr"][k])[1:], np.array(b["stderr"][k])[1:])
        out[k] = {"max_rel": float(np.max(np.abs(y / x - 1))), "max_se": float(np.max(np.abs(y - x) / se))}
    return out


def report(out: Path) -> dict:
    points = load_points(out)
    find = lambda **kw: next((p["result"] for p in points  # noqa: E731
                              if all(p["config"].get(k) == v for k, v in kw.items())), None)
    summary = {}
    for alpha in ALPHAS:
        exact, full = find(kind="exact", alpha=alpha), find(kind="compressed", alpha=alpha, resolution=0.0)
        merged = next((p["result"] for p in points if p["config"]["kind"] == "compressed"
                       and p["config"]["alpha"] == alpha and p["config"]["resolution"] > 0), None)
        entry: dict = {}
        if full and merged:
            entry["compression_error"] = _gaps(full, merged)
        if exact and full:
            entry["reservoir_vs_exact"] = _gaps(exact, full)
        long = find(kind="long", alpha=alpha)
        if long:
            static = solve_longtime(alpha=alpha, **{k: LINE[k] for k in ("kappa", "kappa_star", "Delta", "lam")})
            limit = static.loss_reg
            entry["long"] = {"wall_s": long["wall_s"], "columns": long["columns"],
                             "final": {k: long[k][-1] for k in KEYS}, "static_loss_reg": limit,
                             "final_vs_static": {k: long[k][-1] / getattr(static, k) - 1 for k in KEYS}}
            t, lr = np.array(long["t"]), np.array(long["loss_reg"])
            for name, path in GD.items():
                curves = _gd_curves(path).get(alpha)
                if curves is None:
                    continue
                gt, glr, gsem, glim = curves
                keep = (gt >= 0.2) & (gt <= t[-1])
                dmft = np.interp(gt[keep], t, lr)
                rel = dmft / glr[keep] - 1
                decades = {}
                for lo in (0.2, 1, 10, 100):
                    m = (gt[keep] >= lo) & (gt[keep] < 10 * lo if lo > 0.2 else gt[keep] < 1)
                    if m.any():
                        decades[f"t_{lo:g}"] = {"median_rel": float(np.median(np.abs(rel[m]))),
                                                "max_rel": float(np.max(np.abs(rel[m]))),
                                                "median_sem_rel": float(np.median(gsem[keep][m] / glr[keep][m]))}
                excess_gd, excess_dmft = glr[keep][-1] - limit, dmft[-1] - limit
                entry[f"vs_gd_{name}"] = {"t_max": float(gt[keep][-1]), "decades": decades,
                                          "final_loss_reg_rel": float(rel[-1]),
                                          "final_excess_gd": float(excess_gd), "final_excess_dmft": float(excess_dmft),
                                          "gd_limit_used": float(glim[0])}
        summary[f"alpha={alpha:g}"] = entry
    atomic_write_text(out / "summary.json", dumps(summary, indent=1))
    return summary


def figure(out: Path, path: Path) -> None:
    """loss_reg minus the static limit against t, log-log: GD (markers: real inputs d 64 filled, GOE d 100
    open) and the long DMFT (lines)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = load_points(out)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, alpha in enumerate(ALPHAS):
        color = f"C{i}"
        static = solve_longtime(alpha=alpha, **{k: LINE[k] for k in ("kappa", "kappa_star", "Delta", "lam")})
        limit = static.loss_reg
        for name, path_gd in GD.items():
            curves = _gd_curves(path_gd).get(alpha)
            if curves is not None:
                gt, glr = curves[0], curves[1]
                keep = gt > 0
                ax.plot(gt[keep], np.abs(glr[keep] - limit), "o", ms=3.5, color=color,
                        mfc=color if name == "real_d64" else "none",
                        label=f"GD, alpha={alpha:g} ({'real inputs, d=64' if name == 'real_d64' else 'GOE, d=100'})")
        long = next((p["result"] for p in points if p["config"]["kind"] == "long" and p["config"]["alpha"] == alpha),
                    None)
        if long:
            t, lr = np.array(long["t"]), np.array(long["loss_reg"])
            ax.plot(t[1:], np.abs(lr[1:] - limit), "-", color=color, lw=1.6, label=f"DMFT (long-time mode), alpha={alpha:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("|loss_reg(t) - loss_reg(static limit)|")
    ax.set_title("Fig. 14's line: kappa=0.4, kappa*=0.3, lam=0.01, Delta=0, h=0.005; DMFT d_eff=64, 4 copies",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)


def main(argv=None) -> None:
    ap = parser(__doc__, figure=True, report_help="only write summary.json from the cached points")
    ap.add_argument("--d-eff", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--resolution", type=float, default=0.2)
    args = ap.parse_args(argv)
    run_measurement(args, plan=lambda a: plan(a.d_eff, a.samples, a.resolution), report=lambda a: report(a.out),
                    measure=measure,
                    label=lambda c: f"{c['kind']} alpha={c['alpha']} steps={c['steps']}"
                                    + (f" resolution={c['resolution']}" if "resolution" in c else ""),
                    line=lambda r: f"loss_reg(end) {r['loss_reg'][-1]:.5g} ({r['wall_s']:.0f} s)")
    if args.figure:
        figure(args.out, args.figure)


if __name__ == "__main__":
    main()
