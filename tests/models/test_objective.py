"""The objective's gradient against autograd, the two routes against each other, the exact mse, the module."""
import math

import pytest
import torch

from quadflow import Problem
from quadflow import QuadraticNetwork
from quadflow.data import Dataset, Seeds, initial_weights, quadratic_form, teacher_matrix
from quadflow.models import EmpiricalObjective
from quadflow.train import mse


def student_matrix(w):
    return w.T @ w / w.shape[0]


def student(p, w):
    net = QuadraticNetwork(d=p.d, m=p.m, dtype=w.dtype)
    with torch.no_grad():
        net.W.copy_(w)
    return net


def drift_and_stats(data, p, w, route="S", chunk_rows=65536):
    """dW/dt = -grad L (quadflow's loss scaling) and the Stats at W, through loss.backward()."""
    net = student(p, w)
    loss, stats = EmpiricalObjective(data, lam=p.lam, m=p.m, route=route, chunk_rows=chunk_rows)(net)
    loss.backward()
    return -net.W.grad, stats


def _dataset(p, design, seed=0, storage="materialized"):
    seeds = Seeds.from_master(seed)
    s_star = teacher_matrix(p, seeds.teacher)
    data = Dataset(p, s_star, seeds, design=design, storage=storage, dtype=torch.float64,
                   compute_dtype=torch.float64)
    return s_star, data, initial_weights(p, seeds.init)


def _sensing_matrices(data):
    """Z_mu as dense (n, d, d) tensors, straight from the definition of theory.md section 1/3."""
    a = data.inputs
    if data.design == "goe":
        return a
    d = a.shape[1]
    return (a[:, :, None] * a[:, None, :] - torch.eye(d, dtype=a.dtype)) / math.sqrt(d)


@pytest.mark.parametrize("design,kappa", [("gaussian", 0.5), ("gaussian", 1.5), ("goe", 0.75)])
def test_drift_equals_autograd_gradient(design, kappa):
    """dV/dt = -d grad_V [L(V) + (lam/d)|V|^2] with V = W^T/sqrt(m) (theory.md section 2), fp64."""
    p = Problem(d=10, kappa=kappa, kappa_star=0.5, alpha=3.0, Delta=0.3, lam=0.2)
    _, data, w = _dataset(p, design)
    z = _sensing_matrices(data)
    v = (w.T / math.sqrt(p.m)).clone().requires_grad_(True)
    s = v @ v.T
    f = torch.einsum("nij,ij->n", z, s)
    loss = ((f - data.y) ** 2).sum() / (4 * p.n) + (p.lam / p.d) * (v ** 2).sum()
    (grad_v,) = torch.autograd.grad(loss, v)
    dv_dt = -p.d * grad_v
    gamma = (p.d / (2 * p.n)) * torch.einsum("n,nij->ij", (data.y - f.detach()), z)  # theory.md section 2
    for route in (["S", "W"] if design == "gaussian" else ["S"]):
        dw_dt, stats = drift_and_stats(data, p, w, route=route, chunk_rows=37)
        torch.testing.assert_close(dw_dt.T / math.sqrt(p.m), dv_dt, rtol=1e-10, atol=1e-12)
        assert stats.train_loss == pytest.approx(float(((f.detach() - data.y) ** 2).sum()) / (4 * p.n), rel=1e-10)
        assert stats.in_sample_error == pytest.approx(float(((f.detach() - data.y_clean) ** 2).sum()) / (4 * p.n), rel=1e-10)
    # one torch.optim.SGD(lr=h) step on quadflow's loss is W + 2h (W Gamma - lam W)
    h = 0.01
    net = student(p, w)
    opt = torch.optim.SGD(net.parameters(), lr=h)
    EmpiricalObjective(data, lam=p.lam, m=p.m)(net)[0].backward()
    opt.step()
    torch.testing.assert_close(net.W.detach(), w + 2 * h * (w @ gamma - p.lam * w), rtol=1e-10, atol=1e-12)


def test_routes_and_storage_modes_agree():
    """S-route, W-route and regenerated data give the same drift to rounding (fp64)."""
    p = Problem(d=12, kappa=0.5, kappa_star=1.0, alpha=80.0, Delta=0.1)  # n > 2 generation blocks
    _, data, w = _dataset(p, "gaussian")
    _, regen, _ = _dataset(p, "gaussian", storage="regenerate")
    ref, ref_stats = drift_and_stats(data, p, w, route="S")
    for ds, route, rows in ((data, "W", 1000), (regen, "S", 5000)):
        drift, stats = drift_and_stats(ds, p, w, route=route, chunk_rows=rows)
        torch.testing.assert_close(drift, ref, rtol=1e-10, atol=1e-12)
        assert stats.train_loss == pytest.approx(ref_stats.train_loss, rel=1e-12)


def test_labels_follow_definition():
    """y_clean = Tr(S* Z(x)) = (x^T S* x - Tr S*)/sqrt(d); noise variance Delta."""
    p = Problem(d=8, kappa=1.0, kappa_star=0.5, alpha=200.0, Delta=0.25)
    s_star, data, _ = _dataset(p, "gaussian")
    z = _sensing_matrices(data)
    torch.testing.assert_close(data.y_clean, torch.einsum("nij,ij->n", z, s_star))
    noise = data.y - data.y_clean
    # 12800 draws: the sample variance has relative standard error sqrt(2/n) ~ 1.3 %
    assert float(noise.var()) == pytest.approx(p.Delta, rel=0.06)


def test_exact_mse_matches_monte_carlo_test_error():
    """E_x (f - f*)^2 = 2 |S - S*|_F^2 / d for Gaussian x (theory.md section 1).

    200k fresh inputs: the estimator's relative standard error is about
    sqrt(Var[(f-f*)^2]) / (mean sqrt(N)) <= sqrt(2)/sqrt(N) ~ 0.3 %; tolerance 2 %.
    """
    p = Problem(d=16, kappa=1.0, kappa_star=0.5, alpha=1.0)
    seeds = Seeds.from_master(3)
    s_star = teacher_matrix(p, seeds.teacher)
    s = student_matrix(initial_weights(p, seeds.init))
    x = torch.randn(200_000, p.d, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    diff = quadratic_form(x, s - s_star, "gaussian")
    assert float((diff ** 2).mean()) == pytest.approx(2 * mse(s, s_star), rel=0.02)


def test_goe_design_moments():
    """GOE matrices: off-diagonal variance 1/d, diagonal 2/d, symmetric (theory.md section 3)."""
    p = Problem(d=6, kappa=1.0, kappa_star=1.0, alpha=300.0)
    _, data, _ = _dataset(p, "goe")
    g = data.inputs * math.sqrt(p.d)
    torch.testing.assert_close(g, g.transpose(1, 2))
    off = g[:, 0, 1]
    diag = g[:, 2, 2]
    # 10800 samples: relative standard error of a variance ~ 1.4 %
    assert float(off.var()) == pytest.approx(1.0, rel=0.07)
    assert float(diag.var()) == pytest.approx(2.0, rel=0.07)


def _second_layer_objective(d=5, kappa=0.8, alpha=2.0, lam=0.1, seed=0):
    from quadflow.models import SecondLayerQuadratic

    p = Problem(d=d, kappa=kappa, kappa_star=0.6, alpha=alpha, lam=lam)
    seeds = Seeds.from_master(seed)
    _, data, _ = _dataset(p, "gaussian", seed)
    net = SecondLayerQuadratic(d=p.d, m=p.m, seed=seeds.init, dtype=torch.float64)
    with torch.no_grad():
        net.a.mul_(torch.linspace(0.5, 1.5, p.m, dtype=torch.float64))  # away from a = 1
    return p, data, net, EmpiricalObjective(data, lam=p.lam, m=p.m)


def test_sharpness_is_the_top_eigenvalue_of_the_dense_hessian():
    """Power iteration on Hessian-vector products against the dense Hessian of m d train_loss + lam |theta|^2."""
    p, data, net, objective = _second_layer_objective()
    shapes = [q.shape for q in net.parameters()]
    sizes = [q.numel() for q in net.parameters()]

    def loss(flat):
        w, a = (x.reshape(s) for x, s in zip(torch.split(flat, sizes), shapes))
        h = data.inputs @ w.T
        f = ((h * h - (w * w).sum(1)) @ a) / (p.m * math.sqrt(p.d))
        return (objective.scale / (4 * p.n)) * ((data.y - f) ** 2).sum() + p.lam * (flat * flat).sum()

    flat = torch.cat([q.detach().reshape(-1) for q in net.parameters()])
    dense = torch.autograd.functional.hessian(loss, flat)
    top = float(torch.linalg.eigvalsh(dense).abs().max())
    value, vector = objective.sharpness(net, iterations=500)
    assert value == pytest.approx(top, rel=1e-6)
    assert [v.shape for v in vector] == shapes
    warm, _ = objective.sharpness(net, start=vector, iterations=3)  # from the converged vector
    assert warm == pytest.approx(top, rel=1e-6)


def test_loss_scale_scales_value_and_gradient_not_the_losses():
    p, data, net, objective = _second_layer_objective()
    results = []
    for scale in (1.0, 0.25):
        objective.loss_scale = scale
        net.zero_grad()
        loss, stats = objective(net)
        loss.backward()
        results.append((float(loss.detach()), stats, [q.grad.clone() for q in net.parameters()]))
    (l1, s1, g1), (l2, s2, g2) = results
    assert l2 == 0.25 * l1 and s2 == s1
    for a, b in zip(g1, g2):
        assert torch.equal(b, 0.25 * a)


def test_limit_step_lowers_the_scale_to_the_margin_and_never_raises_it():
    from quadflow.models.objective import STEP_MARGIN

    p, data, net, objective = _second_layer_objective()
    top, _ = objective.sharpness(net)
    objective.limit_step(net, h=4 * STEP_MARGIN / top)
    assert objective.loss_scale == pytest.approx(0.25)
    objective.limit_step(net, h=0.5 * STEP_MARGIN / top)  # a smaller step would allow 1: the scale stays
    assert objective.loss_scale == pytest.approx(0.25)
