"""Where the top-m cut binds above the teacher's width (kappa* <= kappa < 1): GD's seed mean and seed spread
against the long-time solution, at points of the paper's Figs. 7 (F7), 4 (F4) and 16 (F16). The runs are
``scale.py``'s (resumable, cached under ``docs/results/validity_flag/points``):

    R="--regime F7:kappa=0.3,kappa_star=0.2,alpha=0.186,lam=0.05,Delta=0 --regime F4:kappa=0.35,kappa_star=0.3,alpha=0.3,lam=0.05,Delta=0"
    R="$R --regime F16:kappa=0.32,kappa_star=0.3,alpha=0.25,lam=0.05,Delta=0"
    S="--h 0.01 --chunk-t 20 --t-max 400 --seeds 5 --threads 1"
    .venv/bin/python scripts/validation/scale.py --out docs/results/validity_flag --regimes F7,F4 $R --sizes 64 --design goe $S
    .venv/bin/python scripts/validation/scale.py --out docs/results/validity_flag --regimes F7 $R --sizes 100 --design goe $S
    .venv/bin/python scripts/validation/scale.py --out docs/results/validity_flag --regimes F7,F4,F16 $R --sizes 64,128 $S
    .venv/bin/python scripts/validation/validity_flag.py          # writes docs/results/validity_flag/seed_spread.json

(about 2 hours on 2 shared cores; GOE d = 100 takes about 10 minutes per seed, real d = 128 about 2, real
d = 256 about 20: ``--regimes F7 $R --sizes 256 $S``). GD at h = 0.01: at h = 0.05 these points do not
settle (docs/validation.md). Per (point, design, d) and metric: the seed mean over the theory at the ratios
the finite problem realises (``m/d, m*/d, n/d^2``) minus 1, its standard error, and the seed spread (sample
std over the mean).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from quadflow import Problem
from quadflow.analysis.points import load_points
from quadflow.io import atomic_write_text, dumps
from quadflow.theory import LongTimeValidityWarning, solve_longtime

OUT = Path(__file__).resolve().parents[2] / "docs" / "results" / "validity_flag"
METRICS = ("mse", "train_loss")


def realised_theory(cfg: dict):
    """The long-time solution at the ratios a point's finite problem realises."""
    p = Problem(d=cfg["d"], **{k: cfg[k] for k in ("kappa", "kappa_star", "alpha", "lam", "Delta")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LongTimeValidityWarning)
        return solve_longtime(alpha=p.n / p.d ** 2, kappa=p.m / p.d, kappa_star=p.m_star / p.d, lam=p.lam,
                              Delta=p.Delta)


def summary(out: Path = OUT) -> list[dict]:
    groups: dict = {}
    for pt in load_points(out):
        c = pt["config"]
        groups.setdefault((c["regime"], c["design"], c["d"]), []).append(pt)
    rows = []
    for (regime, design, d), pts in sorted(groups.items()):
        th = realised_theory(pts[0]["config"])
        row = {"point": regime, "design": design, "d": d, "seeds": len(pts), "t": pts[0]["result"]["t"],
               "largest_rel_change": max(p["result"]["rel_change"] for p in pts)}
        for m in METRICS:
            v = np.array([p["result"][m] for p in pts])
            row[m] = {"theory": getattr(th, m), "mean_gap": float(v.mean() / getattr(th, m) - 1),
                      "sem": float(v.std(ddof=1) / np.sqrt(v.size) / getattr(th, m)),
                      "spread": float(v.std(ddof=1) / v.mean()), "runs_gap": (v / getattr(th, m) - 1).tolist()}
        rows.append(row)
    return rows


if __name__ == "__main__":
    rows = summary()
    atomic_write_text(OUT / "seed_spread.json", dumps(rows, indent=1))
    for r in rows:
        print(f"{r['point']} {r['design']} d={r['d']} ({r['seeds']} seeds): " + "; ".join(
            f"{m} mean {100 * r[m]['mean_gap']:+.1f} +- {100 * r[m]['sem']:.1f} %, spread {100 * r[m]['spread']:.1f} %"
            for m in METRICS))
