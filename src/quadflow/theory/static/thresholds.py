"""Interpolation and perfect-recovery thresholds from the static equations (docs/theory.md section 6).

Everything here is computed from the functionals of the static equations
(:mod:`quadflow.theory.static.functionals`: ``mse(q, xi)`` and ``I(q, xi)`` on the
free-convolution spectrum), not from closed forms; the closed forms quoted in
docs/theory.md section 6 are what the tests compare with. Thresholds are sample
ratios ``alpha = n / d^2``.

- Interpolation (``lam = 0``, ``Delta > 0``): on the ``q = 0`` branch
  ``beta = 1 - I(0, xi)/alpha`` reaches 0, i.e. ``alpha = I(0, xi)`` together with
  ``alpha = (mse(0, xi) + Delta/2)/(2 xi)``: one equation in ``xi``.
- Perfect recovery, ``lam -> 0+``: the interpolating branch (``beta = 0``,
  ``q > 0``) at ``Delta = 0``: ``alpha = I(q, xi) = mse(q, xi)/(2 xi)``; as
  ``xi -> 0`` (``q ~ sqrt(xi)``) the smallest such alpha (or the ``q -> 0``
  boundary value, when smaller) tends to the threshold.
- Perfect recovery, ``lam = 0`` exactly: the ``q = 0`` branch at ``Delta = 0``,
  ``alpha = mse(0, xi)/(2 xi)`` as ``xi -> 0``, capped by the dimension of PSD
  matrices of rank ``<= m`` over ``d^2`` (``kappa - kappa^2/2``; 1/2 for ``kappa >= 1``),
  above which the interpolating flow has no other interpolator than ``S*`` to go to
  (the cap binds only for ``kappa`` close to ``kappa_star``).

The ``xi -> 0`` limits are taken by Richardson extrapolation in ``sqrt(xi)``
(the corrections are a series in ``sqrt(xi)``, the width of the noise bulk)
from ``xi = 1e-4, 1e-6, 1e-8``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from quadflow.problem import check_domain
from quadflow.theory.static.functionals import functionals_at

_XI0 = (1e-4, 1e-6, 1e-8)  # xi sequence for the xi -> 0 limits (ratio 100: sqrt ratio 10)


def _richardson(f) -> float:
    """``lim_{xi -> 0} f(xi)`` assuming ``f = f0 + a sqrt(xi) + b xi + ...``."""
    f1, f2, f3 = (f(x) for x in _XI0)
    g1, g2 = (10 * f2 - f1) / 9, (10 * f3 - f2) / 9  # sqrt(xi) term removed
    return (100 * g2 - g1) / 99  # xi term removed


def _q0(kappa: float, kappa_star: float, xi: float) -> tuple[float, float]:
    """``(mse, I)`` on the ``q = 0`` branch at ``xi``."""
    val = functionals_at(kappa_star, xi).values(0.0, kappa)
    return float(val["mse"][0]), float(val["I"][0])


def parameter_count(kappa: float) -> float:
    """Degrees of freedom of a rank-``kappa d`` PSD matrix over d^2: ``kappa - kappa^2/2`` (1/2 for kappa >= 1)."""
    return kappa - kappa ** 2 / 2 if kappa < 1 else 0.5


def interpolation_threshold(kappa: float, kappa_star: float, Delta: float = 0.0) -> float:
    """Sample ratio below which the ``lam = 0`` flow interpolates (train loss -> 0).

    Args:
        kappa, kappa_star: width ratios (> 0).
        Delta: label-noise variance (>= 0); ``Delta = 0`` returns the ``Delta -> 0+`` limit.
    Returns:
        ``alpha_inter`` (largest root of the interpolation condition; ``inf`` if none).
    """
    check_domain(kappa=kappa, kappa_star=kappa_star, Delta=Delta)
    if Delta == 0:
        return _richardson(lambda xi: _q0(kappa, kappa_star, xi)[1])

    def h(u: float) -> float:
        xi = math.exp(u)
        mse, I = _q0(kappa, kappa_star, xi)
        return math.log(I) - math.log((mse + Delta / 2) / (2 * xi))

    us = np.linspace(math.log(1e-9), math.log(1e3 * (1 + Delta)), 80)
    hs = np.array([h(u) for u in us])
    roots = [brentq(h, us[i], us[i + 1], xtol=1e-13)
             for i in np.nonzero(np.sign(hs[:-1]) != np.sign(hs[1:]))[0]]
    if not roots:
        return math.inf
    return max(_q0(kappa, kappa_star, math.exp(u))[1] for u in roots)


def _interpolating_alpha(kappa: float, kappa_star: float, xi: float) -> float:
    """Smallest ``alpha`` on the interpolating branch at ``xi`` (Delta = 0).

    Candidates: ``alpha = I(q, xi)`` at the roots ``q > 0`` of ``I = mse/(2 xi)``, and
    the boundary ``q -> 0`` where ``alpha = mse(0, xi)/(2 xi)`` (the minimum of the
    risk over ``c = q/sqrt(xi) >= 0`` can sit at ``c = 0``, e.g. at ``kappa = kappa_star``).
    """
    s = functionals_at(kappa_star, xi)
    boundary = float(s.values(0.0, kappa)["mse"][0]) / (2 * xi)
    qs = math.sqrt(xi) * np.logspace(-3, 1.5, 400)
    val = s.values(qs, kappa)
    phi = val["I"] - val["mse"] / (2 * xi)
    idx = np.nonzero(np.sign(phi[:-1]) != np.sign(phi[1:]))[0]

    def f(v: float) -> float:
        w = s.values(math.exp(v), kappa)
        return float(w["I"][0] - w["mse"][0] / (2 * xi))

    alphas = [boundary]
    for i in idx:
        v = brentq(f, math.log(qs[i]), math.log(qs[i + 1]), xtol=1e-14)
        alphas.append(float(s.values(math.exp(v), kappa)["I"][0]))
    return min(alphas)


def perfect_recovery_threshold(kappa: float, kappa_star: float, unregularized: bool = False) -> float:
    """Smallest alpha with ``mse -> 0`` at ``Delta = 0``.

    Args:
        kappa, kappa_star: width ratios (> 0).
        unregularized: False for the ``lam -> 0+`` limit (the interpolating branch),
            True for the ``lam = 0`` flow from the N(0, 1/m) initialisation (the
            ``q = 0`` branch).
    Returns:
        the threshold; ``inf`` when ``kappa < kappa_star`` (no perfect recovery).
    """
    check_domain(kappa=kappa, kappa_star=kappa_star)
    if kappa < kappa_star:
        return math.inf
    if unregularized:
        return min(parameter_count(kappa), _richardson(lambda xi: _q0(kappa, kappa_star, xi)[0] / (2 * xi)))
    return _richardson(lambda xi: _interpolating_alpha(kappa, kappa_star, xi))
