"""solve_population runs its own loop (no quadflow.train) and gives the training loop's values.

Two references: the values the training loop (quadflow.train's Trainer, Evaluator and collect) gave for the
same call, stored below (float64, seed 3), and the flow integrated here in numpy from its gradient
``dL/dW = 2 W (S - S*) + 2 lam W`` with each optimiser's update written out.
"""
import numpy as np
import pytest

from quadflow import Problem, Ratios
from quadflow.data import Seeds, initial_weights, teacher_matrix
from quadflow.theory import PopulationResult, solve_population

P = Problem(d=10, kappa=0.8, kappa_star=0.4, alpha=1.0, Delta=0.2, lam=0.05, sigma0=1.0)
H, STEPS, RECORDS = 0.05, 12, [0, 1, 5, 12]
# solve_population(P, h=H, steps=STEPS, seed=3, optim=..., record_steps=RECORDS) by the training loop
TRAINING_LOOP = {
    "gd": {"mse": [4.598409704312218, 2.7738719070062654, 0.39000880086346845, 0.03476795602638165],
           "trace": [0.9367786089480109, 0.8630246701772574, 1.183500862144561, 1.276913530005217],
           "rank_fraction": [0.8, 0.8, 0.8, 0.8]},
    "momentum": {"mse": [4.598409704312218, 2.7738719070062654, 1.5115715374695684, 1.000462491223075],
                 "trace": [0.9367786089480109, 0.8630246701772574, 1.0946033069694034, 0.9417392470508776],
                 "rank_fraction": [0.8, 0.8, 0.7, 0.7]},
    "adam": {"mse": [4.598409704312218, 4.248086342574232, 2.935748809043898, 1.2256002935628791],
             "trace": [0.9367786089480109, 0.9252725923523579, 0.929031871013317, 1.0779065767881186],
             "rank_fraction": [0.8, 0.8, 0.8, 0.8]},
    "rk4": {"mse": [4.598409704312218, 2.8000876257947844, 0.4069222164987064, 0.04101451937042967],
            "trace": [0.9367786089480109, 0.9206455094752402, 1.1947468235902798, 1.2799108869412241],
            "rank_fraction": [0.8, 0.8, 0.8, 0.8]},
}


def _gradient(w: np.ndarray, s_star: np.ndarray, lam: float) -> np.ndarray:
    s = w.T @ w / w.shape[0]
    return 2 * w @ (s - s_star) + 2 * lam * w


def _numpy_flow(optim: str, p: Problem, seed: int) -> dict:
    """The population flow at the recorded steps, integrated in numpy (torch's SGD, Adam and RK4 written out)."""
    seeds = Seeds.from_master(seed)
    s_star, w = teacher_matrix(p, seeds.teacher).numpy(), initial_weights(p, seeds.init).numpy()
    grad = lambda v: _gradient(v, s_star, p.lam)  # noqa: E731
    buf, m1, m2 = None, np.zeros_like(w), np.zeros_like(w)
    rows = []
    for step in range(STEPS + 1):
        if step in RECORDS:
            s = w.T @ w / p.m
            mse = float(np.sum((s - s_star) ** 2)) / p.d
            trace = float(np.trace(s)) / p.d
            rows.append({"mse": mse, "test_error": 2 * mse, "train_loss": (2 * mse + p.Delta) / 4,
                         "in_sample_error": mse / 2, "trace": trace, "loss_reg": (2 * mse + p.Delta) / 4 + p.lam * trace,
                         "rank_fraction": float(np.sum(np.linalg.eigvalsh(s) > 1e-2)) / p.d})
        g = grad(w)
        if optim == "gd":
            w = w - H * g
        elif optim == "momentum":  # torch.optim.SGD(momentum=0.9): buf = g, then 0.9 buf + g
            buf = g if buf is None else 0.9 * buf + g
            w = w - H * buf
        elif optim == "adam":  # torch.optim.Adam defaults: betas (0.9, 0.999), eps 1e-8
            k = step + 1
            m1, m2 = 0.9 * m1 + 0.1 * g, 0.999 * m2 + 0.001 * g * g
            w = w - H * (m1 / (1 - 0.9 ** k)) / (np.sqrt(m2 / (1 - 0.999 ** k)) + 1e-8)
        else:  # classical RK4 on dW/dt = -grad
            k1 = -g
            k2 = -grad(w + 0.5 * H * k1)
            k3 = -grad(w + 0.5 * H * k2)
            k4 = -grad(w + H * k3)
            w = w + H / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("optim", ["gd", "momentum", "adam", "rk4"])
def test_population_equals_the_training_loop_and_the_numpy_flow(optim):
    res = solve_population(P, h=H, steps=STEPS, seed=3, optim=optim, record_steps=RECORDS, spectrum_steps=[STEPS])
    assert isinstance(res, PopulationResult)
    np.testing.assert_array_equal(res.step, RECORDS)
    np.testing.assert_allclose(res.t, H * np.array(RECORDS), rtol=1e-15)
    for key, values in TRAINING_LOOP[optim].items():
        np.testing.assert_allclose(res[key], values, rtol=1e-12, atol=1e-15, err_msg=key)
    flow = _numpy_flow(optim, P, seed=3)
    for key, values in flow.items():
        np.testing.assert_allclose(getattr(res, key), values, rtol=1e-9, err_msg=key)
    assert len(res.spectrum) == 1 and res.spectrum[0].shape == (P.d,)
    np.testing.assert_allclose(res.spectrum_t, [H * STEPS])
    assert np.sum(res.spectrum[0] > 1e-2) / P.d == res.rank_fraction[-1]
    if optim == "gd":  # the training loop's largest eigenvalue of S at the last step
        assert res.spectrum[0].max() == pytest.approx(6.160644909351735, rel=1e-12)


def test_population_default_schedule_is_log_spaced_and_ratios_need_d_eff():
    res = solve_population(P, h=H, steps=30)
    assert res.step[0] == 0 and res.step[1] == 1 and res.step[-1] == 30 and np.all(np.diff(res.step) > 0)
    with pytest.raises(ValueError, match=r"^d_eff=None is out of range with a Ratios: allowed an integer >= 2"):
        solve_population(P.ratios, h=H, steps=3)
    at_d = solve_population(P.ratios, h=H, steps=STEPS, d_eff=P.d, seed=3, record_steps=RECORDS)
    np.testing.assert_array_equal(at_d.mse, solve_population(P, h=H, steps=STEPS, seed=3, record_steps=RECORDS).mse)
    bigger = solve_population(Ratios(kappa=0.8, kappa_star=0.4, alpha=1.0), h=H, steps=2, d_eff=20)
    assert bigger.spectrum == [] and bigger.mse.shape == (3,)


def test_a_diverging_population_flow_raises_naming_the_step():
    with pytest.raises(RuntimeError, match=r"population flow diverged at step \d+ .*use a smaller step h \(now 50\)"):
        solve_population(P, h=50.0, steps=20)
