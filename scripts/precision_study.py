"""Effect of the precision mode on the mse and train_loss curves, against fp64 on the same data.

    python scripts/precision_study.py --device cpu --sizes 32 64 128 --out precision.json

Every precision draws the same float32 Gaussians (quadflow.data), so the gaps
are rounding effects only. Prints and writes JSON: for each d and precision the
max and final relative gaps of mse and train_loss to the fp64 run, and seconds.
"""
import argparse
import json
import time

import numpy as np
import torch

from quadflow import Problem, simulate


def relative_gaps(run: dict, ref: dict, key: str) -> dict:
    rel = np.abs(run[key] / ref[key] - 1)
    return {"max": float(rel.max()), "final": float(rel[-1])}


def study(sizes, precisions, device: str, steps: int, h: float) -> list[dict]:
    rows = []
    for d in sizes:
        p = Problem(d=d, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.05)
        ref = simulate(p, h=h, steps=steps, precision="fp64", device=device)
        for prec in precisions:
            t0 = time.perf_counter()
            run = simulate(p, h=h, steps=steps, precision=prec, device=device)
            rows.append({"d": d, "precision": prec, "seconds": time.perf_counter() - t0,
                         "mse_gap": relative_gaps(run, ref, "mse"),
                         "train_loss_gap": relative_gaps(run, ref, "train_loss"),
                         "final_mse_fp64": float(ref["mse"][-1]), "final_train_loss_fp64": float(ref["train_loss"][-1])})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "bf16"])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--h", type=float, default=0.05)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = study(args.sizes, args.precisions, args.device, args.steps, args.h)
    result = {"device": args.device, "torch": torch.__version__, "steps": args.steps, "h": args.h,
              "problem": "kappa=1.5 kappa_star=0.5 alpha=2 lam=0.05", "rows": rows}
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
