"""QuadraticNetwork as an nn.Module; any other module trained by chunked autograd; bad students refused."""
import math

import numpy as np
import pytest
import torch

from quadflow import Problem, QuadraticNetwork, simulate
from quadflow.data import Dataset, HeldOut, Seeds, initial_weights, teacher_matrix
from quadflow.models import EmpiricalObjective, SecondLayerQuadratic as SecondLayer, check_student, teacher_network, uses_analytic_gradient
from quadflow.train import mse
from students import WrongShape  # tests/cli/students.py, on the path through tests/conftest.py


class AutogradQuadratic(QuadraticNetwork):
    """The same network, but forward written anew: trains by the generic chunked-autograd path."""

    def forward(self, x):
        return ((x @ self.W.T) ** 2).sum(1).sub((self.W ** 2).sum()) / (self.m * math.sqrt(self.d))


def test_forward_is_the_papers_network():
    """f(x) = (|Wx|^2 - |W|_F^2)/(m sqrt d) = <S, (x x^T - I)/sqrt d> with S = W^T W / m (theory.md section 1)."""
    net = QuadraticNetwork(d=7, m=5, seed=1, dtype=torch.float64)
    x = torch.randn(11, 7, dtype=torch.float64)
    z = (x[:, :, None] * x[:, None, :] - torch.eye(7, dtype=torch.float64)) / math.sqrt(7)
    torch.testing.assert_close(net(x), torch.einsum("nij,ij->n", z, net.S()))
    torch.testing.assert_close(net.S(), net.W.T @ net.W / 5)
    assert net(x).shape == (11,) and [n for n, _ in net.named_parameters()] == ["W"]
    p = Problem(d=7, kappa=5 / 7, kappa_star=0.5, alpha=1.0, sigma0=0.5)
    torch.testing.assert_close(QuadraticNetwork(d=7, m=5, sigma0=0.5, seed=3, dtype=torch.float64).W.detach(),
                               initial_weights(p, 3))  # the seeded draw is quadflow's counter-based stream


def test_teacher_is_frozen_and_gives_s_star():
    p = Problem(d=9, kappa=1.0, kappa_star=4 / 9, alpha=1.0)
    t = teacher_network(d=9, m=p.m_star, seed=5)
    assert not any(q.requires_grad for q in t.parameters())
    torch.testing.assert_close(t.S(), teacher_matrix(p, 5))


def _dataset(p, seed=0):
    seeds = Seeds.from_master(seed)
    s_star = teacher_matrix(p, seeds.teacher)
    return seeds, Dataset(p, s_star, seeds, dtype=torch.float64, compute_dtype=torch.float64)


def test_chunked_autograd_equals_analytic_gradient():
    """A module with the same function, differentiated by autograd chunk by chunk, gets the analytic gradient."""
    p = Problem(d=10, kappa=0.7, kappa_star=0.5, alpha=3.0, Delta=0.3, lam=0.2)
    seeds, data = _dataset(p)
    fast = QuadraticNetwork(d=p.d, m=p.m, seed=seeds.init, dtype=torch.float64)
    slow = AutogradQuadratic(d=p.d, m=p.m, seed=seeds.init, dtype=torch.float64)
    assert uses_analytic_gradient(fast) and not uses_analytic_gradient(slow)
    results = []
    for net in (fast, slow):
        loss, stats = EmpiricalObjective(data, lam=p.lam, m=p.m, chunk_rows=41)(net)
        loss.backward()
        results.append((float(loss), stats, net.W.grad.clone()))
    (l1, s1, g1), (l2, s2, g2) = results
    assert l2 == pytest.approx(l1, rel=1e-12)
    assert s2.train_loss == pytest.approx(s1.train_loss, rel=1e-12)
    assert s2.in_sample_error == pytest.approx(s1.in_sample_error, rel=1e-12)
    torch.testing.assert_close(g2, g1, rtol=1e-10, atol=1e-12)


def test_user_module_trains_and_its_test_error_is_estimated():
    """A variant with a second layer trains by autograd; with a = 1 it starts where the quadratic network starts.

    Its test error comes from held-out inputs; the quadratic network's exact mse is inside 4 standard errors.
    """
    p = Problem(d=10, kappa=1.0, kappa_star=0.5, alpha=3.0, lam=0.05)
    run = simulate(p, h=0.02, steps=60, precision="fp64", student=SecondLayer, record_steps=[0, 60],
                   test_samples=20000)
    ref = simulate(p, h=0.02, steps=60, precision="fp64", record_steps=[0, 60])
    assert run["train_loss"][-1] < 0.5 * run["train_loss"][0]
    assert "rank_fraction" not in run and np.all(run["test_error_se"] > 0)
    assert run["test_error"][0] == pytest.approx(ref["test_error"][0], abs=4 * run["test_error_se"][0])


def test_heldout_estimate_matches_exact_mse():
    """E (f - f*)^2 = 2 mse for Gaussian inputs; 50k held-out inputs give ~0.6 % standard error, 4 s.e. allowed."""
    p = Problem(d=12, kappa=1.0, kappa_star=0.5, alpha=1.0)
    seeds = Seeds.from_master(2)
    s_star = teacher_matrix(p, seeds.teacher)
    net = QuadraticNetwork(d=12, m=12, seed=seeds.init, dtype=torch.float64)
    err, se = HeldOut(s_star, seeds.inputs, 50000, device="cpu", dtype=torch.float64).error(net)
    exact = 2 * mse(net.S().detach(), s_star)
    assert abs(err - exact) < 4 * se and se < 0.02 * exact


def test_student_with_wrong_output_is_refused_before_training():
    with pytest.raises(ValueError, match=r"student WrongShape: forward must map inputs \(batch, d=6\).*got shape \(2, 4\)"):
        check_student(WrongShape(6, 4), 6, torch.float32)  # tests/cli/students.py
    with pytest.raises(ValueError, match="data.design=goe needs a student with S"):
        check_student(SecondLayer(6, 3), 6, torch.float32, design="goe")
