"""Seeds on a tensor axis (``replicas=R``): each replica equals its own run, with every design, route, optimiser,
minibatches and a student trained by autograd; checkpoints, memory and bad input."""
import functools
import warnings

import numpy as np
import pytest
import torch

from quadflow import Problem
from quadflow.models import SecondLayerQuadratic
from quadflow.runtime import InsufficientMemoryError
from quadflow.runtime.memory import check_fits
from quadflow.train import Simulation, collect, simulate

P = Problem(d=12, kappa=0.5, kappa_star=0.25, alpha=1.5, lam=0.01, Delta=0.1)
KEYS = ("mse", "train_loss", "in_sample_error", "trace", "loss_reg", "rank_fraction")


def _runs(replicas: int, seed: int = 3, steps: int = 30, **options):
    with warnings.catch_warnings():  # a separate run's instability verdict is not what is compared here
        warnings.simplefilter("ignore", RuntimeWarning)
        joint = simulate(P, h=0.05, steps=steps, seed=seed, precision="fp64", replicas=replicas, **options)
        single = [simulate(P, h=0.05, steps=steps, seed=seed + r, precision="fp64", **options)
                  for r in range(replicas)]
    return joint, single


@pytest.mark.parametrize("options", [
    {},                                   # Gaussian inputs, W-route (m < d)
    {"route": "S"},
    {"design": "goe"},
    {"optim": "adam"},
    {"optim": "momentum"},
    {"optim": "rk4"},
    {"batch_size": 80},                   # each replica draws its own minibatches
    {"storage": "regenerate"},
    {"student": SecondLayerQuadratic, "test_samples": 400},  # torch.func stacking + vmap, autograd
], ids=lambda o: ",".join(f"{k}={getattr(v, '__name__', v)}" for k, v in o.items()) or "default")
def test_each_replica_equals_its_own_run(options):
    """fp64: replica r of ``replicas=3, seed=3`` against the run ``seed=3+r``, every metric at every record.

    Tolerance 1e-9 relative: the batched GEMMs may sum in another order than the single ones (1e-15 per step
    in fp64), and 30 steps of GD amplify that by far less than 1e6."""
    joint, single = _runs(3, **options)
    keys = [k for k in KEYS + ("test_error_se",) if k in single[0]]
    for r, one in enumerate(single):
        np.testing.assert_array_equal(joint["step"], one["step"])
        for k in keys:
            np.testing.assert_allclose(joint[k][:, r], one[k], rtol=1e-9, atol=1e-14, err_msg=f"replica {r}, {k}")
    assert joint["mse"].shape == (len(joint["t"]), 3)


def test_the_loss_scale_of_a_sharp_student_is_set_replica_by_replica():
    """A student trained by autograd at a step above its stability limit gets its loss scaled; each replica's
    scale is the one its own run computes (power iteration from the same start), and the curves agree."""
    make = functools.partial(Simulation, P, h=0.4, precision="fp64", student=SecondLayerQuadratic, test_samples=400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        joint = make(seed=5, replicas=2)
        single = [make(seed=5 + r) for r in range(2)]
    scales = np.array([s.objective.loss_scale for s in single])
    assert np.all(scales < 1) and scales[0] != scales[1]
    np.testing.assert_allclose(joint.objective.loss_scale, scales, rtol=1e-9)


def test_a_resumed_run_of_replicas_equals_an_uninterrupted_one():
    """The state of a run of replicas (one tensor per parameter with a replica axis, the optimiser's, the seeds)
    restores it bitwise: 20 steps, a fresh Simulation loads the state, 20 more steps."""
    make = functools.partial(Simulation, P, h=0.05, seed=1, precision="fp64", replicas=2, optim="adam")
    full, records = make(), []
    full.run(40, record_steps=[40], on_record=records.append)
    first = make()
    first.run(20, record_steps=[20])
    resumed, tail = make(), []
    resumed.load_state_dict(first.state_dict())
    resumed.run(40, record_steps=[40], on_record=tail.append)
    for k in KEYS:
        np.testing.assert_array_equal(tail[-1][k], records[-1][k], err_msg=k)
    other = Simulation(P, h=0.05, seed=2, precision="fp64", replicas=2, optim="adam")
    with pytest.raises(ValueError, match="other seeds"):
        other.load_state_dict(first.state_dict())


def test_memory_need_counts_every_replica_and_the_refusal_names_them():
    one = Simulation(P, seed=0, check_memory=False).memory
    four = Simulation(P, seed=0, replicas=4, check_memory=False).memory
    assert four["data"] == 4 * one["data"] and four["labels"] == 4 * one["labels"]
    with pytest.raises(InsufficientMemoryError, match=r"fewer replicas \(now 4"):
        check_fits({**four, "total": 10**18, "floor": 1}, torch.device("cpu"), design="gaussian")


@pytest.mark.parametrize("replicas, needle", [(0, r"replicas=0 is out of range: allowed an integer >= 1"),
                                              (2.5, r"replicas=2.5 is out of range")])
def test_bad_replica_counts_are_refused_before_any_data(replicas, needle):
    with pytest.raises(ValueError, match=needle):
        Simulation(P, replicas=replicas)


def test_an_optimiser_that_couples_the_entries_is_refused_with_replicas():
    with pytest.raises(ValueError, match="L-BFGS would couple the replicas"):
        Simulation(P, replicas=2, optim=lambda params: torch.optim.LBFGS(params, lr=0.05))


def test_collect_stacks_replica_metrics_on_a_second_axis():
    sim = Simulation(P, seed=0, replicas=2)
    records = []
    sim.run(4, record_steps=[0, 4], spectrum_steps=[4], on_record=records.append)
    out = collect(records)
    assert out["mse"].shape == (2, 2) and out["spectrum"][0].shape == (2, P.d)
