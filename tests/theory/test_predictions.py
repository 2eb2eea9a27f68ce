"""The app's theory components say which flow they draw: the DMFT follows the run's optimiser and batches
where it can, and otherwise names what it drew instead."""
import functools
import warnings

import pytest
import torch

from quadflow import Problem
from quadflow.cli.theories import DMFT, RunInfo
from quadflow.optim import by_name, gd_mismatch

H = 0.05


def _run(make_optimizer, batch_size=None) -> RunInfo:
    p = Problem(d=16, kappa=1.0, kappa_star=0.5, alpha=1.0, Delta=0.0, lam=0.05, sigma0=1.0)
    return RunInfo(problem=p, h=H, steps=4, schedule=[0, 2, 4], spectrum_steps=[], seeds=None,
                   s_star=torch.eye(16), make_optimizer=make_optimizer, batch_size=batch_size)


@pytest.mark.parametrize("make, expected", [
    (by_name("gd", H), None),
    (by_name("momentum", H), "SGD(momentum=0.9)"),
    (by_name("gd", H, nesterov=True, momentum=0.5), "SGD(momentum=0.5, nesterov=True)"),
    (by_name("gd", H, weight_decay=1e-3), "SGD(weight_decay=0.001)"),
    (functools.partial(torch.optim.SGD, lr=2 * H), "SGD(lr=0.1 with trainer.h=0.05)"),
    (by_name("adam", H), "Adam"),
    (by_name("rk4", H), "RK4"),
    (functools.partial(torch.optim.Adagrad, lr=H), "Adagrad"),
])
def test_every_optimiser_but_plain_gd_at_step_h_is_named(make, expected):
    assert gd_mismatch(make([torch.zeros(1, requires_grad=True)]), H) == expected


def test_an_optimiser_the_dmft_cannot_follow_is_never_drawn_as_the_run_and_minibatches_are_followed():
    with pytest.warns(RuntimeWarning, match=r"this run uses Adagrad: the theory/dmft curve drawn is GD at step h=0.05, "):
        pred = DMFT(d_eff=24, samples=1).compute(_run(functools.partial(torch.optim.Adagrad, lr=H)))
    assert pred.summary["describes_run"] is False and pred.summary["drawn_instead_of"] == "Adagrad"
    for followed in (by_name("gd", H), by_name("momentum", H), by_name("adam", H), by_name("rk4", H)):  # own DMFT
        for batch_size in (None, 100):
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                pred = DMFT(d_eff=24, samples=1).compute(_run(followed, batch_size))
            assert pred.summary["describes_run"] is True and pred.summary["drawn_instead_of"] is None
