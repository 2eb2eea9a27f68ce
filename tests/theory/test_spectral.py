"""Free convolution MP(1/kappa_star) + semicircle(xi): exact moments, the xi -> 0 limit, sampled matrices."""
import numpy as np
import pytest
from scipy.integrate import quad

from quadflow.theory.static import spectral

# (kappa_star, xi): two intervals (kappa_star < 1, small xi), one interval, kappa_star >= 1,
# a tiny xi (broadened atom of width ~1e-3), and points just on either side of where the
# support of kappa_star = 0.5 splits (xi_c ~ 0.03516).
CASES = [(0.5, 0.01), (0.2, 0.001), (0.3, 0.05), (1.0, 0.1), (2.0, 0.5), (0.5, 1e-6),
         (0.1, 1e-4), (3.0, 2.0), (0.5, 0.0345), (0.5, 0.0360)]


@pytest.mark.parametrize("kappa_star, xi", CASES)
def test_moments_are_exact(kappa_star, xi):
    # Exact: mass 1, mean 1 (Tr S*/d and Tr G = 0), variance 1/kappa_star + xi (free
    # cumulants add); and for the Hilbert transform int rho H = 0, int rho H x = 1/2
    # (antisymmetrisation of the double integral). Quadrature is spectral away from
    # the split; 1e-9 leaves room for the two points next to it.
    t = spectral.SpectralTable(kappa_star, xi)
    one = np.ones_like(t.x)
    assert t.integrate(lambda x: one) == pytest.approx(1.0, abs=1e-9)
    assert t.integrate(lambda x: x) == pytest.approx(1.0, abs=1e-9)
    assert t.integrate(lambda x: (x - 1) ** 2) == pytest.approx(1 / kappa_star + xi, abs=1e-8)
    assert np.sum(t.weight * t.hilbert) == pytest.approx(0.0, abs=1e-9)
    assert np.sum(t.weight * t.hilbert * t.x) == pytest.approx(0.5, abs=1e-9)


def test_support_splits_for_small_xi_only():
    # kappa_star < 1: the atom at 0 of MP becomes a separate bump for small xi and merges
    # with the bulk as xi grows; kappa_star >= 1 always has one interval.
    assert spectral.support(0.5, 0.01).shape == (2, 2)
    assert spectral.support(0.5, 0.05).shape == (1, 2)
    assert spectral.support(2.0, 1e-4).shape == (1, 2)


@pytest.mark.parametrize("kappa_star, xi", [(0.5, 0.01), (2.0, 0.5), (0.3, 0.05)])
def test_density_vanishes_like_a_square_root_at_every_edge(kappa_star, xi):
    # rho(e +- eps) ~ c sqrt(eps): the ratio at eps and 4 eps is 1/2 (to O(eps)).
    for k, e in enumerate(spectral.edges(kappa_star, xi)):
        inward = 1.0 if k % 2 == 0 else -1.0
        r1, r4 = spectral.density(np.array([e + inward * 1e-8, e + inward * 4e-8]), kappa_star, xi)
        assert r1 > 0 and r1 / r4 == pytest.approx(0.5, abs=1e-3)
        outside = spectral.density(np.array([e - inward * 1e-6]), kappa_star, xi)[0]
        assert outside == 0.0


def test_xi_to_zero_is_marchenko_pastur():
    # At xi = 1e-8 the bulk density differs from MP by O(xi) away from the edges and the
    # broadened atom (width 4 sqrt(xi (1 - kappa_star)) ~ 3e-4) carries mass 1 - kappa_star.
    ks, xi = 0.4, 1e-8
    lo, hi = (1 - ks ** -0.5) ** 2, (1 + ks ** -0.5) ** 2
    x = np.linspace(lo, hi, 50)[1:-1]
    assert np.allclose(spectral.density(x, ks, xi), spectral.density(x, ks, 0.0), rtol=1e-5, atol=1e-7)
    bump = spectral.support(ks, xi)[0]
    assert bump[1] - bump[0] < 1e-3
    assert 1 - spectral.cdf(np.array([0.5 * (bump[1] + lo)]), ks, xi)[0] == pytest.approx(ks, abs=1e-9)


def _sample(kappa_star, xi, d, seed):
    rng = np.random.default_rng(seed)
    m = round(kappa_star * d)
    w = rng.standard_normal((m, d))
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    goe = (a + a.T) / np.sqrt(2)  # off-diagonal variance 1/d, semicircle on [-2, 2]
    return np.linalg.eigvalsh(w.T @ w / m + np.sqrt(xi) * goe)


@pytest.mark.parametrize("kappa_star, xi", [(0.5, 0.01), (2.0, 0.5)])
def test_cdf_and_hilbert_match_sampled_matrices(kappa_star, xi):
    # d = 1000: the empirical CDF of one sample is within O(1/d) of its limit in the bulk
    # and O(d^{-2/3}) at the edges; 0.01 is about 5 times the largest deviation seen.
    ev = _sample(kappa_star, xi, 1000, seed=1)
    grid = np.linspace(ev[0] - 0.1, ev[-1] + 0.1, 400)
    empirical = np.searchsorted(ev, grid) / ev.size
    assert np.max(np.abs(empirical - spectral.cdf(grid, kappa_star, xi))) < 0.01
    # Hilbert transform outside the support = (1/d) sum 1/(x - lambda), a smooth linear
    # statistic with O(1/d) fluctuations: relative 1e-2.
    top = spectral.edges(kappa_star, xi)[-1]
    x = np.array([top + 0.5, top + 2.0, spectral.edges(kappa_star, xi)[0] - 0.5])
    emp = np.mean(1.0 / (x[:, None] - ev[None, :]), axis=1)
    assert np.allclose(spectral.hilbert(x, kappa_star, xi), emp, rtol=1e-2)


@pytest.mark.parametrize("kappa_star, xi", [(0.5, 0.01), (2.0, 0.5), (0.5, 0.0352)])
def test_bulk_hilbert_is_the_principal_value_integral(kappa_star, xi):
    # Kramers-Kronig: Re g = p.v. int rho(y)/(x - y) dy, here by scipy's Cauchy-weight
    # quadrature of the density (an independent route; its error is ~1e-8).
    x = np.array([0.1, 0.7, 1.9, 3.5])
    expected = np.array([-sum(quad(lambda y: float(spectral.density(np.array([y]), kappa_star, xi)[0]),
                                   lo, hi, weight="cauchy", wvar=x0, limit=400)[0]
                              for lo, hi in spectral.support(kappa_star, xi)) for x0 in x])
    assert np.allclose(spectral.hilbert(x, kappa_star, xi), expected, atol=1e-6)


def test_upper_quantile_inverts_the_tail_mass():
    # Exact identity up to quadrature accuracy (1e-12), including a quantile inside the
    # broadened atom (mass 0.55 > kappa_star = 0.5).
    for ks, xi, mass in [(0.5, 0.01, 0.3), (0.5, 0.01, 0.55), (2.0, 0.5, 0.9), (0.3, 1e-6, 0.3001)]:
        w = spectral.upper_quantile(mass, ks, xi)
        assert 1 - spectral.cdf(np.array([w]), ks, xi)[0] == pytest.approx(mass, abs=1e-12)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="kappa_star"):
        spectral.density(np.array([1.0]), -1.0, 0.1)
    with pytest.raises(ValueError, match="xi"):
        spectral.SpectralTable(0.5, -0.1)
