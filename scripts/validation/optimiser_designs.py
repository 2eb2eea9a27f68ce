"""The DMFT that follows GD and the one that follows Adam, each against its own simulations on Gaussian inputs
(real, Gaussian-equivalent) and with the GOE design, at d = 32 and 64: does a coordinate-wise optimiser break
the real-input description more than GD does?

    .venv/bin/python scripts/validation/optimiser_designs.py     # about 3 min on 2 CPU cores

Writes docs/results/optimiser_designs/gaps.json: per (d, optimiser, design), the signed mean over t >= 1 of
theory/sim - 1 for mse and train loss (the simulation averaged over 4 seeds) and the mean relative standard
error of that seed mean. Problem: kappa 1.5, kappa* 0.5, alpha 1, Delta 0, lam 0.05, h 0.02, 300 steps,
fp64; Adam at lr 0.01; the DMFT at d_eff 64 with 8 samples.
"""
import json
from pathlib import Path

import numpy as np
import torch

from quadflow import Problem, simulate
from quadflow.optim import by_name
from quadflow.theory.dmft import solve_dmft

OUT = Path(__file__).resolve().parents[2] / "docs" / "results" / "optimiser_designs" / "gaps.json"
CASE = dict(kappa=1.5, kappa_star=0.5, alpha=1.0, Delta=0.0, lam=0.05, sigma0=1.0)


def main(h: float = 0.02, steps: int = 300, seeds: int = 4) -> None:
    torch.set_num_threads(2)
    out = []
    for d in (32, 64):
        p = Problem(d=d, **CASE)
        for name, make in (("gd", by_name("gd", h)), ("adam", by_name("adam", 0.01))):
            th = solve_dmft(p.realised(), h=h, steps=steps, d_eff=64, samples=8, seed=1000, optim=make)
            for design in ("gaussian", "goe"):
                sims = [simulate(p, h=h, steps=steps, seed=s, design=design, precision="fp64", optim=make,
                                 record_steps=np.arange(steps + 1)) for s in range(seeds)]
                late = sims[0]["t"] >= 1
                row = {"d": d, "optim": name, "design": design}
                for k in ("mse", "train_loss"):
                    sim = np.mean([s[k] for s in sims], 0)
                    row[k] = float(np.mean((th[k] / sim - 1)[late]))
                    row[k + "_sem"] = float(np.mean((np.std([s[k] for s in sims], 0, ddof=1) / np.sqrt(seeds) / sim)[late]))
                out.append(row)
                print(row, flush=True)
    OUT.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
