"""Thresholds from the static equations against the reference points of docs/theory.md section 6.

The closed forms below are written out independently (scipy quadrature of the
semicircle), not imported from the solver.
"""
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq, minimize_scalar

from quadflow.theory.thresholds import interpolation_threshold, perfect_recovery_threshold


def _semicircle(s, v):
    return np.sqrt(max(4 * v - s * s, 0.0)) / (2 * np.pi * v)


def _upper_cut(mass, v):
    """w with sigma_v([w, 2 sqrt v]) = mass."""
    top = 2 * math.sqrt(v)
    return brentq(lambda w: quad(_semicircle, w, top, args=(v,))[0] - mass, -top, top)


def _risk_over_xi(c, kappa, ks):
    """M(c) of docs/theory.md section 6 (lam -> 0+, xi -> 0 with q = c sqrt(xi))."""
    v, top = 1 - ks, 2 * math.sqrt(1 - ks)
    w0 = -math.inf if kappa >= 1 else _upper_cut((kappa - ks) / (1 - ks), v)
    lo = max(c, w0)
    bulk = quad(lambda s: (s - c) ** 2 * _semicircle(s, v), lo, top)[0] if lo < top else 0.0
    return 2 * ks - ks ** 2 + ks * c ** 2 + v * bulk


def _closed_form_lam0plus(kappa, ks):
    return minimize_scalar(lambda c: _risk_over_xi(c, kappa, ks), bounds=(0, 3), method="bounded",
                           options={"xatol": 1e-10}).fun / 2


def _conjecture_unregularised(kappa, ks):
    """Conjecture 15: min(kappa - kappa^2/2, a_inter), kappa_star < kappa < 1."""
    w = _upper_cut((kappa - ks) / (1 - ks), 1.0)
    a_inter = ks - ks ** 2 / 2 + (1 - ks) ** 2 / 2 * quad(lambda x: x * x * _semicircle(x, 1.0), max(0, w), 2)[0]
    return min(kappa - kappa ** 2 / 2, a_inter)


def test_interpolation_threshold_reference_points():
    # The authors' solver: "about 0.295" and "0.324" (three digits quoted: tol 1.5e-3).
    assert interpolation_threshold(0.6, 0.2, Delta=0.5) == pytest.approx(0.295, abs=1.5e-3)
    assert interpolation_threshold(1.5, 0.5, Delta=0.5) == pytest.approx(0.324, abs=1.5e-3)


@pytest.mark.parametrize("ks", [0.3, 0.5, 2.0])
def test_interpolation_threshold_limits_in_delta(ks):
    # kappa >= 1: Delta -> 0 gives (1/2 + ks - ks^2/2)/2 (ks < 1) or 1/2 (ks >= 1); the
    # limit itself is taken by extrapolation in sqrt(xi), accurate to ~1e-7, and small
    # Delta approaches it slowly (measured ~ Delta^(1/3): 1e-2 at Delta = 1e-4). Large Delta decreases to 1/4 (Delta = 100:
    # within 3e-3).
    low = (0.5 + ks - ks ** 2 / 2) / 2 if ks < 1 else 0.5
    assert interpolation_threshold(1.5, ks, Delta=0.0) == pytest.approx(low, abs=1e-6)
    small = [interpolation_threshold(1.5, ks, Delta=x) for x in (1e-2, 1e-4, 1e-6)]
    assert abs(small[0] - low) > abs(small[1] - low) > abs(small[2] - low)  # ~ Delta^(1/3)
    assert small[2] == pytest.approx(low, abs=3e-3)
    large = [interpolation_threshold(1.5, ks, Delta=x) for x in (10.0, 100.0)]
    assert large[0] > large[1] > 0.25 and large[1] == pytest.approx(0.25, abs=3e-3)


@pytest.mark.parametrize("kappa, ks", [(0.5, 0.3), (0.7, 0.3), (0.2, 0.1), (0.6, 0.5), (1.5, 0.5)])
def test_lam0plus_threshold_equals_the_minimised_risk(kappa, ks):
    # Two routes to the same limit: the solver follows the interpolating branch to
    # xi -> 0; the closed form minimises M(c). Quadrature and extrapolation: 1e-6.
    assert perfect_recovery_threshold(kappa, ks) == pytest.approx(_closed_form_lam0plus(kappa, ks), abs=1e-6)


@pytest.mark.parametrize("ks", [0.1, 0.3, 0.5])
def test_lam0plus_threshold_bayes_optimal_at_kappa_star_and_flat_in_kappa(ks):
    # kappa = kappa_star: the Bayes-optimal kappa_star - kappa_star^2/2 (Maillard et al. 2024).
    assert perfect_recovery_threshold(ks, ks) == pytest.approx(ks - ks ** 2 / 2, abs=1e-6)
    # kappa >= 1: no kappa dependence at all (same equations: no rank restriction).
    values = [perfect_recovery_threshold(k, ks) for k in (1.0, 1.3, 3.0)]
    assert max(values) - min(values) < 1e-9
    # it increases with kappa up to kappa_c(ks) ~ 0.30, 0.54, 0.70 and is constant beyond,
    # where it equals the nuclear-norm threshold of PSD sensing (4 digits quoted).
    nuclear = {0.1: 0.1576, 0.3: 0.3272, 0.5: 0.4222}[ks]
    kappa_c = {0.1: 0.30, 0.3: 0.54, 0.5: 0.70}[ks]
    assert values[0] == pytest.approx(nuclear, abs=1e-4)
    assert perfect_recovery_threshold(kappa_c + 0.03, ks) == pytest.approx(values[0], abs=1e-6)
    below = perfect_recovery_threshold(kappa_c - 0.1, ks)
    assert perfect_recovery_threshold(ks + 0.05, ks) < below < values[0] - 1e-4


@pytest.mark.parametrize("kappa, ks", [(0.5, 0.3), (0.7, 0.3), (0.35, 0.3), (0.6, 0.2), (0.9, 0.5)])
def test_unregularised_threshold_is_the_papers_conjecture(kappa, ks):
    # The q = 0 branch's xi -> 0 limit reproduces Conjecture 15 (abs 1e-6, extrapolation).
    assert perfect_recovery_threshold(kappa, ks, unregularized=True) == pytest.approx(
        _conjecture_unregularised(kappa, ks), abs=1e-6)


def test_unregularised_flow_needs_more_data_than_small_regularisation():
    # The implicit bias of the lam = 0 flow costs samples: strictly above the lam -> 0+ value
    # for kappa_star < kappa (equal at kappa = kappa_star).
    for kappa in (0.4, 0.7, 1.5):
        assert perfect_recovery_threshold(kappa, 0.3, unregularized=True) > perfect_recovery_threshold(kappa, 0.3) + 1e-3


def test_no_perfect_recovery_below_the_teacher_width():
    assert perfect_recovery_threshold(0.2, 0.3) == math.inf
    assert perfect_recovery_threshold(0.2, 0.3, unregularized=True) == math.inf


@pytest.mark.parametrize("call, name", [
    (lambda: interpolation_threshold(0.0, 0.3), "kappa"),
    (lambda: interpolation_threshold(1.0, -0.3), "kappa_star"),
    (lambda: interpolation_threshold(1.0, 0.3, Delta=-1.0), "Delta"),
    (lambda: perfect_recovery_threshold(-1.0, 0.3), "kappa"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
