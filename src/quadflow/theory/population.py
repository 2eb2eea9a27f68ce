"""The population (alpha -> infinity) flow, ``dS/dt = 2[(S* - S) S + S (S* - S) - 2 lam S]``.

Run in W-space with the simulation's optimiser and step h (docs/theory.md section 2:
compare at equal h, not only as h -> 0), on the population objective
(:class:`quadflow.models.PopulationObjective`), on a fresh ``d_eff x d_eff`` instance
whose teacher and initialisation follow the same laws as the simulation's. At finite
``d_eff`` the result carries O(1/d_eff) fluctuations; pass ``seeds`` equal to a
simulation's to share its S* and W0. The loop is the simulation's
(``loss.backward(); optimizer.step()``, a closure for optimisers that need one), recording
the simulation's metrics at the same steps.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable

import torch

from quadflow.data import Seeds, teacher_matrix
from quadflow.models import PopulationObjective, QuadraticNetwork
from quadflow.observables import Evaluator, collect
from quadflow.optim import RK4, optimizer_factory, uses_closure
from quadflow.problem import Problem, Ratios, as_ratios, check_domain
from quadflow.schedules import log_schedule
from quadflow.theory.results import PopulationResult

DIVERGENCE_FACTOR = 1e6  # a train loss above this multiple of the initial one is a divergence
LOG_INTERVAL = 30.0  # seconds between progress lines of a long solve

log = logging.getLogger("quadflow")


def solve_population(p: Ratios | Problem, h: float = 0.05, steps: int = 400, d_eff: int | None = None,
                     seed: int = 0, optim: str | Callable = "gd", optim_params: dict | None = None,
                     record_steps=None, spectrum_steps=(), dtype=torch.float64, device: str = "cpu",
                     seeds: Seeds | None = None) -> PopulationResult:
    """The population flow's observables on the simulation's time grid.

    Args:
        p: the ratios, as :class:`quadflow.Ratios` or a :class:`quadflow.Problem` (alpha is ignored:
            this is its infinite limit).
        h, steps: step size (the paper's time, ``t = step * h``) and number of optimiser steps.
        d_eff: dimension of the instance: default the Problem's ``d``; required with a Ratios.
        seed: master seed of the teacher and the initialisation (``seeds`` overrides it).
        optim: ``gd|momentum|adam|rk4`` (with ``optim_params``) or a callable ``params -> Optimizer``,
            as for :func:`quadflow.simulate`.
        record_steps: steps at which to record (default about 100, log-spaced, as :func:`quadflow.simulate`).
        spectrum_steps: steps at which to keep the eigenvalues of S.
        dtype, device: of the student's weights and the teacher matrix.

    Returns:
        :class:`quadflow.theory.PopulationResult` (also a mapping with the keys of
        :func:`quadflow.simulate`): arrays of shape (records,) ``t``, ``step``, ``mse``, ``test_error``
        (``2 mse``), ``train_loss = (2 mse + Delta)/4`` and ``in_sample_error = mse / 2`` (population
        losses), ``rank_fraction``, ``trace`` (``Tr S / d_eff``), ``loss_reg = train_loss + lam trace`` (the
        population objective per unit of ``m d``); ``spectrum`` (one array of ``d_eff`` eigenvalues per
        spectrum step) and ``spectrum_t``.

    Raises:
        ValueError: a bad argument (named), e.g. no ``d_eff`` with a Ratios.
        RuntimeError: the flow diverged (a non-finite train loss, or above ``DIVERGENCE_FACTOR``
            times the initial one): the step h is too large.
    """
    ratios = as_ratios(p)
    if d_eff is None and not isinstance(p, Problem):
        raise ValueError("d_eff=None is out of range with a Ratios: allowed an integer >= 2, the dimension of the "
                         "population instance (a Problem gives its d as the default)")
    check_domain(h=h)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r} is out of range: allowed an integer >= 0")
    q = p if d_eff is None else ratios.at(int(d_eff))
    seeds = seeds if seeds is not None else Seeds.from_master(seed)
    s_star = teacher_matrix(q, seeds.teacher).to(device, dtype)
    student = QuadraticNetwork(d=q.d, m=q.m, sigma0=q.sigma0, seed=seeds.init, dtype=dtype, device=device)
    objective = PopulationObjective(s_star, Delta=q.Delta, lam=q.lam, m=q.m)
    optimizer = optimizer_factory(optim, h, optim_params)(student.parameters())

    def evaluate():
        optimizer.zero_grad(set_to_none=True)
        loss, stats = objective(student, None)
        loss.backward()
        return float(loss.detach()), stats

    record = set(log_schedule(steps) if record_steps is None else record_steps)
    observe = Evaluator(s_star, lam=q.lam, Delta=q.Delta)
    spectra = {int(s) for s in spectrum_steps}
    closure = (lambda: evaluate()[0]) if uses_closure(optimizer) else None
    records, initial, started, logged = [], None, time.monotonic(), time.monotonic()
    for step in range(steps + 1):
        _, stats = evaluate()
        initial = stats.train_loss if initial is None else initial
        if not math.isfinite(stats.train_loss) or stats.train_loss > DIVERGENCE_FACTOR * max(initial, 1e-12):
            raise RuntimeError(
                f"the population flow diverged at step {step} (t={step * h:g}): train_loss={stats.train_loss:.4g}; "
                f"use a smaller step h (now {h:g})" + ("" if isinstance(optimizer, RK4) else " or optim='rk4'"))
        if step in record or step in spectra:
            records.append(observe(student, stats, step, step * float(h), spectrum=step in spectra))
        if step == steps:
            break
        if closure is None:
            optimizer.step()
        else:
            optimizer.step(closure)
        if time.monotonic() - logged >= LOG_INTERVAL:
            logged = time.monotonic()
            log.info(f"theory population: step {step + 1}/{steps} ({100 * (step + 1) / steps:.3g} %) "
                     f"t={(step + 1) * h:g} train_loss={stats.train_loss:.4g} "
                     f"{(step + 1) / (logged - started):.3g} steps/s")
    return PopulationResult(**collect(records))
