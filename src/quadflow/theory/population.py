"""The population (alpha -> infinity) flow, ``dS/dt = 2[(S* - S) S + S (S* - S) - 2 lam S]``.

Run in W-space by the same training loop, optimiser and step h as the simulation
(docs/theory.md section 2: compare at equal h, not only as h -> 0), with the
population objective (:class:`quadflow.models.PopulationObjective`), on a fresh
``d_eff x d_eff`` instance whose teacher and initialisation follow the same laws
as the simulation's. At finite ``d_eff`` the result carries O(1/d_eff)
fluctuations; pass ``seeds`` equal to a simulation's to share its S* and W0.
"""
from __future__ import annotations

from typing import Callable

import torch

from quadflow.data import Seeds, teacher_matrix
from quadflow.models import PopulationObjective, QuadraticNetwork
from quadflow.optim import optimizer_factory
from quadflow.problem import Problem
from quadflow.train import DivergenceGuard, Evaluator, ProgressLog, Trainer, collect, log_schedule


def solve_population(p: Problem, h: float = 0.05, steps: int = 400, d_eff: int | None = None, seed: int = 0,
                     optim: str | Callable = "gd", optim_params: dict | None = None, record_steps=None,
                     spectrum_steps=(), dtype=torch.float64, device: str = "cpu", seeds: Seeds | None = None) -> dict:
    """The population flow's observables on the simulation's time grid.

    Args:
        p: the problem (alpha is ignored: this is its infinite limit).
        d_eff: dimension of the instance (default ``p.d``).
        optim: ``gd|momentum|adam|rk4`` (with ``optim_params``) or a callable ``params -> Optimizer``,
            as for :func:`quadflow.simulate`.
        record_steps: steps at which to record (default log-spaced, as :func:`quadflow.simulate`).

    Returns the keys of :func:`quadflow.simulate`, with ``train_loss = (2 mse + Delta)/4``
    and ``in_sample_error = mse / 2`` (population losses); ``loss_reg = train_loss + lam trace`` is then
    the population objective per unit of ``m d``.
    """
    q = p if d_eff is None else Problem(d=int(d_eff), kappa=p.kappa, kappa_star=p.kappa_star, alpha=p.alpha,
                                        Delta=p.Delta, lam=p.lam, sigma0=p.sigma0)
    seeds = seeds if seeds is not None else Seeds.from_master(seed)
    s_star = teacher_matrix(q, seeds.teacher).to(device, dtype)
    student = QuadraticNetwork(d=q.d, m=q.m, sigma0=q.sigma0, seed=seeds.init, dtype=dtype, device=device)
    make_optimizer = optimizer_factory(optim, h, optim_params)
    trainer = Trainer(h, steps, callbacks=[DivergenceGuard(), ProgressLog(fraction=None, label="theory population")])
    trainer.setup(student, PopulationObjective(s_star, Delta=q.Delta, lam=q.lam, m=q.m),
                  make_optimizer(student.parameters()))
    records: list[dict] = []
    trainer.fit(Evaluator(s_star, lam=q.lam, Delta=q.Delta),
                log_schedule(steps) if record_steps is None else record_steps, spectrum_steps, on_record=records.append)
    return collect(records)
