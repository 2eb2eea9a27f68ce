"""Checks shared by the DMFT tests of the optimisers: the response against finite differences, the gap of a
DMFT to GOE-design simulations of the optimiser it follows, and its prediction of a run's excess over GD."""
import dataclasses
import math

import numpy as np
import torch

from quadflow import Problem, simulate
from quadflow.theory.dmft import solve_dmft
from quadflow.theory.dmft.process import SymCoords, draw, run_pass


def finite_difference_response(q: Problem, steps: int, channels: int, shift: float, **update) -> tuple:
    """The tangent's response ``R`` (T+1, T+1) of one sample and its central finite difference.

    The process runs ``steps`` steps on fixed random kernels (``K`` strictly lower, entries in [0, 0.05);
    ``U_k = G_k``) with the update ``update`` (:class:`EffectiveProcess`'s keywords). The finite difference
    shifts the noise of each time j by ``+-shift P_j`` (the probes of channel ``j mod channels`` together)
    and returns ``<P_j, dS_k>/D``, strictly lower-triangular, D = d(d+1)/2."""
    h = 0.05
    draws = draw(q, steps, 1, seed=5, device=torch.device("cpu"), dtype=torch.float64, sum_dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    K = 0.05 * torch.tril(torch.rand(steps + 1, steps + 1, generator=gen, dtype=torch.float64), -1)
    L = math.sqrt(4 * q.alpha) * torch.eye(steps + 1, dtype=torch.float64)
    base = run_pass(draws, K, L, alpha=q.alpha, h=h, lam=q.lam, channels=channels, **update)
    fd = torch.zeros(steps + 1, steps + 1, dtype=torch.float64)
    for c in range(channels):
        shifted = []
        for sign in (1, -1):
            goe = draws.goe.clone()
            goe[c:steps:channels] += sign * shift * draws.probes[c::channels]
            shifted.append(run_pass(dataclasses.replace(draws, goe=goe), K, L, alpha=q.alpha, h=h, lam=q.lam,
                                    keep_states=True, **update).E)
        dE = (shifted[0] - shifted[1]) / (2 * shift)
        fd[:, c:steps:channels] = torch.einsum("kbxy,jbxy->kj", dE, SymCoords(q.d).unpack(draws.probes[c::channels])) / (q.d * (q.d + 1) / 2)
    return base.R[0], torch.tril(fd, -1)


def goe_gaps(p: Problem, h: float, steps: int, seeds: int, d_eff: int, samples: int, make_optimizer) -> dict:
    """Mean over t >= 1 of |theory/sim - 1| for mse and train loss, against GOE-design simulations run with
    ``make_optimizer`` (``params -> Optimizer``; fp64, mean over ``seeds`` seeds): keys ``("followed", k)`` for
    the DMFT of that optimiser and ``("gd", k)`` for GD's DMFT at step h (the curve drawn before the DMFT
    followed the optimiser)."""
    sims = [simulate(p, h=h, steps=steps, seed=s, design="goe", precision="fp64", optim=make_optimizer,
                     record_steps=np.arange(steps + 1)) for s in range(seeds)]
    theories = {"followed": solve_dmft(p, h=h, steps=steps, d_eff=d_eff, samples=samples, seed=1000,
                                       optim=make_optimizer),
                "gd": solve_dmft(p, h=h, steps=steps, d_eff=d_eff, samples=samples, seed=1000)}
    late = sims[0]["t"] >= 1
    out = {}
    for k in ("mse", "train_loss"):
        sim = np.mean([s[k] for s in sims], 0)
        for name, th in theories.items():
            out[name, k] = float(np.mean(np.abs(th[k] / sim - 1)[late]))
    return out


def assert_dmft_follows(gaps: dict, tol: dict, further: float) -> None:
    """Each metric's gap of :func:`goe_gaps` below ``tol[metric]``, and GD's curve more than ``further`` times
    as far from the simulation."""
    for k, limit in tol.items():
        assert gaps["followed", k] < limit, (k, gaps)
        assert gaps["gd", k] > further * gaps["followed", k], (k, gaps)


def excess_gaps(p: Problem, h: float, steps: int, seeds: int, d_eff: int, samples: int, sim: dict, dmft: dict,
                t_min: float, every: int = 1) -> dict:
    """A run's excess over full-batch GD, ``mse_run / mse_GD`` (and the same for the train loss), from GOE-design
    runs (fp64, ``seeds`` seeds, each seed's two runs sharing teacher, data and initialisation; ``sim``: the
    run's keywords of ``simulate``) and from the two DMFT solves (``dmft``: the run's keywords of
    ``solve_dmft``). The O(1/d) gap of the DMFT to GOE runs, common to both, mostly cancels in the ratio.
    Returns per metric the mean over t >= ``t_min`` of ``|excess_DMFT / excess_sim - 1|`` (``("followed", k)``)
    and of ``|1 / excess_sim - 1|`` (``("gd", k)``: the excess of GD's curve, 1)."""
    record = np.arange(0, steps + 1, every)
    runs = {name: [simulate(p, h=h, steps=steps, seed=s, design="goe", precision="fp64", record_steps=record, **kw)
                   for s in range(seeds)] for name, kw in (("gd", {}), ("run", sim))}
    kw = dict(h=h, steps=steps, d_eff=d_eff, samples=samples, seed=1000)
    th = {"gd": solve_dmft(p, **kw), "run": solve_dmft(p, **kw, **dmft)}
    late = record * h >= t_min
    out = {}
    for k in ("mse", "train_loss"):
        excess = np.mean([r[k] for r in runs["run"]], 0) / np.mean([r[k] for r in runs["gd"]], 0)
        theory = th["run"][k][record] / th["gd"][k][record]
        out["followed", k] = float(np.mean(np.abs(theory / excess - 1)[late]))
        out["gd", k] = float(np.mean(np.abs(1 / excess - 1)[late]))
    return out
