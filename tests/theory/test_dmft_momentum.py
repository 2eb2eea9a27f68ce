"""DMFT of SGD with momentum (heavy-ball, Nesterov, dampening): exact limits, the tangent, the simulation.

The effective process runs ``torch.optim.SGD``'s update on the effective gradient (docs/theory.md
section 4); these tests check it against GD (momentum 0), finite differences, the population flow
(alpha -> infinity) and GOE-design simulations with ``optim="momentum"``.
"""
import functools
import warnings

import numpy as np
import pytest
import torch

from quadflow import Problem
from quadflow.cli.theories import DMFT, RunInfo
from quadflow.optim import by_name, sgd_settings
from quadflow.theory.dmft import solve_dmft
from quadflow.theory.population import solve_population
from dmft_checks import assert_dmft_follows, finite_difference_response, goe_gaps

CURVE_KEYS = ("mse", "train_loss", "in_sample_error")
SGD_VARIANTS = {
    "heavy-ball": dict(momentum=0.9),
    "dampened": dict(momentum=0.5, dampening=0.3),
    "nesterov": dict(momentum=0.9, nesterov=True),
}


def _sgd(lr, **kw):
    return functools.partial(torch.optim.SGD, lr=lr, **kw)


def test_zero_momentum_is_the_gd_solve():
    # momentum 0 runs GD's arithmetic (dampening is then unused, as in torch): the curves equal the GD
    # solve exactly; lr != h at momentum 0 is GD at step lr on the time axis t = step * h.
    p = Problem(d=16, kappa=1.5, kappa_star=0.5, alpha=1.0, Delta=0.1, lam=0.05)
    kw = dict(steps=30, d_eff=16, samples=2, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # d_eff = 16 is small on purpose
        gd = solve_dmft(p, h=0.05, **kw)
        for optim in ("gd", _sgd(0.05, momentum=0.0, dampening=0.5)):
            same = solve_dmft(p, h=0.05, optim=optim, **kw)
            for k in CURVE_KEYS:
                np.testing.assert_array_equal(same[k], gd[k])
        slow_clock = solve_dmft(p, h=0.025, optim=_sgd(0.05), **kw)
    for k in CURVE_KEYS:
        np.testing.assert_array_equal(slow_clock[k], gd[k])
    np.testing.assert_allclose(slow_clock["t"], gd["t"] / 2)


@pytest.mark.parametrize("variant", SGD_VARIANTS)
def test_momentum_response_equals_finite_differences_of_the_process(variant):
    # The tangent (dW and the momentum buffer's tangent dV) must be the exact derivative of the process
    # w.r.t. the probes injected into Gamma (U held fixed, memory included): R_kj = <P_j, dS_k>/D against
    # central finite differences, error O(eps^2) ~ 1e-8 relative, as for GD in test_dmft.py.
    q = Problem(d=10, kappa=0.7, kappa_star=0.4, alpha=1.0, Delta=0.2, lam=0.1)
    sgd = {"lr": 0.04, "dampening": 0.0, "nesterov": False, **SGD_VARIANTS[variant]}
    R, fd = finite_difference_response(q, steps=15, channels=2, shift=1e-5, **sgd)
    assert torch.allclose(R, fd, rtol=0, atol=1e-7 * float(fd.abs().max()))
    # the response differs from GD's at the same lr (the buffer's memory is in it)
    gd, _ = finite_difference_response(q, steps=15, channels=2, shift=1e-5, lr=0.04)
    assert float((gd - fd).abs().max()) > 0.1 * float(fd.abs().max())


@pytest.mark.parametrize("variant", ["heavy-ball", "nesterov"])
def test_large_alpha_momentum_reduces_to_population_momentum(variant):
    # alpha -> infinity: the DMFT with momentum must follow the population flow run by torch.optim.SGD with
    # the same momentum, teacher and initialisation (seed + b). The gap is the noise field U ~ alpha^(-1/2):
    # tolerance 3e-3 at alpha = 1e6, as for GD (test_dmft.py; GD measured 6e-4 there).
    p = Problem(d=24, kappa=1.5, kappa_star=0.5, alpha=1e6, Delta=0.3, lam=0.05)
    steps, samples, seed, h = 80, 2, 3, 0.02
    optim = by_name("gd", h, **SGD_VARIANTS[variant])
    pops = [solve_population(p, h=h, steps=steps, d_eff=24, seed=seed + b, optim=optim,
                             record_steps=np.arange(steps + 1)) for b in range(samples)]
    gd_pops = [solve_population(p, h=h, steps=steps, d_eff=24, seed=seed + b, record_steps=np.arange(steps + 1))
               for b in range(samples)]
    th = solve_dmft(p, h=h, steps=steps, d_eff=24, samples=samples, seed=seed, optim=optim)
    for k in CURVE_KEYS:
        pop = np.mean([x[k] for x in pops], 0)
        assert np.max(np.abs(th[k] / pop - 1)) < 3e-3, k
        assert np.max(np.abs(np.mean([x[k] for x in gd_pops], 0) / pop - 1)) > 0.1, k  # momentum matters here


def test_windows_carry_the_momentum_buffer():
    # The buffer and its tangent are part of the frozen state between windows: marching, 7-step windows
    # and the whole-trajectory iteration reach the same fixed point. The whole-trajectory iteration stops at
    # tol 5e-7 (momentum's round-off floor is near 2e-7); measured curve gap 8e-7, bound 1e-5.
    p = Problem(d=24, kappa=1.2, kappa_star=0.4, alpha=0.7, Delta=0.1, lam=0.02)
    kw = dict(h=0.02, steps=60, d_eff=24, samples=2, tol=1e-9, max_iter=300, optim="momentum")
    full = solve_dmft(p, window=None, **{**kw, "tol": 5e-7})
    for window in (1, 7):
        th = solve_dmft(p, window=window, **kw)
        for k in CURVE_KEYS:
            np.testing.assert_allclose(th[k], full[k], rtol=1e-5, err_msg=f"window={window}, {k}")


@pytest.mark.parametrize("optim, match", [
    (functools.partial(torch.optim.Adagrad, lr=0.05), r"optim=Adagrad is not followed"),
    (by_name("gd", 0.05, weight_decay=1e-3), r"optim=SGD\(weight_decay=0.001\) is not followed"),
    (_sgd(0.05, momentum=1.0), r"optim momentum=1.0 is out of range: allowed \[0, 1\)"),
    (_sgd(0.05, momentum=0.5, dampening=1.5), r"optim dampening=1.5 is out of range: allowed \[0, 1\]"),
    (_sgd(0.05, momentum=-0.1), r"optim=.* cannot be built: Invalid momentum value"),
])
def test_optimisers_the_dmft_cannot_follow_are_refused_by_name(optim, match):
    with pytest.raises(ValueError, match=match):
        solve_dmft(Problem(d=16, kappa=1.0, kappa_star=0.5, alpha=1.0), h=0.05, steps=4, d_eff=24, samples=1, optim=optim)


def test_sgd_settings_reads_plain_sgd_only():
    one = [torch.zeros(1, requires_grad=True)]
    assert sgd_settings(by_name("momentum", 0.05)(one)) == {"lr": 0.05, "momentum": 0.9, "dampening": 0.0,
                                                              "nesterov": False}
    assert sgd_settings(by_name("adam", 0.05)(one)) is None
    assert sgd_settings(by_name("gd", 0.05, weight_decay=0.1)(one)) is None
    two_groups = torch.optim.SGD([{"params": one}, {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1}],
                                 lr=0.05)
    assert sgd_settings(two_groups) is None


def _run(make_optimizer, batch_size=None) -> RunInfo:
    p = Problem(d=16, kappa=1.0, kappa_star=0.5, alpha=1.0, Delta=0.0, lam=0.05, sigma0=1.0)
    return RunInfo(problem=p, h=0.05, steps=4, schedule=[0, 2, 4], spectrum_steps=[], seeds=None,
                   s_star=torch.eye(16), make_optimizer=make_optimizer, batch_size=batch_size)


def test_app_component_follows_momentum_and_names_what_it_cannot():
    momentum = by_name("momentum", 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pred = DMFT(d_eff=24, samples=1).compute(_run(momentum))
    assert pred.summary["describes_run"] is True and pred.summary["drawn_instead_of"] is None
    plain = DMFT(d_eff=24, samples=1).compute(_run(by_name("gd", 0.05)))
    assert pred.curves["mse"][4] != plain.curves["mse"][4]  # momentum's curve, not GD's
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        batched = DMFT(d_eff=24, samples=1).compute(_run(momentum, batch_size=64))  # n = 256: fraction 1/4
    assert batched.summary["describes_run"] is True and batched.summary["batch_fraction"] == 0.25
    assert batched.curves["mse"][4] != pred.curves["mse"][4]
    with pytest.warns(RuntimeWarning, match=r"uses Adagrad: the theory/dmft curve drawn is GD at step h=0.05 with "
                                            r"its minibatches of 64, not this run's"):
        pred = DMFT(d_eff=24, samples=1).compute(_run(functools.partial(torch.optim.Adagrad, lr=0.05), batch_size=64))
    assert pred.summary["describes_run"] is False and pred.summary["drawn_instead_of"] == "Adagrad"


MOMENTUM_CASE = dict(kappa=1.5, kappa_star=0.5, alpha=1.0, Delta=0.0, lam=0.05)


def test_momentum_dmft_matches_goe_simulation_small_d():
    # d = 48, 3 seeds, h = 0.02, 250 steps (t <= 5): the simulation's mean carries 1-4 % relative s.e.m.
    # (mean over t) and GD's own O(1/d) GOE gap at d = 48 is 0.6-6.8 % mean (docs/validation.md); d_eff = 48
    # with 8 samples adds its jackknife error (1 % mse, 5 % late train loss). Measured 3.9 % (mse) and
    # 6.5 % (train loss). Tolerance: mean 12 %; GD's curve (measured > 150 % away) must be > 5x further.
    gaps = goe_gaps(Problem(d=48, **MOMENTUM_CASE), h=0.02, steps=250, seeds=3, d_eff=48, samples=8,
                    make_optimizer=by_name("momentum", 0.02))
    assert_dmft_follows(gaps, {"mse": 0.12, "train_loss": 0.12}, further=5)


@pytest.mark.slow
def test_momentum_dmft_matches_goe_simulation_d64():
    # d = 64, 4 seeds (relative s.e.m. 1.2-1.4 % mean over t), d_eff = 64 with 8 samples (jackknife
    # 0.9 % mse, 3.8 % train loss): GD's own GOE gap at d = 64 is 0.3-2.1 % mean (docs/validation.md).
    # Measured 3.1 % (mse) and 5.1 % (train loss); tolerance 6 % mse, 8 % train loss; GD's curve
    # (mean gap > 100 %) must be at least 10x further away.
    gaps = goe_gaps(Problem(d=64, **MOMENTUM_CASE), h=0.02, steps=300, seeds=4, d_eff=64, samples=8,
                    make_optimizer=by_name("momentum", 0.02))
    assert_dmft_follows(gaps, {"mse": 0.06, "train_loss": 0.08}, further=10)
