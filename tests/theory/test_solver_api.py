"""The solvers' common surface: Ratios or Problem first, dataclass results that answer mapping access, and
solve_dmft's ``method=``."""
import warnings

import numpy as np
import pytest

from quadflow import Problem
from quadflow.theory import (Curves, DMFTResult, PopulationResult, longtime_curve, solve_dmft, solve_longtime,
                             solve_population)
from quadflow.theory.results import CURVES

P = Problem(d=40, kappa=0.8, kappa_star=0.4, alpha=1.0, Delta=0.2, lam=0.05)
SMALL = dict(h=0.05, steps=8, d_eff=24, samples=2)
DMFT_KEYS = {"t", "step", *CURVES, "stderr", "spectrum", "spectrum_t", "converged", "iterations", "residuals",
             "windows", "passes", "damping", "method", "d_eff", "samples", "wall_time"}


def _same_curves(a: Curves, b: Curves) -> None:
    for key in ("t", "step", *CURVES):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def test_dmft_result_is_a_dataclass_with_mapping_access_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        th = solve_dmft(P, return_kernels=True, spectrum_steps=[8], **SMALL)
        plain = solve_dmft(P, **SMALL)
        assert isinstance(th, DMFTResult) and isinstance(th, Curves)
        assert set(th.keys()) == DMFT_KEYS | {"kernels"} and set(plain) == DMFT_KEYS and len(plain) == len(DMFT_KEYS)
        assert th["mse"] is th.mse and th["t"] is th.t and th.mse.shape == th.t.shape == (9,)
        assert "kernels" in th and "kernels" not in plain and plain.get("kernels") is None
        assert th["kernels"]["C_e"].shape == (9, 9) and plain.get("missing", 1) == 1
        assert "rank_fraction" not in th and th.get("rank_fraction") is None
        with pytest.raises(KeyError):
            plain["kernels"]
        assert {**plain}.keys() == dict(plain.items()).keys() == set(DMFT_KEYS)
        assert th["converged"] is True and th["stderr"]["mse"].shape == (9,) and len(th["spectrum"]) == 1
        pop = solve_population(P, h=0.05, steps=4, d_eff=12)
    assert isinstance(pop, PopulationResult) and isinstance(pop, Curves)
    assert set(pop) == {"t", "step", *CURVES, "rank_fraction", "spectrum", "spectrum_t"}
    assert pop["rank_fraction"] is pop.rank_fraction and pop["spectrum"] == []


def test_problem_and_ratios_give_the_same_results():
    _same_curves(solve_dmft(P, **SMALL), solve_dmft(P.ratios, **SMALL))
    _same_curves(solve_population(P, h=0.05, steps=4, d_eff=12), solve_population(P.ratios, h=0.05, steps=4, d_eff=12))
    r = Problem(d=64, kappa=1.5, kappa_star=0.5, alpha=1.0, lam=0.1).ratios
    scalars = dict(alpha=1.0, kappa=1.5, kappa_star=0.5, lam=0.1, Delta=0.0)
    by_scalars = solve_longtime(**scalars)
    for params in (r, r.at(64)):
        sol = solve_longtime(params)
        assert (sol.mse, sol.train_loss, sol.q, sol.xi, sol.branch) == \
               (by_scalars.mse, by_scalars.train_loss, by_scalars.q, by_scalars.xi, by_scalars.branch)
    values = [1.0, 1.5]
    curve = longtime_curve(r, "alpha", values)
    for old in (longtime_curve("alpha", values, kappa=1.5, kappa_star=0.5, lam=0.1),
                longtime_curve(vary="alpha", values=values, kappa=1.5, kappa_star=0.5, lam=0.1)):
        np.testing.assert_array_equal(curve["mse"], old["mse"])
    np.testing.assert_array_equal(longtime_curve(r, vary="lam", values=[0.1, 0.2])["mse"],
                                  longtime_curve("lam", [0.1, 0.2], alpha=1.0, kappa=1.5, kappa_star=0.5)["mse"])
    with pytest.raises(ValueError, match=r"^pass either a Ratios or the parameters alpha, kappa, kappa_star, lam, "
                                         r"Delta, not both \(got lam with it\)$"):
        solve_longtime(r, lam=0.2)
    with pytest.raises(ValueError, match=r"not both \(got kappa with it\)"):
        longtime_curve(r, "alpha", values, kappa=1.0)


def test_method_march_and_windows():
    march = solve_dmft(P, **SMALL)
    assert march.method == "march" and march.passes == 1
    _same_curves(solve_dmft(P, method="march", **SMALL), march)
    _same_curves(solve_dmft(P, method="march", window=1, **SMALL), march)
    by_window = solve_dmft(P, window=4, **SMALL)
    windows = solve_dmft(P, method="windows", window=4, **SMALL)
    assert by_window.method == windows.method == "windows"
    assert [(w["start"], w["stop"]) for w in windows.windows] == [(0, 4), (4, 8), (8, 9)]
    _same_curves(by_window, windows)
    default = solve_dmft(P, method="windows", **SMALL)  # 25 steps a window: one window here
    whole = solve_dmft(P, method="windows", window=None, **SMALL)
    assert [(w["start"], w["stop"]) for w in default.windows] == [(w["start"], w["stop"]) for w in whole.windows] == \
           [(0, 9)]
    for curve in CURVES:  # the iterated fixed point meets the marched one to its tolerance
        np.testing.assert_allclose(default[curve], march[curve], rtol=1e-3, atol=1e-6, err_msg=curve)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="newton"), r"^method='newton' is not a DMFT solve method: allowed 'march' or 'windows'$"),
    (dict(method="march", window=5), r"^window=5 does not apply to method='march'"),
    (dict(window=True), r"^window must be an integer >= 1 or None, got True$"),
    (dict(method="windows", window=0), r"^window must be an integer >= 1 or None, got 0$"),
])
def test_a_bad_method_or_window_is_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        solve_dmft(P, **SMALL, **kwargs)
    assert "\n" not in str(err.value)
