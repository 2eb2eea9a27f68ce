"""Where does GD end when the student is narrower than the teacher? Long runs, a quasi-Newton polish
and the static solution's objective, at growing d: a resumable measurement.

    python scripts/validation/open_regime.py --out docs/results/open_regime --sizes 32,64,128 --seeds 2
    python scripts/validation/open_regime.py --out docs/results/open_regime --report

A point is (regime, d, seed, h, t_max, polish iterations). Per point (cached as
``<out>/points/<hash>.json``, the hash of :func:`quadflow.analysis.points.point_hash`; a rerun skips it):

- **GD** (``quadflow.Simulation``, Gaussian inputs, fp64, step ``h``) to ``t_max``, recorded at
  t = 10, 20, 40, ...: mse, train loss, the objective ``J = train_loss + lam Tr(S)/d`` (the loss
  GD descends, per ``m d``; docs/theory.md section 2) and the relative speed ``|dW/dt| / |W|``.
- **Polish**: L-BFGS (strong Wolfe) on the same objective from GD's end point, up to ``polish``
  iterations: if GD is only slow, the polish goes on down towards a lower objective; at a stationary
  point it stays. Then the extreme **Hessian eigenvalues** of the objective there (:func:`curvature`):
  ``min >= 0`` (to round-off) is a local minimum, ``min < 0`` a saddle GD would leave at rate ``-min``.
- **Static solution** at the realised ratios: its mse, train loss and objective
  ``train_loss + lam trace``.

With ``--dmft D1,D2``, also the DMFT of the same GD (``solve_dmft`` at ``d_eff``, same h, ``--dmft-steps``):
whether the theory's own dynamics heads for the static solution or for GD's end point.

The report (``<out>/summary.json``) lists, per regime and d, the seed means of these numbers (and the
DMFT curves at the GD record times).
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch

from quadflow import Simulation
from quadflow.analysis.points import load_points, parse_numbers, parse_sizes, parser, run_measurement
from quadflow.analysis.regimes import REGIMES, Regime, parse_regimes, problem
from quadflow.io import atomic_write_text, dumps
from quadflow.theory import solve_longtime

OPEN = Regime("O", 0.3, 0.5, 0.29, 1e-3, 0.5, "kappa < kappa*, noisy, small lam, near interpolation")


def point_config(regime: Regime, d: int, seed: int, h: float, t_max: float, polish: int) -> dict:
    return {**regime.config(), "d": int(d), "seed": int(seed), "h": float(h), "t_max": float(t_max),
            "polish": int(polish), "precision": "fp64", "curvature": True}


def state(sim: Simulation) -> dict:
    """mse, train loss, objective J and relative speed at the current weights (one evaluation)."""
    model, p = sim.student, sim.p
    model.zero_grad()
    loss, stats = sim.objective(model)
    loss.backward()
    w = model.W.detach()
    s = w.T @ w / p.m
    speed = float(model.W.grad.norm() / w.norm())
    return {"mse": float(((s - sim.s_star) ** 2).sum()) / p.d, "train_loss": stats.train_loss,
            "objective": stats.train_loss + p.lam * float(torch.trace(s)) / p.d, "speed": speed}


def _gradient(sim: Simulation, w: torch.Tensor) -> torch.Tensor:
    """Gradient of the per-unit objective ``J = L / (m d)`` at weights ``w`` (flattened, float64)."""
    model = sim.student
    with torch.no_grad():
        model.W.copy_(w)
    model.zero_grad()
    loss, _ = sim.objective(model)
    loss.backward()
    return model.W.grad.detach().reshape(-1).double() / (sim.p.m * sim.p.d)


def curvature(sim: Simulation, eps: float = 1e-5) -> dict:
    """Smallest and largest eigenvalues of the Hessian of ``J`` at the current weights (Lanczos on central
    finite differences of the gradient, relative step ``eps``). The rotations ``W -> Q W`` of the m rows
    leave ``J`` unchanged, so a local minimum has ``min >= 0`` up to round-off (its zero modes); a
    negative ``min`` is a saddle, and ``-min`` the rate at which GD leaves it."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    w0 = sim.student.W.detach().clone()
    step = eps * float(w0.norm()) / w0.numel() ** 0.5

    def hvp(v):
        v = torch.as_tensor(v, dtype=torch.float64).reshape(w0.shape).to(w0.dtype)
        return ((_gradient(sim, w0 + step * v) - _gradient(sim, w0 - step * v)) / (2 * step)).numpy()

    n = w0.numel()
    op = LinearOperator((n, n), matvec=hvp, dtype=float)
    top = float(eigsh(op, k=1, which="LA", tol=1e-6, return_eigenvectors=False)[0])
    shifted = LinearOperator((n, n), matvec=lambda v: top * v - hvp(v), dtype=float)
    low = top - float(eigsh(shifted, k=1, which="LA", tol=1e-8, return_eigenvectors=False)[0])
    with torch.no_grad():
        sim.student.W.copy_(w0)
    return {"hessian_min": low, "hessian_max": top, "hessian_min_relative": low / top}


def polish(sim: Simulation, iterations: int) -> dict:
    """L-BFGS on the GD objective from the current weights; the state after it."""
    model = sim.student
    opt = torch.optim.LBFGS([model.W], lr=1.0, max_iter=iterations, history_size=50, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss, _ = sim.objective(model)
        loss.backward()
        return loss

    opt.step(closure)
    return {**state(sim), **curvature(sim), "iterations": int(opt.state[opt._params[0]]["n_iter"])}


def measure(cfg: dict) -> dict:
    p = problem(cfg)
    t0 = time.perf_counter()
    sim = Simulation(p, h=cfg["h"], seed=cfg["seed"], precision="fp64")
    trajectory, t = [], 10.0
    with warnings.catch_warnings():  # an oscillation is recorded as ascent_fraction instead
        warnings.simplefilter("ignore", RuntimeWarning)
        while True:
            sim.run(round(min(t, cfg["t_max"]) / cfg["h"]), record_steps=[])
            trajectory.append({"t": sim.step * cfg["h"], **state(sim),
                               "ascent_fraction": sim.guard.ascents / max(1, sim.step)})
            if t >= cfg["t_max"]:
                break
            t *= 2
    polished = polish(sim, cfg["polish"])
    r = p.realised()
    sol = solve_longtime(alpha=r.alpha, kappa=r.kappa, kappa_star=r.kappa_star, lam=r.lam, Delta=r.Delta)
    static = {"mse": sol.mse, "train_loss": sol.train_loss, "objective": sol.train_loss + sol.lam * sol.trace,
              "omega": sol.omega, "q": sol.q, "converged": sol.converged}
    return {"gd": trajectory, "polished": polished, "static": static, "wall_s": time.perf_counter() - t0}


def dmft_config(regime: Regime, d_eff: int, h: float, steps: int, samples: int) -> dict:
    return {**regime.config(), "d_eff": int(d_eff), "h": float(h), "steps": int(steps), "samples": int(samples),
            "kind": "dmft"}


def measure_dmft(cfg: dict) -> dict:
    """The DMFT of the same GD (``solve_dmft`` at ``d_eff``), kept at the GD record times and every 10th step."""
    from quadflow.theory.dmft import solve_dmft

    t0 = time.perf_counter()
    th = solve_dmft(problem({**cfg, "d": cfg["d_eff"]}), h=cfg["h"], steps=cfg["steps"], d_eff=cfg["d_eff"],
                    samples=cfg["samples"], seed=0)
    keep = sorted(set(range(0, cfg["steps"] + 1, 10)) | {cfg["steps"]})
    return {"t": th["t"][keep].tolist(), **{m: th[m][keep].tolist() for m in ("mse", "train_loss")},
            "stderr": {m: th["stderr"][m][keep].tolist() for m in ("mse", "train_loss")},
            "converged": bool(th["converged"]), "iterations": th["iterations"],
            "worst_window_residual": max(w["residual"] for w in th["windows"]), "wall_s": time.perf_counter() - t0}


def label(cfg: dict) -> str:
    return f"{cfg['regime']} " + (f"DMFT d_eff={cfg['d_eff']}" if cfg.get("kind") == "dmft"
                                  else f"d={cfg['d']} seed={cfg['seed']}")


def line(res: dict) -> str:
    if "gd" not in res:
        return (f"DMFT t={res['t'][-1]:g} mse {res['mse'][-1]:.4g} train {res['train_loss'][-1]:.4g} "
                f"converged {res['converged']} ({res['wall_s']:.0f} s)")
    end, pol, st = res["gd"][-1], res["polished"], res["static"]
    return (f"GD t={end['t']:g} mse {end['mse']:.4g} train {end['train_loss']:.4g} J {end['objective']:.5g} "
            f"speed {end['speed']:.1e} | polished J {pol['objective']:.5g} train {pol['train_loss']:.4g} "
            f"mse {pol['mse']:.4g} Hessian min {pol['hessian_min']:.2e} (max {pol['hessian_max']:.2e}) | static "
            f"J {st['objective']:.5g} train {st['train_loss']:.4g} mse {st['mse']:.4g} ({res['wall_s']:.0f} s)")


def report(out: Path) -> dict:
    points = load_points(out)
    groups: dict = {}
    for pt in points:
        c = pt["config"]
        if c.get("kind") != "dmft":
            groups.setdefault(f"{c['regime']} d={c['d']}", []).append(pt)
    dmft = {f"{pt['config']['regime']} DMFT d_eff={pt['config']['d_eff']}": {
        "converged": pt["result"]["converged"],
        **{f"t={t:g}": {m: pt["result"][m][i] for m in ("mse", "train_loss")} for i, t in enumerate(pt["result"]["t"])
           if t in (10, 20, 40, 80, 160, 320, 640) or i == len(pt["result"]["t"]) - 1}}
        for pt in points if pt["config"].get("kind") == "dmft"}
    summary = {}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    for key, pts in sorted(groups.items(), key=lambda kv: (kv[0].split()[0], int(kv[0].split("=")[1]))):
        row = {"seeds": len(pts)}
        for part in ("polished", "static"):
            for m in ("mse", "train_loss", "objective"):
                row[f"{part}_{m}"] = mean([pt["result"][part][m] for pt in pts])
        for m in ("objective", "mse", "train_loss", "hessian_min", "hessian_min_relative"):
            row[f"per_seed_{m}"] = [pt["result"]["polished"][m] for pt in pts]
        times = [r["t"] for r in pts[0]["result"]["gd"]]
        row["gd"] = {f"t={t:g}": {m: mean([pt["result"]["gd"][i][m] for pt in pts])
                                  for m in ("mse", "train_loss", "objective", "speed")} for i, t in enumerate(times)}
        summary[key] = row
    summary.update(dmft)
    atomic_write_text(out / "summary.json", dumps(summary, indent=1))
    return summary


def plan_from(args) -> list[dict]:
    """The DMFT solves (with ``--dmft``), then the GD points, smallest d first."""
    regimes = parse_regimes(args.regimes, args.regime, {**REGIMES, OPEN.name: OPEN})
    configs = [dmft_config(r, d_eff, args.h, args.dmft_steps, args.dmft_samples)
               for d_eff in parse_numbers(args.dmft, "--dmft") for r in regimes] if args.dmft else []
    return configs + [point_config(r, d, s, args.h, args.t_max, args.polish)
                      for d in parse_sizes(args.sizes) for s in range(args.seeds) for r in regimes]


def main(argv=None) -> None:
    ap = parser(__doc__, budget=False)
    ap.add_argument("--regimes", default="O", help="O (the open regime) or the regimes of scale.py")
    ap.add_argument("--regime", action="append", default=[], metavar="NAME:key=value,...")
    ap.add_argument("--sizes", default="32,64,128")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--h", type=float, default=0.025)
    ap.add_argument("--t-max", type=float, default=1280.0)
    ap.add_argument("--polish", type=int, default=3000, help="L-BFGS iterations from GD's end point")
    ap.add_argument("--dmft", default="", help="comma-separated d_eff: also solve the DMFT to --dmft-steps")
    ap.add_argument("--dmft-steps", type=int, default=4000)
    ap.add_argument("--dmft-samples", type=int, default=4)
    args = ap.parse_args(argv)
    _, summary = run_measurement(args, plan=plan_from, report=lambda a: report(a.out), label=label, line=line,
                                 measure=lambda c: (measure_dmft if c.get("kind") == "dmft" else measure)(c))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
