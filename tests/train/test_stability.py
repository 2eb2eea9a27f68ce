"""Runs that do not descend as a smaller step would are marked unstable; the divergence advice fits the run."""
import contextlib
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from quadflow import Problem, Simulation
from quadflow.models import Stats
from quadflow.optim import RK4, follows_flow
from quadflow.train import DivergenceError, DivergenceGuard

DEFAULT = Problem(d=32, kappa=1.5, kappa_star=0.5, alpha=2.0, Delta=0.0, lam=0.05, sigma0=1.0)  # conf/problem
RK4_CONF = Path(__file__).resolve().parents[2] / "conf" / "optim" / "rk4.yaml"


def fit(p, steps=600, **options):
    sim = Simulation(p, **options)
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sim.run(steps, record_steps=[steps], on_record=records.append)
    return sim, records[-1]


@pytest.mark.parametrize("p,options,reason", [
    (DEFAULT, {"optim": "rk4", "h": 0.2}, "the objective rose by over 10%"),   # mse 0.47 (0.0026 at h <= 0.11)
    (DEFAULT, {"optim": "rk4", "h": 0.12}, "RK4 stalled where the flow does not"),  # a spurious fixed point
    (DEFAULT, {"optim": "gd", "h": 0.1}, "the objective rose by over 10%"),
    (Problem(d=12, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.05), {"optim": "gd", "h": 0.09},
     "SGD stalled where the flow does not"),  # a period-2 orbit: mse 0.020 against 0.003
])
def test_steps_too_large_to_follow_the_flow_are_marked(p, options, reason):
    sim, _ = fit(p, **options)
    assert sim.guard.unstable.startswith(reason), sim.guard.unstable
    assert f"trainer.h, now {options['h']:g}" in sim.guard.unstable


@pytest.mark.parametrize("p,steps,options", [
    (DEFAULT, 600, {"optim": "gd", "h": 0.05}),
    (DEFAULT, 600, {"optim": "gd", "h": 0.05, "precision": "fp64"}),
    (DEFAULT, 600, {"optim": "adam", "h": 0.05}),
    (DEFAULT, 600, {"optim": "momentum", "h": 0.05}),
    (Problem(d=12, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.05), 60, {"optim": "momentum", "h": 0.05}),  # overshoots
    (Problem(d=32, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.0), 3000, {"optim": "gd", "h": 0.05,
                                                                            "precision": "bf16"}),  # at its floor
    (DEFAULT, 600, {"optim": "gd", "h": 0.05, "batch_size": 256}),
])
def test_descending_runs_are_not_marked(p, steps, options):
    sim, _ = fit(p, steps, **options)
    assert sim.guard.unstable is None


def test_rk4_advice_is_a_stable_step():
    """conf/optim/rk4.yaml's largest advised h converges where small-step GD does on the default problem."""
    advised = float(re.search(r"trainer\.h <= (\d+\.\d+)", RK4_CONF.read_text()).group(1))
    sim, last = fit(DEFAULT, optim="rk4", h=advised)
    _, small = fit(DEFAULT, optim="gd", h=0.05)
    assert sim.guard.unstable is None and last["mse"] == pytest.approx(small["mse"], rel=0.01)


class _Trainer(SimpleNamespace):
    """What the guard reads of a full-batch trainer whose losses are fed in by hand."""

    def __init__(self, optimizer, batches=None):
        super().__init__(optimizer=optimizer, batches=batches, h=0.05, step=0, last_record=None,
                         objective=SimpleNamespace(scale=1.0, loss_scale=1.0))


def _verdict(losses, optimizer=None, batches=None, grad=0.0, stopped_at=None, diverges=False):
    """The guard's verdict after these losses, one per step; ``stopped_at``: a signal stopped the fit after
    that step; ``diverges``: a last, exploding loss raises DivergenceError (and the fit ends as well)."""
    w = torch.zeros(10, requires_grad=True)
    w.grad = torch.full((10,), grad)
    trainer = _Trainer(optimizer(w) if optimizer else torch.optim.SGD([w], lr=0.05), batches)
    guard = DivergenceGuard()
    with pytest.raises(DivergenceError) if diverges else contextlib.nullcontext():
        for step, loss in enumerate(losses[:stopped_at] + [1e9] * diverges):
            trainer.step = step
            guard.on_evaluate(trainer, loss, Stats(train_loss=loss, in_sample_error=loss))
    trainer.step += stopped_at is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guard.on_fit_end(trainer)
    assert [str(c.message) for c in caught] == ([f"training unstable: {guard.unstable}"] if guard.unstable else [])
    return guard.unstable


def _descent(steps, start=1.0, rate=0.02, floor=0.1):
    return [floor + (start - floor) * (1 - rate) ** k for k in range(steps + 1)]


def test_guard_criteria_on_given_losses():
    base = _descent(200)
    oscillating = [v * (1.25 if k % 2 and k > 60 else 1.0) for k, v in enumerate(base)]
    assert _verdict(oscillating).startswith("the objective rose by over 10% at 70 of the 150 steps after step 50")
    assert _verdict(oscillating, batches=object()) is None  # minibatch losses are per batch
    early = [v * (1.3 if k in (3, 6, 12, 18, 27) else 1.0) for k, v in enumerate(base)]
    assert _verdict(early) is None  # rises within the first min_steps only: momentum's overshoots
    noisy = _descent(300, floor=1e-6, rate=0.1)
    noisy = [v * (2.0 if k % 3 == 0 and k > 200 else 1.0) for k, v in enumerate(noisy)]
    assert _verdict(noisy) is None  # doubling at 1e-6 of the initial value: rounding at the floor
    rising = base[:100] + [base[99] * 1.005 ** k for k in range(1, 101)]  # +0.5 % a step: never 10 %
    assert "giving back" in _verdict(rising)
    flat = base[:150] + [base[150]] * 51
    assert _verdict(flat, grad=1.0).startswith("SGD stalled where the flow does not")  # lr |g|^2 = 0.5
    assert _verdict(flat, grad=1e-3) is None  # a converged run: no gradient left
    assert _verdict(flat, grad=1.0, optimizer=lambda w: RK4([w], lr=0.05)).startswith("RK4 stalled")
    assert _verdict(flat, grad=1.0, optimizer=lambda w: torch.optim.Adam([w], lr=0.01)) is None  # not a flow
    assert _verdict(base[:40] + [1.0] * 10) is None  # not more than min_steps = 50 steps
    assert _verdict(oscillating, stopped_at=150) is None  # stopped by a signal after a step, not evaluated
    assert _verdict(oscillating, diverges=True) is None  # diverged, not also unstable


def test_follows_flow():
    w = [torch.zeros(2, requires_grad=True)]
    assert follows_flow(torch.optim.SGD(w, lr=0.3)) and follows_flow(RK4(w, lr=0.1))
    assert not follows_flow(torch.optim.SGD(w, lr=0.1, momentum=0.9))
    assert not follows_flow(torch.optim.Adam(w, lr=0.1))


@pytest.mark.parametrize("name,value", [("rise", 0), ("fraction", 1.5), ("floor", -1e-4), ("stall", "x"),
                                        ("min_steps", -1), ("min_steps", 2.5)])
def test_guard_settings_out_of_range(name, value):
    with pytest.raises(ValueError, match=rf"callbacks.divergence.{name}={value!r} is out of range: allowed"):
        DivergenceGuard(**{name: value})


@pytest.mark.parametrize("precision,optim,advice", [
    ("fp64", "gd", "Use a smaller step (trainer.h, now 50) or optim=rk4."),
    ("fp32", "gd", "Use a smaller step (trainer.h, now 50), a higher precision (precision=fp64) or optim=rk4."),
    ("bf16", "rk4", "Use a smaller step (trainer.h, now 50) or a higher precision (precision=tf32, fp32 or fp64)."),
])
def test_divergence_advice_names_only_what_the_run_does_not_use(precision, optim, advice):
    p = Problem(d=8, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.05)
    with pytest.raises(DivergenceError) as err:
        Simulation(p, h=50.0, precision=precision, optim=optim).run(20, record_steps=[0])
    assert str(err.value).endswith(advice)
