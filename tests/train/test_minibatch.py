"""Stochastic GD: batch-size validation, full batch as a special case, reproducible draws, exact records."""
import numpy as np
import pytest
import torch

from quadflow import Problem, Simulation, simulate

P = Problem(d=10, kappa=1.5, kappa_star=0.5, alpha=3.0, Delta=0.1, lam=0.05)


@pytest.mark.parametrize("bad", [0, P.n + 1, -3])
def test_batch_size_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match=rf"trainer.batch_size={bad} is out of range: allowed 1..n = {P.n}"):
        Simulation(P, batch_size=bad)


def test_batch_of_all_samples_is_full_batch_gd():
    """batch_size = n draws every sample (in another order): the same trajectory up to summation order."""
    full = simulate(P, h=0.05, steps=30, precision="fp64", record_steps=[0, 10, 30])
    batch = simulate(P, h=0.05, steps=30, precision="fp64", record_steps=[0, 10, 30], batch_size=P.n)
    for key in ("mse", "train_loss", "in_sample_error"):
        np.testing.assert_allclose(batch[key], full[key], rtol=1e-10)


def test_minibatch_sgd_trains_reproducibly_with_full_batch_records():
    """Small batches follow the flow noisily; the recorded train_loss is the exact full-batch one, and a
    resumed run sees the same batches (bitwise)."""
    b = P.n // 6
    a1 = Simulation(P, h=0.02, precision="fp64", batch_size=b)
    recs = []
    a1.run(60, record_steps=[0, 60], on_record=recs.append)
    flow = simulate(P, h=0.02, steps=60, precision="fp64", record_steps=[0, 60])
    assert recs[0]["train_loss"] == flow["train_loss"][0]
    assert recs[-1]["train_loss"] < 0.5 * recs[0]["train_loss"]
    assert recs[-1]["mse"] == pytest.approx(flow["mse"][-1], rel=0.3)
    half = Simulation(P, h=0.02, precision="fp64", batch_size=b)
    half.run(25, record_steps=[])
    resumed = Simulation(P, h=0.02, precision="fp64", batch_size=b)
    resumed.load_state_dict(half.state_dict())
    resumed.run(60, record_steps=[])
    assert torch.equal(resumed.student.W, a1.student.W)


def test_minibatch_needs_stored_inputs():
    with pytest.raises(ValueError, match="trainer.batch_size needs data.storage=materialized"):
        Simulation(P, batch_size=10, storage="regenerate")
