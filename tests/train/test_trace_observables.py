"""The long-time observables ``trace = Tr S / d`` and ``loss_reg = train_loss + lam trace``.

``loss_reg`` is the objective GD descends per unit of ``m d`` (docs/theory.md section 2:
``L = m d train_loss + lam |W|_F^2`` and ``|W|_F^2 = m Tr S``). Checked here: that identity in the
simulation (against the objective's own value, to fp64 round-off) and in the population flow, its descent under
GD at a small step, the DMFT's trace against the GOE simulation and an exact identity at step 0, and the
long-time theory's trace and loss_reg against converged GD.
"""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from quadflow import Problem, Simulation, simulate
from quadflow.models import SecondLayerQuadratic
from quadflow.theory.dmft import solve_dmft
from quadflow.theory.population import solve_population
from quadflow.train import Callback

sys.path.insert(0, str(Path(__file__).parents[1] / "theory"))  # the long-time test's points and helpers
from test_longtime_vs_simulation import BIAS, H, POINTS, STEPS, realised_theory  # noqa: E402

P_REG = Problem(d=16, kappa=1.5, kappa_star=0.5, alpha=1.0, lam=0.05, Delta=0.1)


class ObjectiveLog(Callback):
    """The objective's value per unit of ``m d`` at every evaluation."""

    def __init__(self):
        self.values = []

    def on_evaluate(self, trainer, loss, stats):
        self.values.append(loss / trainer.objective.scale)


def test_loss_reg_is_the_objective_per_md_and_descends_under_gd():
    # fp64, h = 0.01 (h lambda_max ~ 0.2, far inside GD's descent range h lambda_max < 2): L decreases at every
    # step; the only slack is round-off, 1e-12 of L. loss_reg and L / (m d) are the same number computed two ways
    # (Tr S from S = W^T W / m, and |W|^2 inside the objective): equal to 1e-12 relative.
    steps, log = 300, ObjectiveLog()
    sim = Simulation(P_REG, h=0.01, precision="fp64", callbacks=[log])
    records = []
    sim.run(steps, record_steps=range(steps + 1), on_record=records.append)
    loss_reg = np.array([r["loss_reg"] for r in records])
    np.testing.assert_allclose(loss_reg, log.values, rtol=1e-12)
    assert sim.guard.last == pytest.approx(loss_reg[-1], rel=1e-12)  # the divergence guard's L
    w = sim.student.W.detach()
    assert records[-1]["trace"] == pytest.approx(float(torch.sum(w * w)) / (P_REG.m * P_REG.d), rel=1e-12)
    assert np.all(np.diff(loss_reg) <= 1e-12 * loss_reg[0])
    assert loss_reg[-1] < 0.5 * loss_reg[0]  # it did descend, not only not rise
    pop = solve_population(P_REG, h=0.01, steps=steps, record_steps=np.arange(steps + 1))
    np.testing.assert_allclose(pop["loss_reg"], pop["train_loss"] + P_REG.lam * pop["trace"], rtol=1e-12)
    assert np.all(np.diff(pop["loss_reg"]) <= 1e-12 * pop["loss_reg"][0])


def test_students_without_S_get_no_trace():
    # SecondLayerQuadratic has no S(): its |theta|^2 also counts the second layer, so Tr S / d is not its penalty.
    run = simulate(Problem(d=8, kappa=1.0, kappa_star=0.5, alpha=1.0, lam=0.05), steps=2,
                   student=SecondLayerQuadratic, record_steps=[0, 2])
    assert "train_loss" in run and "trace" not in run and "loss_reg" not in run


def test_dmft_trace_at_step_0_and_its_jackknife_are_exact():
    # Sample b shares its teacher and W0 with simulate at d = d_eff and seed + b, so at step 0 the DMFT's trace is
    # the mean of those simulations' traces (to round-off). The trace is a plain mean over samples: its jackknife
    # error is the standard error of that mean, std(ddof=1) / sqrt(B), at every step (to round-off).
    d_eff, samples, seed, steps = 24, 3, 7, 20
    th = solve_dmft(P_REG, h=0.05, steps=steps, d_eff=d_eff, samples=samples, seed=seed)
    q = Problem(d=d_eff, kappa=P_REG.kappa, kappa_star=P_REG.kappa_star, alpha=P_REG.alpha, lam=P_REG.lam,
                Delta=P_REG.Delta)
    start = [simulate(q, steps=0, seed=seed + b, precision="fp64", record_steps=[0])["trace"][0]
             for b in range(samples)]
    assert th["trace"][0] == pytest.approx(np.mean(start), rel=1e-12)
    assert th["stderr"]["trace"][0] == pytest.approx(np.std(start, ddof=1) / np.sqrt(samples), rel=1e-9)
    np.testing.assert_allclose(th["loss_reg"], th["train_loss"] + P_REG.lam * th["trace"], rtol=1e-12)


def test_dmft_trace_matches_goe_simulation():
    # The tolerance of tests/theory/test_dmft_vs_simulation.py for mse at the same sizes (d = 24, 8 seeds; DMFT
    # d_eff 48, 4 samples): whole-curve relative error mean < 12 %, max < 25 %. Measured at this lam > 0 point:
    # trace mean 1.0 %, max 3.8 % (its fluctuations are the teacher's Tr S* / d, 4 % s.e.m.); loss_reg mean 3.0 %,
    # max 11 % (its train loss part; mse here: mean 6.7 %, max 17 %).
    p = Problem(d=24, kappa=0.5, kappa_star=0.3, alpha=1.5, Delta=0.5, lam=0.1)
    steps = 120
    th = solve_dmft(p, h=0.05, steps=steps, d_eff=48, samples=4, seed=1000)
    sims = [simulate(p, h=0.05, steps=steps, seed=s, design="goe", precision="fp64",
                     record_steps=np.arange(steps + 1)) for s in range(8)]
    for k in ("trace", "loss_reg"):
        rel = np.abs(th[k] / np.mean([s[k] for s in sims], 0) - 1)
        assert rel.mean() < 0.12 and rel.max() < 0.25, (k, rel.mean(), rel.max())


def test_longtime_trace_and_loss_reg_match_converged_gd():
    # The tolerance of tests/theory/test_longtime_vs_simulation.py (3 SE + B/d relative, d = 24, 4 seeds) at its
    # first point. lam = 0.1 converges exponentially: after STEPS // 2 the relative change over the last 10 % of
    # the steps is 2e-7 (checked below 1e-3 as there). Measured: trace +1.0 % (SE 3.0 %, the teacher's Tr S* / d
    # fluctuating from seed to seed), loss_reg +1.0 % (SE 2.9 %), against a tolerance of 15 %.
    params, d, seeds, steps = POINTS[0], 24, 4, STEPS // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # realised_theory records the validity warnings itself
        theory = realised_theory(params, d)
    assert theory.loss_reg == pytest.approx(theory.train_loss + params["lam"] * theory.trace, rel=1e-15)
    finals = {"trace": [], "loss_reg": []}
    for seed in range(seeds):
        run = simulate(Problem(d=d, **params), h=H, steps=steps, seed=seed, precision="fp64", design="goe",
                       record_steps=np.array([0, steps * 9 // 10, steps]))
        for k, v in finals.items():
            assert abs(run[k][-1] - run[k][-2]) < 1e-3 * run[k][-1], (k, seed)
            v.append(run[k][-1])
    for k, v in finals.items():
        mean, se, th = np.mean(v), np.std(v, ddof=1) / np.sqrt(seeds), getattr(theory, k)
        assert abs(mean - th) <= 3 * se + BIAS / d * th, (k, mean, th, se)


def test_static_excess_is_each_source_minus_the_static_value():
    from quadflow.observables import static_excess

    row = {"t": 1.0, "sim/loss_reg": 0.5, "sim/loss_reg_se": 0.01, "sim/mse": 0.3, "sim/rank_fraction": 0.4,
           "theory/dmft/loss_reg": 0.45, "theory/longtime/loss_reg": 0.4, "replicas/0/loss_reg": 0.51,
           "sim/trace": float("nan")}
    out = static_excess(row, {"loss_reg": 0.4, "mse": 0.2, "trace": 1.0, "rank_fraction": 0.5})
    assert out == pytest.approx({"sim/loss_reg_excess": 0.1, "sim/loss_reg_excess_se": 0.01,
                                 "sim/mse_excess": 0.1, "theory/dmft/loss_reg_excess": 0.05})
