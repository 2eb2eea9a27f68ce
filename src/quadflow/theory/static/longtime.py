"""Long-time limit of the gradient flow: the static equations of docs/theory.md section 5.

At long times ``S_inf = eta(Y)``, ``Y = S* + sqrt(xi) G`` (spectrum ``rho`` from
:mod:`quadflow.theory.static.spectral`) and ``eta(x) = (x - q) 1[x > b]`` with
``b = max(q, omega)``, ``omega`` the upper-``kappa`` quantile of ``rho`` when
``kappa < 1`` (else ``-inf``). With ``H`` the Hilbert transform of ``rho``:

    I   = int_b rho H (x - q),       Q = int_b rho (q^2 - x^2),
    mse = 1 + 1/kappa_star + Q + 4 xi I

(the functionals of :mod:`quadflow.theory.static.functionals`, all per ``d`` in the
normalisation of docs/theory.md section 1). The fixed point ``(q, xi)`` solves

    F1 = log(mse + Delta/2) - log(2 alpha xi) = 0          (noise level)
    F2 = I/alpha + lam/q - 1 = 0                           (threshold)

For ``lam = 0`` the flow sits on the ``q = 0`` branch (only F1, ``beta = 1 -
I(0, xi)/alpha``) while ``beta >= 0`` (with ``Delta = 0``: wherever it exists);
below the interpolation threshold (``beta < 0`` there) the ``lam -> 0+`` limit is
the interpolating branch ``q > 0, beta = 0`` (F2 with ``lam = 0``), which is what
is returned (flagged ``branch = "interpolating"``). With ``lam = Delta = 0`` beyond the perfect
recovery threshold the solution is ``S_inf = S*`` (``xi = 0``, ``mse = 0``).

Unknowns are solved in ``(u, v) = (log xi, log q)`` by Newton's method with a
finite-difference Jacobian, started from each connected cluster of cells of a
coarse ``(log xi, log q)`` grid where both residuals change sign, so that
separate solutions are all found; when there are several, the one with the
lowest regularised training objective ``train_loss + lam Tr(S_inf)/d`` is
returned and the others are listed in ``alternatives``. If no start converges
(very sharp double-descent peaks), the branch is continued down from a larger
alpha. Curves use pseudo-arclength continuation (:func:`longtime_curve`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from quadflow.problem import Problem, Ratios, as_ratios, check_domain
from quadflow.theory.static.functionals import functionals_at
from quadflow.theory.static.spectral import density
from quadflow.theory.static.thresholds import perfect_recovery_threshold

_TOL = 1e-10  # Newton tolerance on the residuals
_FD = 1e-6  # relative finite-difference step in log xi / log q


@dataclass(frozen=True)
class LongTimeSolution:
    """Long-time limit at one parameter point (docs/theory.md section 5 normalisation).

    Attributes:
        alpha, kappa, kappa_star, lam, Delta: the parameters.
        mse: ``|S_inf - S*|_F^2 / d``.
        test_error: ``2 mse`` (clean test labels); ``test_error_noisy = 2 mse + Delta``.
        train_loss: ``(1/(4n)) sum r^2`` at convergence.
        in_sample_error: ``(1/(4n)) sum (f - f*)^2`` at convergence.
        rank_fraction: fraction of non-zero eigenvalues of ``S_inf``, ``int_b^inf rho``.
        q: soft threshold; xi: variance of the effective noise; beta: ``lam/q`` (or
            ``1 - I/alpha`` on the ``q = 0`` branch).
        omega: upper-``kappa`` quantile of ``rho`` (``-inf`` for ``kappa >= 1``).
        trace: ``Tr(S_inf)/d``.
        branch: ``"regularized"`` (lam > 0), ``"q0"`` (lam = 0 flow above the
            interpolation threshold), ``"interpolating"`` (lam -> 0+ limit below it),
            ``"recovery"`` (``S_inf = S*``).
        converged: whether the residuals fell below tolerance.
        residual: max absolute residual at the returned point.
        alternatives: other solutions found at the same parameters (each a
            ``LongTimeSolution`` with empty ``alternatives``).
        valid: False where the top-m cut binds (``kappa < 1`` and ``omega > q``: the student's rank,
            not the soft threshold, sets which eigen-directions of Y are kept) for a student narrower than
            the teacher (``kappa < kappa_star``): the equations assume GD keeps the top m eigen-directions,
            and GD stops instead at local minima of higher objective (docs/validation.md, "Narrow students:
            the top-m cut"). Where the cut binds with ``kappa_star <= kappa < 1`` the solution is valid for
            GD's seed mean, around which single runs scatter (docs/validation.md, "Where the top-m cut binds
            above the teacher's width").
        validity: one line where the cut binds ("" elsewhere): why ``valid`` is False, or how GD's runs
            scatter around the solution.
    """

    alpha: float
    kappa: float
    kappa_star: float
    lam: float
    Delta: float
    mse: float
    train_loss: float
    in_sample_error: float
    rank_fraction: float
    q: float
    xi: float
    beta: float
    omega: float
    trace: float
    branch: str
    converged: bool
    residual: float
    alternatives: tuple = field(default=(), repr=False)
    valid: bool = True
    validity: str = ""

    @property
    def test_error(self) -> float:
        """``E_x (f - f*)^2 = 2 mse`` (clean test labels)."""
        return 2.0 * self.mse

    @property
    def test_error_noisy(self) -> float:
        """Test error against noisy labels, ``2 mse + Delta``."""
        return 2.0 * self.mse + self.Delta

    @property
    def loss_reg(self) -> float:
        """The objective per unit of ``m d`` at the limit, ``train_loss + lam * trace``: among several solutions
        at the same parameters, the one GD reaches is taken to be the lowest."""
        return self.train_loss + self.lam * self.trace

    @property
    def atom(self) -> float:
        """Mass of the eigenvalue 0 in the spectrum of ``S_inf``: ``1 - rank_fraction``."""
        return 1.0 - self.rank_fraction

    def spectrum(self, s) -> np.ndarray:
        """Density of the non-zero eigenvalues of ``S_inf`` at points ``s`` (any shape).

        The push-forward of ``rho`` by ``eta``: ``rho(s + q)`` for ``s + q > b``, 0
        elsewhere; it integrates to ``rank_fraction`` (the rest is the atom at 0).
        For ``branch == "recovery"`` it is the Marchenko-Pastur density of ``S*``.
        """
        s = np.asarray(s, dtype=float)
        if self.xi == 0:
            return density(s, self.kappa_star, 0.0)
        b = self.q if not np.isfinite(self.omega) else max(self.q, self.omega)
        x = s + self.q
        return np.where((x > b) & (s > 0), density(x, self.kappa_star, self.xi), 0.0)

    def as_dict(self) -> dict:
        """The metrics by name, as the run summary's ``theory/longtime/<metric>`` keys: floats,
        plus ``branch`` (str), ``converged`` and ``valid`` (bool)."""
        keys = ("mse", "test_error", "test_error_noisy", "train_loss", "in_sample_error",
                "rank_fraction", "q", "xi", "beta", "omega", "trace", "loss_reg")
        out = {k: float(getattr(self, k)) for k in keys}
        out.update(branch=self.branch, converged=self.converged, valid=self.valid)
        return out


# ---------------------------------------------------------------------------
# residuals and Newton


@dataclass(frozen=True)
class _Point:
    alpha: float
    kappa: float
    kappa_star: float
    lam: float
    Delta: float


def _residual(pt: _Point, u: float, v: float | None) -> np.ndarray:
    """F1 (and F2 unless on the ``q = 0`` branch, ``v is None``) at ``xi = e^u, q = e^v``."""
    xi = math.exp(u)
    q = 0.0 if v is None else math.exp(v)
    val = functionals_at(pt.kappa_star, xi).values(q, pt.kappa)
    f1 = math.log(max(val["mse"][0] + pt.Delta / 2, 1e-300)) - math.log(2 * pt.alpha * xi)
    if v is None:
        return np.array([f1])
    return np.array([f1, val["I"][0] / pt.alpha + pt.lam / q - 1.0])


def _newton(pt: _Point, y: np.ndarray, q0: bool, max_iter: int = 30) -> tuple[np.ndarray, float]:
    """Damped Newton on (u[, v]); returns the point and its max-abs residual."""
    y = np.array(y, dtype=float)

    def F(z):
        return _residual(pt, z[0], None if q0 else z[1])

    f = F(y)
    for _ in range(max_iter):
        if np.max(np.abs(f)) < _TOL:
            break
        J = np.empty((y.size, y.size))
        for k in range(y.size):
            dz = np.zeros_like(y)
            dz[k] = _FD
            J[:, k] = (F(y + dz) - f) / _FD
        try:
            step = np.linalg.solve(J, -f)
        except np.linalg.LinAlgError:
            break
        step *= min(1.0, 2.0 / max(np.max(np.abs(step)), 1e-300))  # at most a factor e^2 per step
        t = 1.0
        while True:
            fn = F(y + t * step)
            if np.all(np.isfinite(fn)) and np.max(np.abs(fn)) < (1 - 0.25 * t) * np.max(np.abs(f)):
                break
            t *= 0.25
            if t < 1e-3:  # no descent along the Newton direction: a local minimum of |F|
                return y, float(np.max(np.abs(f)))
        y, f = y + t * step, fn
    return y, float(np.max(np.abs(f)))


_U_SPAN = np.log(np.logspace(-6, 2, 21))  # coarse grid in log xi, relative to xi at S = 0


def _grid_starts(pt: _Point, q0: bool) -> list[np.ndarray]:
    """Starting points: cells of a coarse grid where every residual changes sign."""
    us = _U_SPAN + math.log((1 + 1 / pt.kappa_star + pt.Delta / 2) / (2 * pt.alpha))
    if q0:  # 1-d and cheap: reach down to xi ~ 1e-12 (mse ~ (alpha_PR - alpha)^2 near recovery)
        us = np.linspace(us[0] - 6 * math.log(10), us[-1], 41)
        f1 = np.array([_residual(pt, u, None)[0] for u in us])
        idx = np.where(np.sign(f1[:-1]) != np.sign(f1[1:]))[0]
        return [np.array([0.5 * (us[i] + us[i + 1])]) for i in idx]
    qs = np.logspace(math.log10(max(pt.lam, 1e-4)) - 1.5, math.log10(max(pt.lam, 10.0)) + 0.5, 40)
    F1 = np.empty((us.size, qs.size))
    F2 = np.empty_like(F1)
    for i, u in enumerate(us):
        val = functionals_at(pt.kappa_star, math.exp(u)).values(qs, pt.kappa)
        F1[i] = np.log(np.maximum(val["mse"] + pt.Delta / 2, 1e-300)) - math.log(2 * pt.alpha) - u
        F2[i] = val["I"] / pt.alpha + pt.lam / qs - 1.0
    vs = np.log(qs)

    def changes(F):
        corners = np.stack([F[:-1, :-1], F[1:, :-1], F[:-1, 1:], F[1:, 1:]])
        return (corners.min(axis=0) <= 0) & (corners.max(axis=0) >= 0)

    mask = changes(F1) & changes(F2)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    size = np.abs(F1[:-1, :-1]) + np.abs(F2[:-1, :-1])
    starts = []
    for k in range(1, n + 1):  # one start per connected cluster of cells: its best cell
        a, b = np.unravel_index(np.argmin(np.where(labels == k, size, np.inf)), size.shape)
        starts.append(np.array([0.5 * (us[a] + us[a + 1]), 0.5 * (vs[b] + vs[b + 1])]))
    return starts


class LongTimeValidityWarning(RuntimeWarning):
    """A long-time solution outside the validity of the static equations (``LongTimeSolution.valid``)."""


def top_m_cut_binds(kappa: float, q: float, omega: float) -> bool:
    """Whether the rank of the student sets the cut of the eigenvalue map: ``kappa < 1`` and ``omega > q``.

    There the map keeps the top ``kappa`` fraction of the spectrum of Y, a selection among eigen-directions
    that a narrower-than-needed student must make. GD need not make it: stationary points with other
    selections are local minima of the empirical objective, and GD stops at one (docs/validation.md).
    """
    return kappa < 1 and math.isfinite(omega) and omega > q


def _validity(pt: _Point, q: float, omega: float) -> tuple[bool, str]:
    """``(valid, validity)`` of a solution (:class:`LongTimeSolution`): where the top-m cut binds, a student
    narrower than the teacher is flagged (GD does not reach the solution), a wider one is valid for GD's seed
    mean with a note on the scatter of single runs (both measured, docs/validation.md)."""
    if not top_m_cut_binds(pt.kappa, q, omega):
        return True, ""
    where = (f"the top-m cut binds at (alpha, kappa, kappa_star, lam, Delta) = ({pt.alpha:g}, {pt.kappa:g}, "
             f"{pt.kappa_star:g}, {pt.lam:g}, {pt.Delta:g}): omega = {omega:.3g} > q = {q:.3g}")
    if pt.kappa >= pt.kappa_star:
        return True, (f"{where} with kappa_star <= kappa < 1: single GD runs stop at seed-dependent points around "
                      "this solution; it describes their seed mean (measured at points of the paper's Figs. 4, 7 and "
                      "16: within 0.3-7 % in mse and 0.3-3 % in train loss at d = 100-128, each within 1.6 standard "
                      "errors), single runs scatter by 6-12 % in mse at d = 100-128 and 8-28 % at d = 64 "
                      "(docs/validation.md): compare it with a seed mean")
    return False, (f"{where} with kappa < kappa_star, so the static equations assume GD keeps the top m "
                   "eigen-directions of Y; GD stops instead at seed-dependent local minima of higher objective "
                   "(measured a few % to 2x off, docs/validation.md): flagged valid=False")


def _assemble(pt: _Point, u: float, v: float | None, residual: float, branch: str) -> LongTimeSolution:
    xi = math.exp(u)
    q = 0.0 if v is None else math.exp(v)
    val = functionals_at(pt.kappa_star, xi).values(q, pt.kappa)
    mse, I = float(val["mse"][0]), float(val["I"][0])
    beta = pt.lam / q if (v is not None and pt.lam > 0) else (1.0 - I / pt.alpha if v is None else 0.0)
    train = beta ** 2 * pt.alpha * xi
    valid, validity = _validity(pt, q, float(val["omega"]))
    return LongTimeSolution(
        alpha=pt.alpha, kappa=pt.kappa, kappa_star=pt.kappa_star, lam=pt.lam, Delta=pt.Delta,
        mse=mse, train_loss=train, in_sample_error=train + pt.Delta / 4 * (1 - 2 * beta),
        rank_fraction=float(val["P"][0]), q=q, xi=xi, beta=beta, omega=float(val["omega"]),
        trace=float(val["trace"][0]), branch=branch, converged=residual < 1e-7, residual=residual,
        valid=valid, validity=validity)


def _recovery(pt: _Point) -> LongTimeSolution:
    return LongTimeSolution(
        alpha=pt.alpha, kappa=pt.kappa, kappa_star=pt.kappa_star, lam=pt.lam, Delta=pt.Delta,
        mse=0.0, train_loss=0.0, in_sample_error=0.0, rank_fraction=min(1.0, pt.kappa_star),
        q=0.0, xi=0.0, beta=1.0, omega=-math.inf if pt.kappa >= 1 else 0.0, trace=1.0,
        branch="recovery", converged=True, residual=0.0)


def _solve_all(pt: _Point, q0: bool, branch: str, extra_starts=(), first_only: bool = False
               ) -> list[LongTimeSolution]:
    """Every solution reachable by Newton from ``extra_starts`` and the grid cells (one start
    per cell cluster); with ``first_only``, stop at the first one found."""
    if first_only:
        for y0 in extra_starts:
            y, res = _newton(pt, y0, q0)
            if res <= 1e-7:
                return [_assemble(pt, y[0], None if q0 else y[1], res, branch)]
        extra_starts = ()
    starts = [*extra_starts, *_grid_starts(pt, q0)]
    found: list[np.ndarray] = []
    sols: list[LongTimeSolution] = []
    for y0 in starts:
        y, res = _newton(pt, y0, q0)
        if res > 1e-7:
            continue
        if any(np.all(np.abs(y - z) <= 1e-6) for z in found):
            continue
        found.append(y)
        sols.append(_assemble(pt, y[0], None if q0 else y[1], res, branch))
    return sols


def _validate(alpha, kappa, kappa_star, lam, Delta) -> _Point:
    for name, value in (("alpha", alpha), ("kappa", kappa), ("kappa_star", kappa_star),
                        ("lam", lam), ("Delta", Delta)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name} must be a real number, got {value!r}")
    check_domain(alpha=float(alpha), kappa=float(kappa), kappa_star=float(kappa_star),
                 lam=float(lam), Delta=float(Delta))
    return _Point(float(alpha), float(kappa), float(kappa_star), float(lam), float(Delta))


_PARAMETERS = ("alpha", "kappa", "kappa_star", "lam", "Delta")  # what the long-time limit depends on


def _ratio_parameters(params: Ratios | Problem, given: dict, vary: str | None = None) -> dict:
    """The :data:`_PARAMETERS` of ``params`` by name (all but ``vary``); ``ValueError`` when any of ``given``
    (the scalar keyword arguments of the same call) is given too."""
    extra = sorted(k for k, v in given.items() if v is not None)
    if extra:
        raise ValueError(f"pass either a {type(params).__name__} or the parameters {', '.join(_PARAMETERS)}, not both "
                         f"(got {', '.join(extra)} with it)")
    r = as_ratios(params)
    return {k: getattr(r, k) for k in _PARAMETERS if k != vary}


def solve_longtime(alpha: float | Ratios | Problem, kappa: float | None = None, kappa_star: float | None = None,
                   lam: float | None = None, Delta: float | None = None) -> LongTimeSolution:
    """Solve the static equations at one parameter point.

    ``solve_longtime(ratios)`` takes the point from a :class:`quadflow.Ratios` or a :class:`quadflow.Problem`
    (its ``d`` and ``sigma0`` do not enter); ``solve_longtime(alpha=, kappa=, kappa_star=, lam=, Delta=)``
    from the scalars.

    Args:
        alpha: sample ratio n/d^2 (> 0), or a Ratios/Problem (then no other argument).
        kappa: student width ratio (> 0). kappa_star: teacher width ratio (> 0).
        lam: l2 strength (>= 0; default 0). Delta: label-noise variance (>= 0; default 0).
    Returns:
        LongTimeSolution; ``converged`` is False (never a silent NaN) when no
        solution was found, in which case the metrics are NaN; ``valid`` is False (with a
        :class:`LongTimeValidityWarning` naming the point and the reason) where the top-m cut binds.
    Raises:
        ValueError: a parameter outside the model's domain, naming it.
    """
    if isinstance(alpha, (Ratios, Problem)):
        pt = _validate(**_ratio_parameters(alpha, {"kappa": kappa, "kappa_star": kappa_star, "lam": lam,
                                                   "Delta": Delta}))
    else:
        pt = _validate(alpha, kappa, kappa_star, 0.0 if lam is None else lam, 0.0 if Delta is None else Delta)
    if pt.lam > 0:
        sols = _solve_all(pt, q0=False, branch="regularized") or _continue_from_larger_alpha(pt)
    elif pt.Delta == 0 and pt.alpha > _unregularised_recovery(pt.kappa, pt.kappa_star):
        sols = [_recovery(pt)]
    else:
        q0_sols = _solve_all(pt, q0=True, branch="q0")
        # Delta = 0: the unregularised flow is the q = 0 branch (docs/theory.md section 6), where
        # beta is slightly negative below its perfect-recovery threshold (-0.02 at
        # alpha = 0.35, kappa = 0.7, kappa_star = 0.3, where GD agrees with it and not
        # with the lam -> 0+ branch, which predicts mse = 0 there)
        sols = [s for s in q0_sols if s.beta >= -1e-12 or pt.Delta == 0]
        if not sols:
            # just below alpha_inter the interpolating branch has q ~ sqrt(alpha_inter - alpha):
            # start also from the q = 0 solution's xi with small q
            near = [np.array([math.log(s.xi), math.log(q)]) for s in q0_sols for q in np.logspace(0, -5, 6)]
            sols = _solve_all(pt, q0=False, branch="interpolating", extra_starts=near, first_only=True)
    if not sols:
        nan = float("nan")
        return LongTimeSolution(pt.alpha, pt.kappa, pt.kappa_star, pt.lam, pt.Delta, nan, nan, nan,
                                nan, nan, nan, nan, nan, nan, "none", False, math.inf)
    sols.sort(key=lambda s: s.loss_reg)
    if not sols[0].valid:
        warnings.warn(sols[0].validity, LongTimeValidityWarning, stacklevel=2)
    return replace(sols[0], alternatives=tuple(sols[1:]))


def _continue_from_larger_alpha(pt: _Point) -> list[LongTimeSolution]:
    """Fallback when no grid start converges (sharp double-descent peaks): solve at a
    larger alpha, where the solution is easy, and continue the branch down to alpha."""
    for factor in (2.0, 4.0, 16.0, 64.0):
        start = replace(pt, alpha=pt.alpha * factor)
        if not _solve_all(start, q0=False, branch="regularized"):
            continue
        fixed = {k: getattr(pt, k) for k in ("kappa", "kappa_star", "lam", "Delta")}
        curve = longtime_curve("alpha", np.geomspace(start.alpha, pt.alpha, 6), **fixed)
        if curve["converged"][-1]:
            y, res = _newton(pt, np.log([curve["xi"][-1], curve["q"][-1]]), q0=False)
            return [_assemble(pt, y[0], y[1], res, "regularized")]
    return []


def _unregularised_recovery(kappa: float, kappa_star: float) -> float:
    """Perfect-recovery threshold of the lam = 0 flow at Delta = 0 (docs/theory.md section 6).

    The smaller of the ``q = 0`` branch's ``xi -> 0`` limit of ``mse/(2 xi)`` and the
    dimension of the PSD matrices of rank ``<= m`` per ``d^2`` (``kappa - kappa^2/2``, or
    1/2 for ``kappa >= 1``): above the latter the only interpolator is generically ``S*``.
    ``inf`` for ``kappa < kappa_star``.
    """
    return perfect_recovery_threshold(kappa, kappa_star, unregularized=True)


# ---------------------------------------------------------------------------
# continuation

_VARY = ("alpha", "kappa", "lam", "Delta")
_CURVE_KEYS = ("mse", "test_error", "train_loss", "in_sample_error", "rank_fraction", "q", "xi", "beta")


def _to_p(vary: str, value: float) -> float:
    """Continuation coordinate of the varied parameter (log scale except for Delta)."""
    return value if vary == "Delta" else math.log(value)


def _from_p(vary: str, p: float) -> float:
    return p if vary == "Delta" else math.exp(p)


class _Curve:
    """Residuals in ``y = (log xi, log q, p)`` with one parameter varied."""

    def __init__(self, vary: str, fixed: dict) -> None:
        self.vary, self.fixed = vary, fixed

    def point(self, p: float) -> _Point:
        return _Point(**{**self.fixed, self.vary: _from_p(self.vary, p)})

    def F(self, y: np.ndarray) -> np.ndarray:
        return _residual(self.point(y[2]), y[0], y[1])

    def jac(self, y: np.ndarray, f: np.ndarray) -> np.ndarray:
        J = np.empty((2, 3))
        for k in range(3):
            dz = np.zeros(3)
            dz[k] = _FD
            J[:, k] = (self.F(y + dz) - f) / _FD
        return J

    def tangent(self, y: np.ndarray, previous: np.ndarray | None, direction: float) -> np.ndarray:
        """Unit null vector of the 2x3 Jacobian, oriented along ``previous`` (or ``direction`` in p)."""
        J = self.jac(y, self.F(y))
        t = np.linalg.svd(J)[2][-1]
        ref = previous @ t if previous is not None else direction * t[2]
        return t if ref >= 0 else -t

    def correct(self, y_pred: np.ndarray, normal: np.ndarray, offset: float,
                max_iter: int = 12) -> tuple[np.ndarray, bool]:
        """Newton on ``F(y) = 0`` with the linear constraint ``normal . y = offset``."""
        y = y_pred.copy()
        for _ in range(max_iter):
            f = self.F(y)
            g = np.append(f, normal @ y - offset)
            if np.max(np.abs(g)) < _TOL:
                return y, True
            A = np.vstack([self.jac(y, f), normal])
            try:
                step = np.linalg.solve(A, -g)
            except np.linalg.LinAlgError:
                return y, False
            if not np.all(np.isfinite(step)) or np.max(np.abs(step)) > 1.0:
                return y, False
            y = y + step
        return y, bool(np.max(np.abs(self.F(y))) < 1e-8)


def longtime_curve(ratios: Ratios | Problem | str | None = None, vary: str | None = None, values=None, *,
                   ds_max: float = 0.1, max_steps: int = 5000, **fixed) -> dict:
    """Follow one branch of solutions while one parameter varies (pseudo-arclength continuation).

    The branch is the one ``solve_longtime`` returns at ``values[0]``; the solver then
    walks along the solution curve in ``(log xi, log q, p)`` (``p = log`` of the varied
    parameter, or ``Delta`` itself) and records the solution each time ``p`` crosses
    the next requested value. Where the curve turns back in ``p`` (a fold: several
    solutions coexist) it is followed around the fold, so values beyond it come from
    the continued branch; this is reported in ``folds`` and in ``branch`` (the number of
    folds passed), never done silently. Values the branch never reaches are NaN with
    ``converged = False``.

    With ``lam = 0`` fixed (the ``q = 0`` / interpolating branches, no continuation
    variable in q), and along ``kappa`` (non-smooth there, see the code), the points
    are solved one by one and ``folds`` is empty.

    Called as ``longtime_curve(ratios, vary, values)`` (the fixed parameters from a
    :class:`quadflow.Ratios` or a :class:`quadflow.Problem`) or ``longtime_curve(vary, values, **fixed)``.

    Args:
        ratios: the fixed parameters (the varied one is taken from ``values``); None: ``**fixed``.
        vary: one of ``alpha, kappa, lam, Delta`` (default ``alpha``).
        values: 1-d array of the varied parameter, monotone.
        **fixed: without ``ratios``, the other parameters among ``alpha, kappa, kappa_star, lam, Delta``
            (lam and Delta default to 0).
        ds_max: largest arclength step. max_steps: step budget.
    Returns:
        dict with ``vary``, ``values``, arrays for ``mse, test_error, train_loss,
        in_sample_error, rank_fraction, q, xi, beta`` (same length as values),
        ``branch`` (int array: folds passed), ``kind`` (the solution's branch name, see
        ``LongTimeSolution.branch``: with ``lam = 0`` it shows where the curve switches
        between the ``q0`` and ``interpolating`` branches), ``converged`` and ``valid`` (bool arrays;
        one :class:`LongTimeValidityWarning` names the values where ``valid`` is False) and
        ``folds`` (list of dicts with the varied parameter's value and the solution there).
    """
    if isinstance(ratios, str):  # longtime_curve(vary, values, **fixed)
        if values is not None:
            raise TypeError("longtime_curve(vary, values, **fixed) takes two positional arguments, got three")
        ratios, vary, values = None, ratios, vary
    vary = "alpha" if vary is None else vary
    if vary not in _VARY:
        raise ValueError(f"vary must be one of {_VARY}, got {vary!r}")
    if ratios is not None:
        fixed = _ratio_parameters(ratios, fixed, vary)
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 1:
        raise ValueError("values must be a non-empty 1-d array")
    if values.size > 1 and not (np.all(np.diff(values) > 0) or np.all(np.diff(values) < 0)):
        raise ValueError("values must be strictly monotone")
    if vary in fixed:
        raise ValueError(f"{vary} is varied and cannot also be fixed")
    fixed = {**{k: 0.0 for k in ("lam", "Delta") if k != vary}, **fixed}
    unknown = set(fixed) - {"alpha", "kappa", "kappa_star", "lam", "Delta"}
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}")
    for v in values:
        _validate(**{**fixed, vary: float(v)})
    if vary == "lam" and np.any(values == 0):
        raise ValueError("lam must be > 0 along a lam-curve (continuation in log lam)")
    n = values.size
    out = {k: np.full(n, np.nan) for k in _CURVE_KEYS}
    out.update(vary=vary, values=values, branch=np.zeros(n, dtype=int), kind=np.full(n, "none", dtype=object),
               converged=np.zeros(n, dtype=bool), valid=np.ones(n, dtype=bool), folds=[])
    with warnings.catch_warnings():  # one warning for the whole curve, below
        warnings.simplefilter("ignore", LongTimeValidityWarning)
        _trace(out, vary, values, fixed, ds_max, max_steps)
    bad = values[out["converged"] & ~out["valid"]]
    if bad.size:
        warnings.warn(f"longtime_curve: the top-m cut binds with kappa < kappa_star at {bad.size} of {n} points, "
                      f"{vary} in [{bad.min():g}, {bad.max():g}]: the static equations assume GD keeps the top m "
                      "eigen-directions of Y, which it does not (docs/validation.md); flagged in out['valid']",
                      LongTimeValidityWarning, stacklevel=2)
    return out


def _trace(out: dict, vary: str, values: np.ndarray, fixed: dict, ds_max: float, max_steps: int) -> None:
    """Fill ``out`` along the curve (point by point or by continuation, see :func:`longtime_curve`)."""
    first = solve_longtime(**{**fixed, vary: float(values[0])})
    # kappa-curves are solved point by point: the rank cut b = max(q, omega) makes the
    # equations non-smooth in kappa (kinks where omega crosses q and at kappa = 1), where
    # continuation crawls (minutes for 30 points); scans found no folds in kappa.
    if vary == "kappa" or (vary != "lam" and fixed["lam"] == 0) or not first.converged:
        for i, v in enumerate(values):
            s = first if i == 0 else solve_longtime(**{**fixed, vary: float(v)})
            _store(out, i, s, 0)
        return
    _follow(_Curve(vary, fixed), values, first, out, ds_max, max_steps)


def _store(out: dict, i: int, s: LongTimeSolution, branch: int) -> None:
    for k in _CURVE_KEYS:
        out[k][i] = getattr(s, k)
    out["converged"][i] = s.converged
    out["valid"][i] = s.valid
    out["branch"][i] = branch
    out["kind"][i] = s.branch


def _follow(curve: _Curve, values: np.ndarray, first: LongTimeSolution, out: dict,
            ds_max: float, max_steps: int) -> None:
    ps = np.array([_to_p(curve.vary, v) for v in values])
    direction = 1.0 if ps.size == 1 or ps[-1] > ps[0] else -1.0
    y = np.array([math.log(first.xi), math.log(first.q), ps[0]])
    _store(out, 0, first, 0)
    target, folds, ds = 1, 0, ds_max / 4
    t = curve.tangent(y, None, direction)
    steps = 0
    while target < ps.size and steps < max_steps:
        steps += 1
        y_new, ok = curve.correct(y + ds * t, t, t @ (y + ds * t))
        if not ok or np.linalg.norm(y_new - y) > 2 * ds:
            ds *= 0.5
            if ds < 1e-9:
                break
            continue
        t_new = curve.tangent(y_new, t, direction)
        if np.sign(t_new[2]) != np.sign(t[2]) and t[2] != 0:
            folds += 1
            pf = 0.5 * (y[2] + y_new[2])
            fold = _assemble(curve.point(pf), *(0.5 * (y[:2] + y_new[:2])), 0.0, "regularized")
            out["folds"].append({curve.vary: _from_p(curve.vary, pf), "mse": fold.mse,
                                 "q": fold.q, "xi": fold.xi, "after_index": target - 1})
        # record every requested value crossed by this step, solved at fixed p
        while target < ps.size and (y[2] - ps[target]) * (y_new[2] - ps[target]) <= 0:
            w = (ps[target] - y[2]) / (y_new[2] - y[2]) if y_new[2] != y[2] else 0.0
            guess = y + w * (y_new - y)
            e_p = np.array([0.0, 0.0, 1.0])
            y_t, ok_t = curve.correct(guess, e_p, ps[target])
            if ok_t and np.linalg.norm(y_t - guess) <= ds:
                sol = _assemble(curve.point(ps[target]), y_t[0], y_t[1],
                                float(np.max(np.abs(curve.F(y_t)))), "regularized")
                _store(out, target, sol, folds)
            target += 1
        y, t = y_new, t_new
        if not (-25 < y[0] < 12 and -30 < y[1] < 12):
            break  # xi or q left the range where the equations are meaningful
        ds = min(ds_max, ds * 1.5)
