"""Free convolution of Marchenko-Pastur with a semicircle (docs/theory.md section 5).

``rho`` is the limiting eigenvalue density of ``Y = S* + sqrt(xi) G`` where
``S* = W*^T W* / m*`` (Marchenko-Pastur with ratio ``1/kappa_star``, mean
eigenvalue 1) and ``G`` is GOE (semicircle on [-2, 2]), i.e. MP(1/kappa_star)
free-convolved with a semicircle of variance ``xi``. Its Stieltjes transform
``g(z) = int rho(y) / (z - y) dy`` solves the cubic

    xi g^3 - (z + kappa_star xi) g^2 + (1 - kappa_star + kappa_star z) g - kappa_star = 0,

equivalently ``z(g) = 1/g + kappa_star/(kappa_star - g) + xi g`` (the inverse of
``g``: the MP R-transform plus ``xi g``). On the real axis, inside the support
the cubic has a complex-conjugate pair and ``rho = |Im g| / pi``,
``H = Re g`` (the Hilbert transform, p.v. ``int rho(y)/(x - y) dy``).

The support edges are the critical values of ``z(g)`` on the real line (roots of
a quartic in ``g``); with two critical points the support is one interval,
with four it is two (for ``kappa_star < 1`` and small ``xi`` the MP atom at 0
becomes a small bump of mass ``1 - kappa_star``). For ``xi = 0`` the law is
Marchenko-Pastur itself (atom at 0 of mass ``1 - kappa_star`` when
``kappa_star < 1``, reported separately as ``atom``).

Integrals against ``rho`` use, on each interval ``[e0, e1]``, the substitution
``x = (e0 + e1)/2 - (e1 - e0)/2 cos(theta)``: the square-root edges make
``rho(x) dx/dtheta`` a smooth even function of ``theta``, so a cosine series
from midpoint samples converges spectrally, and integrals from any cut ``b``
to the top of the support are closed-form sums (``SpectralTable``). Where the
support is about to split or has just split, the interval is cut at the dip and
graded maps cluster the nodes there (see ``_pieces``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import dct

from quadflow.problem import check_domain

_REAL_TOL = 1e-9  # relative imaginary part below which a quartic root counts as real


def _check(kappa_star: float, xi: float) -> None:
    check_domain(kappa_star=kappa_star)
    if not (np.isfinite(xi) and xi >= 0):
        raise ValueError(f"xi must be a finite number >= 0, got {xi!r}")


def _mp_edges(kappa_star: float) -> tuple[float, float]:
    r = 1.0 / np.sqrt(kappa_star)
    return (1.0 - r) ** 2, (1.0 + r) ** 2


def _z_of_g(g, kappa_star: float, xi: float):
    return 1.0 / g + kappa_star / (kappa_star - g) + xi * g


def support(kappa_star: float, xi: float) -> np.ndarray:
    """Support intervals of ``rho``, shape ``(k, 2)`` with ``k`` in {1, 2}, sorted.

    For ``xi > 0`` these are the sorted critical values of ``z(g)``; for
    ``xi = 0`` the Marchenko-Pastur bulk (the atom at 0 is not an interval).
    """
    _check(kappa_star, xi)
    if xi == 0:
        return np.array([_mp_edges(kappa_star)])
    ks = kappa_star
    # z'(g) = 0  <=>  xi g^2 (ks - g)^2 + ks g^2 - (ks - g)^2 = 0
    roots = np.roots([xi, -2 * xi * ks, xi * ks ** 2 + ks - 1, 2 * ks, -ks ** 2])
    real = roots[np.abs(roots.imag) <= _REAL_TOL * np.maximum(1.0, np.abs(roots))].real
    values = np.sort(_z_of_g(real, ks, xi))
    if values.size not in (2, 4):  # pragma: no cover - guards numerical breakdown
        raise RuntimeError(f"found {values.size} support edges at kappa_star={ks}, xi={xi}")
    return values.reshape(-1, 2)


def edges(kappa_star: float, xi: float) -> np.ndarray:
    """Flat sorted array of support edges (length 2 or 4)."""
    return support(kappa_star, xi).ravel()


def stieltjes(x, kappa_star: float, xi: float) -> np.ndarray:
    """``g(x - i0)`` on real points ``x`` (any shape), the physical root of the cubic.

    Inside the support ``Im g = -pi rho(x) < 0``; outside, ``g`` is real and equal to
    the Hilbert transform. Vectorised: one batched 3x3 eigenvalue solve plus
    Newton polishing. Requires ``xi > 0``.
    """
    _check(kappa_star, xi)
    if xi == 0:
        raise ValueError("xi must be > 0 for stieltjes (use the Marchenko-Pastur formulas)")
    x = np.asarray(x, dtype=float)
    flat = x.ravel()
    roots = _cubic_roots(flat, kappa_star, xi)
    inside = np.abs(roots.imag).max(axis=1) > 1e-12 * np.maximum(1.0, np.abs(roots).max(axis=1))
    out = np.empty(flat.shape, dtype=complex)
    # inside: the member of the conjugate pair with Im g < 0
    idx = np.argmin(roots.imag, axis=1)
    out[inside] = roots[inside, idx[inside]]
    if np.any(~inside):
        out[~inside] = _physical_real_root(flat[~inside], roots[~inside].real, kappa_star, xi)
    out = _polish(out, flat, kappa_star, xi)
    inside_now = out.imag < 0
    out[inside_now] = out[inside_now].real - 1j * np.abs(out[inside_now].imag)
    return out.reshape(x.shape)


def _cubic_roots(x: np.ndarray, ks: float, xi: float) -> np.ndarray:
    """All three roots of the cubic at each real ``x``, shape ``(len(x), 3)``."""
    comp = np.zeros((x.size, 3, 3))
    comp[:, 0, 0] = (x + ks * xi) / xi
    comp[:, 0, 1] = -(1.0 - ks + ks * x) / xi
    comp[:, 0, 2] = ks / xi
    comp[:, 1, 0] = 1.0
    comp[:, 2, 1] = 1.0
    return np.linalg.eigvals(comp)


def _polish(g: np.ndarray, x: np.ndarray, ks: float, xi: float, steps: int = 2) -> np.ndarray:
    """Newton steps on the cubic (fixes the eigen-solver's loss of accuracy for small xi)."""
    for _ in range(steps):
        p = ((xi * g - (x + ks * xi)) * g + (1 - ks + ks * x)) * g - ks
        dp = (3 * xi * g - 2 * (x + ks * xi)) * g + (1 - ks + ks * x)
        ok = np.abs(dp) > 1e-14 * (1 + np.abs(g))
        g = np.where(ok, g - p / np.where(ok, dp, 1.0), g)
    return g


def _physical_real_root(x: np.ndarray, real_roots: np.ndarray, ks: float, xi: float) -> np.ndarray:
    """Outside the support, the real root equal to ``int rho(y)/(x-y) dy``.

    The integral is estimated by quadrature (accurate to ~1e-3 even near an edge,
    where the competing roots merge anyway) and snapped to the nearest real root.
    """
    table = SpectralTable(ks, xi)
    estimate = table.integrate(lambda y: 1.0 / (x[:, None] - y[None, :]))
    pick = np.argmin(np.abs(real_roots - estimate[:, None]), axis=1)
    return real_roots[np.arange(x.size), pick]


def density(x, kappa_star: float, xi: float) -> np.ndarray:
    """``rho(x)`` on real points (any shape); for ``xi = 0`` the MP bulk density (no atom)."""
    _check(kappa_star, xi)
    x = np.asarray(x, dtype=float)
    if xi == 0:
        lo, hi = _mp_edges(kappa_star)
        inside = (x > lo) & (x < hi)
        xs = np.where(inside, x, 1.0)
        return np.where(inside, kappa_star * np.sqrt(np.clip((hi - xs) * (xs - lo), 0, None))
                        / (2 * np.pi * xs), 0.0)
    out = np.zeros(x.shape)
    inside = _in_support(x, support(kappa_star, xi))
    if np.any(inside):
        out[inside] = -stieltjes(x[inside], kappa_star, xi).imag / np.pi
    return out


def hilbert(x, kappa_star: float, xi: float) -> np.ndarray:
    """Hilbert transform ``H(x) = p.v. int rho(y)/(x - y) dy`` = Re g on real points ``x`` (any shape)."""
    _check(kappa_star, xi)
    return stieltjes(x, kappa_star, xi).real


def _in_support(x: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    inside = np.zeros(x.shape, dtype=bool)
    for lo, hi in intervals:
        inside |= (x > lo) & (x < hi)
    return inside


def atom(kappa_star: float, xi: float) -> float:
    """Mass of the atom at 0: ``1 - kappa_star`` for ``xi = 0, kappa_star < 1``, else 0."""
    _check(kappa_star, xi)
    return max(0.0, 1.0 - kappa_star) if xi == 0 else 0.0


_GRADED = 0.02  # a dip (or gap) narrower than this fraction of the interval gets graded maps


def _pieces(kappa_star: float, xi: float, intervals: np.ndarray) -> list[tuple[float, float, str]]:
    """Integration pieces ``(lo, hi, map)`` covering the support.

    Where the support is about to split (a complex critical value of ``z(g)`` close to the
    real axis inside an interval: the density has a near-zero dip, a cusp ``|x - x_c|^(1/3)``
    at the split itself) or has just split (a narrow gap), the interval is cut there and
    the map grades the nodes towards the cut (``x - x_c ~ theta^6``), which keeps the
    cosine series converging fast; elsewhere the plain cosine map fits square-root edges.
    """
    ks = kappa_star
    roots = np.roots([xi, -2 * xi * ks, xi * ks ** 2 + ks - 1, 2 * ks, -ks ** 2])
    crit = _z_of_g(roots[np.abs(roots.imag) > _REAL_TOL * np.maximum(1.0, np.abs(roots))], ks, xi)
    pieces = []
    for k, (lo, hi) in enumerate(intervals):
        grade_lo = k > 0 and lo - intervals[k - 1, 1] < _GRADED * (hi - lo)
        grade_hi = k + 1 < len(intervals) and intervals[k + 1, 0] - hi < _GRADED * (hi - lo)
        dips = [c.real for c in crit if lo < c.real < hi and abs(c.imag) < _GRADED * (hi - lo)]
        cuts = [lo, *sorted(set(dips)), hi]
        for j in range(len(cuts) - 1):
            graded_lo = grade_lo if j == 0 else True
            graded_hi = grade_hi if j == len(cuts) - 2 else True
            kind = {(False, False): "cos", (False, True): "low", (True, False): "high",
                    (True, True): "both"}[(graded_lo, graded_hi)]
            pieces.append((cuts[j], cuts[j + 1], kind))
    return pieces


def _map(kind: str, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fraction ``w(theta)`` of the piece and ``dw/dtheta``; ``w`` is a polynomial in cos(theta).

    ``cos``: square-root behaviour at both ends; ``low``/``high``: graded (sixth-order
    contact) at the upper/lower end; ``both``: graded at both ends.
    """
    c, sn = np.cos(theta), np.sin(theta)
    if kind == "cos":
        return (1 - c) / 2, sn / 2
    if kind == "low":
        return 1 - ((1 + c) / 2) ** 3, 1.5 * ((1 + c) / 2) ** 2 * sn
    if kind == "high":
        return ((1 - c) / 2) ** 3, 1.5 * ((1 - c) / 2) ** 2 * sn
    u = (1 - c) / 2  # both: w = u^3 (10 - 15 u + 6 u^2), smoothstep of order 5
    return u ** 3 * (10 - 15 * u + 6 * u ** 2), 30 * u ** 2 * (1 - u) ** 2 * sn / 2


def _inverse_map(kind: str, w: np.ndarray) -> np.ndarray:
    """``theta`` with ``w(theta) = w`` (``w`` clipped to [0, 1])."""
    w = np.clip(w, 0.0, 1.0)
    if kind == "cos":
        return np.arccos(1 - 2 * w)
    if kind == "low":
        return np.arccos(np.clip(2 * np.cbrt(1 - w) - 1, -1, 1))
    if kind == "high":
        return np.arccos(np.clip(1 - 2 * np.cbrt(w), -1, 1))
    theta = np.arccos(1 - 2 * w)  # Newton on the monotone smoothstep, from the cos guess
    for _ in range(60):
        f, df = _map("both", theta)
        theta = np.clip(theta - np.where(df > 1e-300, (f - w) / np.where(df > 1e-300, df, 1), 0), 0, np.pi)
    return theta


@dataclass(frozen=True)
class _Interval:
    lo: float
    hi: float
    kind: str  # the map, see _map
    x: np.ndarray  # nodes in (lo, hi), at theta_j = pi (j + 1/2)/N
    weight: np.ndarray  # rho(x) dx/dtheta * pi/N: midpoint-rule weights of rho dx
    g: np.ndarray  # complex g(x - i0) at the nodes


class SpectralTable:
    """``rho`` and ``H`` sampled on the support, for integrals ``int_b^inf rho(x) f(x) dx``.

    Args:
        kappa_star: teacher width ratio (> 0).
        xi: semicircle variance (> 0).
        n_nodes: nodes per piece; doubled (up to ``max_nodes``) until the cosine
            coefficients of ``rho dx/dtheta`` have decayed to ``tol`` of the piece's mass.

    Attributes:
        intervals: support intervals, shape (k, 2).
        x, weight, rho, hilbert: all nodes concatenated, each of shape (N_total,);
            ``sum(weight * f(x))`` approximates ``int rho f`` (spectrally accurate for
            smooth f; ``rho`` has mass 1 and mean 1, so ``weight`` sums to 1).
    """

    def __init__(self, kappa_star: float, xi: float, n_nodes: int = 96,
                 max_nodes: int = 3072, tol: float = 1e-11) -> None:
        _check(kappa_star, xi)
        if xi == 0:
            raise ValueError("xi must be > 0 for SpectralTable")
        self.kappa_star, self.xi = float(kappa_star), float(xi)
        self.intervals = support(kappa_star, xi)
        self._parts = [self._interval(lo, hi, kind, n_nodes, max_nodes, tol)
                       for lo, hi, kind in _pieces(kappa_star, xi, self.intervals)]
        self.x = np.concatenate([p.x for p in self._parts])
        self.weight = np.concatenate([p.weight for p in self._parts])
        g = np.concatenate([p.g for p in self._parts])
        self.rho = -g.imag / np.pi
        self.hilbert = g.real
        self._mass: Tails | None = None

    def _interval(self, lo: float, hi: float, kind: str, n: int, max_nodes: int, tol: float) -> _Interval:
        while True:
            theta = np.pi * (np.arange(n) + 0.5) / n
            w, dw = _map(kind, theta)
            x = lo + (hi - lo) * w
            g = stieltjes_inside(x, self.kappa_star, self.xi)
            f = -g.imag / np.pi * (hi - lo) * dw
            coef = _cosine_coefficients(f[None, :])[0]
            tail = np.abs(coef[-max(4, n // 8):]).max()
            if tail <= tol * abs(coef[0]) or n >= max_nodes:
                return _Interval(lo, hi, kind, x, f * np.pi / n, g)
            n *= 2

    def integrate(self, f) -> np.ndarray:
        """``int rho(x) f(x) dx`` over the whole support: shape (...) where ``f`` maps the
        nodes, shape (N,), to values of shape (..., N)."""
        return np.sum(f(self.x) * self.weight, axis=-1)

    def tails(self, funcs: np.ndarray) -> "Tails":
        """Precomputed tail integrals ``b -> int_b^inf rho funcs_i`` of ``funcs`` (values at
        ``self.x``, shape (F, N_total)); see :class:`Tails`."""
        return Tails(self, funcs)

    def cdf_upper(self, b) -> np.ndarray:
        """``int_b^inf rho`` (the upper tail mass, in [0, 1]) at cuts ``b`` (scalar or (B,)): shape (B,)."""
        if self._mass is None:
            self._mass = self.tails(np.ones((1, self.x.size)))
        return self._mass(b)[0]

    def upper_quantile(self, mass: float) -> float:
        """``omega`` with ``int_omega^inf rho = mass`` (0 < mass < 1).

        Bracketed on a coarse grid of each piece, then Newton (derivative ``-rho``)
        safeguarded by bisection, to ~1e-15.
        """
        if not 0 < mass < 1:
            raise ValueError(f"mass must be in (0, 1), got {mass!r}")
        grid = np.sort(np.concatenate([lo + (hi - lo) * _map(p.kind, np.linspace(0, np.pi, 17))[0]
                                       for p in self._parts for lo, hi in [(p.lo, p.hi)]]))
        tail = self.cdf_upper(grid)  # non-increasing from 1 to 0
        i = int(np.clip(np.searchsorted(-tail, -mass), 1, grid.size - 1))
        a, b = grid[i - 1], grid[i]
        fa, fb = tail[i - 1] - mass, tail[i] - mass
        x = a + (b - a) * fa / (fa - fb) if fa != fb else 0.5 * (a + b)
        for _ in range(100):
            f = self.cdf_upper(x)[0] - mass
            if f > 0:
                a = x
            else:
                b = x
            rho = -stieltjes_inside(np.array([x]), self.kappa_star, self.xi).imag[0] / np.pi
            xn = x + f / rho if rho > 0 else 0.5 * (a + b)
            if not a < xn < b:
                xn = 0.5 * (a + b)
            if abs(xn - x) <= 1e-15 * max(1.0, abs(x)) or b - a <= 1e-15 * max(1.0, abs(x)):
                return xn
            x = xn
        return x


class Tails:
    """``b -> int_b^inf rho f_i`` for fixed integrands, from per-piece cosine coefficients."""

    def __init__(self, table: SpectralTable, funcs: np.ndarray) -> None:
        self._pieces = []
        start = 0
        for part in table._parts:
            n = part.x.size
            coef = _cosine_coefficients(funcs[:, start:start + n] * (part.weight * n / np.pi))
            start += n
            self._pieces.append((part, coef))
        self.n_funcs = funcs.shape[0]

    def __call__(self, cuts) -> np.ndarray:
        """Tail integrals at cuts ``b`` (B,): shape (F, B)."""
        cuts = np.atleast_1d(np.asarray(cuts, dtype=float))
        out = np.zeros((self.n_funcs, cuts.size))
        for part, coef in self._pieces:
            below, inside = cuts <= part.lo, (cuts > part.lo) & (cuts < part.hi)
            out[:, below] += np.pi * coef[:, :1]
            if np.any(inside):
                tb = _inverse_map(part.kind, (cuts[inside] - part.lo) / (part.hi - part.lo))
                k = np.arange(1, coef.shape[1])
                basis = np.concatenate([(np.pi - tb)[None, :], -np.sin(np.outer(k, tb)) / k[:, None]])
                out[:, inside] += coef @ basis
        return out


def stieltjes_inside(x: np.ndarray, kappa_star: float, xi: float) -> np.ndarray:
    """``g(x - i0)`` for points known to lie inside the support (no outside branch logic)."""
    roots = _cubic_roots(x, kappa_star, xi)
    g = roots[np.arange(x.size), np.argmin(roots.imag, axis=1)]
    g = _polish(g, x, kappa_star, xi)
    return g.real - 1j * np.abs(g.imag)


def _cosine_coefficients(f: np.ndarray) -> np.ndarray:
    """Coefficients ``a_k`` with ``f(theta_j) = sum_k a_k cos(k theta_j)`` at midpoints.

    ``f`` shape (F, N) sampled at ``theta_j = pi (j + 1/2)/N``; returns (F, N).
    """
    coef = dct(f, type=2, axis=-1) / f.shape[-1]
    coef[..., 0] *= 0.5
    return coef


def cdf(x, kappa_star: float, xi: float) -> np.ndarray:
    """``P(Y <= x)`` on points ``x`` (any shape), ``xi > 0``."""
    _check(kappa_star, xi)
    x = np.asarray(x, dtype=float)
    table = SpectralTable(kappa_star, xi)
    return 1.0 - table.cdf_upper(x.ravel()).reshape(x.shape)


def upper_quantile(mass: float, kappa_star: float, xi: float) -> float:
    """``omega`` with ``int_omega^inf rho = mass`` (``xi > 0``)."""
    _check(kappa_star, xi)
    return SpectralTable(kappa_star, xi).upper_quantile(mass)
