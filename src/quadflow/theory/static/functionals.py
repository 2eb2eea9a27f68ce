"""The functionals of the static equations at one noise level (docs/theory.md section 5).

At fixed ``xi`` (variance of the effective noise) the long-time solution is
``S_inf = eta(Y)`` with ``Y = S* + sqrt(xi) G`` (spectrum ``rho``, Hilbert
transform ``H``; :mod:`quadflow.theory.static.spectral`) and
``eta(x) = (x - q) 1[x > b]``, ``b = max(q, omega)``. Everything the solver
(:mod:`quadflow.theory.static.longtime`) and the thresholds
(:mod:`quadflow.theory.static.thresholds`) need is a tail integral of ``rho``
from the cut ``b``, so a :class:`Functionals` precomputes the tails of
``1, x, x^2, H, H x`` once per ``(kappa_star, xi)`` and :func:`functionals_at`
caches it.

All quantities are per ``d`` in the normalisation of docs/theory.md section 1
(``S* = W*^T W* / m*`` with mean eigenvalue 1): ``mse = |S_inf - S*|_F^2 / d``,
``trace = Tr(S_inf) / d``, ``P = int_b rho`` (fraction of non-zero eigenvalues).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from quadflow.theory.static.spectral import SpectralTable


class Functionals:
    """Spectral table at one ``xi`` with the tail integrals the static equations need.

    Args:
        kappa_star: teacher width ratio ``m*/d`` (> 0).
        xi: noise variance (> 0).

    Attributes:
        table: the :class:`~quadflow.theory.static.spectral.SpectralTable` of ``rho``.
    """

    def __init__(self, kappa_star: float, xi: float) -> None:
        self.table = SpectralTable(kappa_star, xi)
        t = self.table
        self._tails = t.tails(np.vstack([np.ones_like(t.x), t.x, t.x ** 2, t.hilbert, t.hilbert * t.x]))
        self._omega: dict[float, float] = {}

    def omega(self, kappa: float) -> float:
        """Upper-``kappa`` quantile of ``rho`` (the rank cut; ``-inf`` for ``kappa >= 1``); cached."""
        if kappa >= 1:
            return -math.inf
        if kappa not in self._omega:
            self._omega[kappa] = self.table.upper_quantile(kappa)
        return self._omega[kappa]

    def values(self, q, kappa: float) -> dict:
        """The functionals at soft thresholds ``q`` (scalar or shape (N,); treated as (N,)).

        Returns a dict of arrays of shape (N,): ``mse`` (``1 + 1/kappa_star + Q + 4 xi I``,
        ``Q = int_b rho (q^2 - x^2)``), ``I`` (``int_b rho H (x - q)``), ``P``
        (``int_b rho``, the rank fraction), ``trace`` (``int_b rho (x - q)``); and the
        float ``omega`` (rank cut for ``kappa``). ``b = max(q, omega)``.
        """
        q = np.atleast_1d(np.asarray(q, dtype=float))
        omega = self.omega(kappa)
        b = np.maximum(q, omega)
        P, M1, M2, J0, J1 = self._tails(b)
        ks, xi = self.table.kappa_star, self.table.xi
        I = J1 - q * J0
        mse = 1.0 + 1.0 / ks + q ** 2 * P - M2 + 4.0 * xi * I
        return {"mse": mse, "I": I, "P": P, "trace": M1 - q * P, "omega": omega}


@lru_cache(maxsize=4096)
def functionals_at(kappa_star: float, xi: float) -> Functionals:
    """The (cached) :class:`Functionals` at ``(kappa_star, xi)``; ``functionals_at.cache_clear()`` empties it."""
    return Functionals(kappa_star, xi)
