"""Seeds on a tensor axis: the GD step of ``replicas=R`` in one process against R separate runs.

For each size ``d`` and design, at a point of the paper's Fig. 7 (kappa 0.3, kappa* 0.2, alpha 0.2, lam 0.05;
fp32, the step of :class:`quadflow.train.Trainer`: ``zero_grad, objective, backward, step``):

- **replicas**: one :class:`quadflow.Simulation` with ``replicas=R`` (batched GEMMs over the replica axis);
- **separate**: R :class:`quadflow.Simulation` runs of their own (seeds 0 ... R-1), stepped one after the other
  in this process: what R separate processes achieve at best on the same cores (no start-up, no data
  generation counted).

Both are timed interleaved (one step of each in turn, ``repeats`` times) so that their ratio is measured under
the same load; the report gives the median seconds per step of each, the throughput in replica-steps per
second and ``speedup`` = separate / replicas. Before timing, the first step of each replica is compared with
its separate run (``max_rel_diff`` of W after one step).
"""
from __future__ import annotations

import statistics
import time

import torch

from quadflow import Problem, Simulation

SIZES = {False: (64, 100, 128), True: (24,)}
DESIGNS = ("goe", "gaussian")
KAPPA, KAPPA_STAR, ALPHA, LAM, H = 0.3, 0.2, 0.2, 0.05, 0.005
REPLICAS = {False: 10, True: 3}
REPEATS = {False: 7, True: 2}


def stepper(sim: Simulation):
    """One optimiser step of ``sim`` as its trainer takes it."""
    def step():
        sim.trainer._evaluate()
        sim.optimizer.step()
    return step


def first_step_gap(joint: Simulation, singles: list[Simulation]) -> float:
    """Largest relative difference of W after one step, replica r against run r."""
    stepper(joint)()
    worst = 0.0
    for r, sim in enumerate(singles):
        stepper(sim)()
        a, b = joint.student.W.detach()[r], sim.student.W.detach()
        worst = max(worst, float((a - b).abs().max() / b.abs().max()))
    return worst


def measure(d: int, design: str, replicas: int, repeats: int, device: str) -> dict:
    p = Problem(d=d, kappa=KAPPA, kappa_star=KAPPA_STAR, alpha=ALPHA, lam=LAM)
    make = dict(h=H, precision="fp32", design=design, device=device)
    joint = Simulation(p, seed=0, replicas=replicas, **make)
    singles = [Simulation(p, seed=r, **make) for r in range(replicas)]
    gap = first_step_gap(joint, singles)
    joint_step, single_steps = stepper(joint), [stepper(s) for s in singles]
    times = {"replicas": [], "separate": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        joint_step()
        t1 = time.perf_counter()
        for s in single_steps:
            s()
        t2 = time.perf_counter()
        times["replicas"].append(t1 - t0)
        times["separate"].append(t2 - t1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"d": d, "design": design, "n": p.n, "m": p.m, "replicas": replicas, "route": joint.route,
            "seconds_per_step": med, "replica_steps_per_second": {k: replicas / v for k, v in med.items()},
            "speedup": med["separate"] / med["replicas"], "max_rel_diff_first_step": gap,
            "memory_bytes": joint.memory["total"]}


def run(quick: bool = False, device: str = "cpu", sizes=None) -> dict:
    rows = [measure(d, design, REPLICAS[quick], REPEATS[quick], device)
            for d in (sizes or SIZES[quick]) for design in DESIGNS]
    for r in rows:
        print(f"[replicas] d={r['d']} {r['design']}: R={r['replicas']} {r['seconds_per_step']['replicas']:.4f} s/step, "
              f"separate {r['seconds_per_step']['separate']:.4f} s: speedup {r['speedup']:.2f}")
    return {"threads": torch.get_num_threads(), "point": {"kappa": KAPPA, "kappa_star": KAPPA_STAR, "alpha": ALPHA,
                                                        "lam": LAM, "h": H}, "rows": rows}
