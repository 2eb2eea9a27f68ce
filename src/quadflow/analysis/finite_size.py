"""Finite-size extrapolation of a measured value to d -> infinity, and its gap to a theory value.

Two laws of the value at size d, the second containing the first (``p = 1``)::

    "1/d"    value(d) = a + b / d           (the leading correction, 2 parameters)
    "power"  value(d) = a + b d^-p          (p free in ``p_range``, 3 parameters)

and, given the d -> infinity theory value ``T``, the gap law of the per-size means::

    gap(d) = |mean(d) / T - 1| = b d^-p     (p free; p > 0: the gap closes)

**Errors.** Each size's mean gets a standard error (s.e.m.) from, in this order:

- ``sem`` given (``values`` are then per-size means): used as is (``errors_from="sem"``);
- seeds: when at least two sizes have two or more distinct values and the seeds give at least
  ``min_seed_dof`` degrees of freedom (``"seeds"``). The seed-to-seed standard deviation is
  modelled as ``std(d) = s d^-r``, fitted (log-linear, weighted by the seeds, corrected for the
  bias of a log sample variance) to the per-size sample variances, and
  ``sem(d) = std(d) / sqrt(seeds at d)``. Pooling the seeds of every size keeps the weights from
  being as noisy as a 3-6 seed std (synthetic ``a + b/d``, 5 sizes x 6 seeds, 400 draws: the
  +-2 s.e. band of ``a`` held the limit in 86 % of draws with per-size stds, in 93 % with the
  pooled law, and its Student-t interval of 95.45 % in 95 %);
- otherwise (one seed per size, or seeds that agree exactly): every value is fitted with the same weight
  and the covariance is scaled by the reduced chi^2 of the fit (``"residuals"``: one scatter for
  all sizes, from the seeds and the misfit; needs a degree of freedom). The per-size s.e.m. is
  then that scatter / sqrt(seeds).

With ``"sem"`` and ``"seeds"`` the covariance is not rescaled (chi^2 and its degrees of freedom
are reported for the reader to judge the fit). ``error_dof`` says on how many degrees of
freedom the error rests (inf, ``sum (seeds - 1) - 2``, or ``N - k``); :meth:`Extrapolation.interval`
turns it into a Student-t interval.

**Model selection** (``model="auto"``): a nested-model test at level ``select_level``
(default 5 %). The power law is chosen only when it lowers chi^2 by more than chance would:
``F = (chi2(1/d) - chi2(power)) / s2 > F(1, nu)`` quantile, where ``s2 = 1, nu = inf`` with
``sem`` given (the chi^2_1 drop test), ``s2 = 1, nu = `` the seeds' degrees of freedom with
seed errors, and ``s2 = chi2(power) / (N - 3), nu = N - 3`` from the residuals (the F-test).
Pure ``1/d`` data thus picks ``1/d`` with probability about ``1 - select_level``.

Everything here needs numpy and scipy only.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special, stats

MODELS = ("auto", "1/d", "power")
P_RANGE = (0.05, 5.0)       # exponent range of the power law of the value
GAP_P_RANGE = (-2.0, 5.0)   # the gap law may find a gap that does not close (p <= 0)
GRID = 241                  # exponents tried before the bounded refinement
LOG_HUGE = math.log(1e300)  # a crossing beyond d = 1e300 counts as never


@dataclass(frozen=True)
class Law:
    """A fitted law ``a + b d^-p`` (``a = 0`` for the gap law), parameters with standard errors.

    ``model`` is ``"1/d"`` (``p = 1`` fixed, ``p_err = 0``), ``"power"`` or ``"gap"``;
    ``chi2`` is the weighted sum of squared residuals (plain sum with ``errors_from="residuals"``)
    on ``dof`` degrees of freedom. Errors are NaN where the data cannot give them.
    """

    model: str
    a: float
    a_err: float
    b: float
    b_err: float
    p: float
    p_err: float
    chi2: float
    dof: int

    def __call__(self, d) -> np.ndarray:
        """The law at sizes ``d`` (array-like)."""
        return self.a + self.b * np.asarray(d, dtype=float) ** -self.p


@dataclass(frozen=True)
class Extrapolation:
    """The d -> infinity limit of a measured value (see the module docstring for the method).

    Attributes:
        value, error: the extrapolated value (``fit.a``) and its standard error.
        error_dof: degrees of freedom of ``error`` (module docstring); :meth:`interval` uses Student's
            t with them, since +-2 errors estimated from a few seeds cover the limit less than 95 %.
        model: the law chosen, ``"1/d"`` or ``"power"``; fit: its :class:`Law`.
        alternatives: every law fitted, by model (both with ``model="auto"``).
        selection: how the model was chosen: ``criterion``, ``statistic``, ``threshold``, ``p_value``.
        errors_from: ``"sem"``, ``"seeds"`` or ``"residuals"``.
        sizes: the distinct sizes, increasing; n_seeds: values at each size; mean: their mean;
        std: seed-to-seed standard deviation (ddof = 1; NaN with one value); sem: standard error of the mean
        (as used by the fit); seed_law: ``{"s", "r"}`` of ``std(d) = s d^-r`` (None unless ``"seeds"``).
        theory: the d -> infinity theory value (None when not given);
        gap, gap_err: ``value / theory - 1`` (signed, relative) and its standard error;
        gap_law: the fitted ``|mean / theory - 1| = b d^-p`` (None without theory).
    """

    value: float
    error: float
    error_dof: float
    model: str
    fit: Law
    alternatives: dict
    selection: dict
    errors_from: str
    sizes: tuple
    n_seeds: tuple
    mean: tuple
    std: tuple
    sem: tuple
    seed_law: dict | None = None
    theory: float | None = None
    gap: float | None = None
    gap_err: float | None = None
    gap_law: Law | None = None

    @property
    def p(self) -> float:
        """Exponent of the chosen law (1 for ``"1/d"``)."""
        return self.fit.p

    @property
    def p_err(self) -> float:
        return self.fit.p_err

    def interval(self, coverage: float = 0.9545) -> tuple[float, float]:
        """``value -+ t error``, t the Student quantile on ``error_dof`` (0.9545: the normal +-2 sigma)."""
        if not 0 < coverage < 1:
            raise ValueError(f"interval: coverage must be in (0, 1), got {coverage!r}")
        t = float(stats.t.isf((1 - coverage) / 2, self.error_dof))
        return self.value - t * self.error, self.value + t * self.error

    def size_at_gap(self, level: float, law: str = "gap") -> float | None:
        """The size d beyond which the fitted law stays within ``level`` (e.g. 0.02) of the theory.

        ``law="gap"``: the gap law ``b d^-p``, ``d = (b / level)^(1/p)``; ``law="value"``: the chosen
        law of the value, ``|a + b d^-p - theory| <= level |theory|``. None when the law never gets
        there (a gap that does not close, or an extrapolated value off by more than ``level``; also a
        crossing beyond d = 1e300); 0.0 when it is within ``level`` at every d.
        """
        if self.theory is None:
            raise ValueError("size_at_gap needs the theory value: pass theory= to extrapolate")
        if not (isinstance(level, (int, float)) and math.isfinite(level) and level > 0):
            raise ValueError(f"size_at_gap: level must be a finite number > 0, got {level!r}")
        if law == "gap":
            return _crossing(0.0, self.gap_law.b, self.gap_law.p, level)
        if law == "value":
            t = abs(self.theory)
            return _crossing((self.fit.a - self.theory) / t, self.fit.b / t, self.fit.p, level)
        raise ValueError(f"size_at_gap: law must be 'gap' or 'value', got {law!r}")

    def gap_sizes(self, levels=(0.02, 0.05), law: str = "gap") -> dict:
        """``{level: size_at_gap(level, law)}`` for each level."""
        return {lev: self.size_at_gap(lev, law) for lev in levels}

    def to_dict(self) -> dict:
        """Plain values (for JSON): the fields, ``p``/``p_err``, and the 2 % and 5 % sizes with theory."""
        out = asdict(self)
        out.update(p=self.p, p_err=self.p_err)
        if self.theory is not None:
            out["gap_sizes"] = {law: {str(k): v for k, v in self.gap_sizes(law=law).items()}
                                for law in ("gap", "value")}
        return out


def extrapolate(d, values, sem=None, *, theory: float | None = None, model: str = "auto",
                select_level: float = 0.05, min_seed_dof: int = 3, p_range=P_RANGE) -> Extrapolation:
    """Extrapolate ``values`` measured at sizes ``d`` to d -> infinity.

    Args:
        d: size of each measurement, shape (N,), > 0; repeated sizes are seeds.
        values: the measurements, shape (N,), finite (e.g. the final mse of each seed).
        sem: standard errors of ``values``, shape (N,), > 0; ``values`` are then per-size means and
            ``d`` must be distinct. None: errors from the seeds or the residuals (module docstring).
        theory: the d -> infinity theory value (finite, non-zero) for the gaps and the gap law.
        model: ``"auto"`` (chosen by the nested-model test), ``"1/d"`` or ``"power"``.
        select_level: level of that test, in (0, 1).
        min_seed_dof: seed degrees of freedom, ``sum (seeds - 1) - 2``, needed for seed errors (>= 1).
        p_range: ``(low, high)`` bounds of the power law's exponent, ``0 < low < high``.

    Raises ValueError, one line naming the argument, for bad input and for too few points.
    """
    d, y, sem = _check(d, values, sem, theory, model, select_level, min_seed_dof, p_range)
    sizes, counts, mean, std = _per_size(d, y)
    seed_law = None if sem is not None else _seed_law(sizes, counts, std, min_seed_dof)
    if sem is not None:
        errors_from, size_sem, dof = "sem", sem, math.inf
    elif seed_law is not None:
        errors_from, dof = "seeds", float(np.sum(counts - 1) - 2)
        size_sem = seed_law["s"] * sizes ** -seed_law["r"] / np.sqrt(counts)
    else:
        errors_from, size_sem, dof = "residuals", None, None
    _check_enough(model, sizes, y.size, errors_from)
    if errors_from == "residuals":  # every value with one weight, errors from the scatter
        fd, fy, sigma = d, y, None
    else:
        fd, fy, sigma = sizes, mean, size_sem
    laws = {m: _fit_law(m, fd, fy, sigma, p_range) for m in (("1/d", "power") if model == "auto" else (model,))}
    chosen, selection = _select(laws, model, fy.size, dof, select_level)
    fit = laws[chosen]
    if errors_from == "residuals":
        size_sem, dof = math.sqrt(fit.chi2 / fit.dof) / np.sqrt(counts), float(fit.dof)
    out = dict(value=fit.a, error=fit.a_err, error_dof=dof, model=chosen, fit=fit, alternatives=laws,
               selection=selection, errors_from=errors_from, sizes=_floats(sizes),
               n_seeds=tuple(int(c) for c in counts), mean=_floats(mean), std=_floats(std), sem=_floats(size_sem),
               seed_law=seed_law)
    if theory is not None:
        t = float(theory)
        gap_sigma = size_sem / abs(t) if np.all(size_sem > 0) else None
        out.update(theory=t, gap=fit.a / t - 1, gap_err=fit.a_err / abs(t),
                   gap_law=_fit_law("gap", sizes, np.abs(mean / t - 1), gap_sigma, GAP_P_RANGE))
    return Extrapolation(**out)


def per_size(d, values) -> dict:
    """Seed statistics at each distinct size: ``sizes`` (increasing), ``n_seeds``, ``mean``, ``std``
    (ddof = 1) and ``sem`` (``std / sqrt(n_seeds)``), tuples of floats (NaN std and sem with one seed)."""
    d, y, _ = _check(d, values, None, None, "auto", 0.05, 1, P_RANGE)
    sizes, counts, mean, std = _per_size(d, y)
    return {"sizes": _floats(sizes), "n_seeds": tuple(int(c) for c in counts), "mean": _floats(mean),
            "std": _floats(std), "sem": _floats(std / np.sqrt(counts))}


def _per_size(d: np.ndarray, y: np.ndarray):
    sizes, inverse, counts = np.unique(d, return_inverse=True, return_counts=True)
    mean = np.bincount(inverse, weights=y) / counts
    dev2 = np.bincount(inverse, weights=(y - mean[inverse]) ** 2)
    std = np.where(counts > 1, np.sqrt(dev2 / np.maximum(counts - 1, 1)), np.nan)
    return sizes, counts, mean, std


def extrapolate_or_explain(d, values, sem=None, *, models=("auto", "1/d"), **options):
    """The first of ``models`` that :func:`extrapolate` accepts, and why the ones before it were refused.

    Returns ``(Extrapolation or None, {model: refusal message})``: None with every refusal when no
    model can be fitted (for reports that must not stop at one short series).
    """
    refused = {}
    for model in models:
        try:
            return extrapolate(d, values, sem, model=model, **options), refused
        except ValueError as err:
            refused[model] = str(err)
    return None, refused


def _floats(x) -> tuple:
    return tuple(float(v) for v in x)


def _check(d, values, sem, theory, model, select_level, min_seed_dof, p_range):
    d = np.asarray(d, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if d.size != y.size:
        raise ValueError(f"extrapolate: d and values must have the same length, got {d.size} and {y.size}")
    _check_array("d", d, positive=True)
    _check_array("values", y)
    if sem is not None:
        sem = np.asarray(sem, dtype=float).ravel()
        if sem.size != y.size:
            raise ValueError(f"extrapolate: sem must have the length of values ({y.size}), got {sem.size}")
        _check_array("sem", sem, positive=True)
        if np.unique(d).size != d.size:
            raise ValueError(f"extrapolate: with sem, values are per-size means and d must be distinct, "
                             f"got d = {_sizes(d)}")
        order = np.argsort(d)
        d, y, sem = d[order], y[order], sem[order]
    if model not in MODELS:
        raise ValueError(f"extrapolate: model must be one of {', '.join(map(repr, MODELS))}, got {model!r}")
    if theory is not None and not (isinstance(theory, numbers.Real) and not isinstance(theory, bool)
                                   and math.isfinite(theory) and theory != 0):
        raise ValueError(f"extrapolate: theory must be a finite non-zero number or None, got {theory!r}")
    if not (isinstance(select_level, (int, float)) and 0 < select_level < 1):
        raise ValueError(f"extrapolate: select_level must be in (0, 1), got {select_level!r}")
    if isinstance(min_seed_dof, bool) or not isinstance(min_seed_dof, int) or min_seed_dof < 1:
        raise ValueError(f"extrapolate: min_seed_dof must be an integer >= 1, got {min_seed_dof!r}")
    try:
        lo, hi = (float(v) for v in p_range)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (0 < lo < hi < math.inf):
        raise ValueError(f"extrapolate: p_range must be (low, high) with 0 < low < high, got {p_range!r}")
    return d, y, sem


def _check_array(name: str, x: np.ndarray, positive: bool = False) -> None:
    bad = ~np.isfinite(x) | ((x <= 0) if positive else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        allowed = "finite numbers > 0" if positive else "finite numbers"
        raise ValueError(f"extrapolate: {name} must be {allowed}, got {name}[{i}] = {float(x[i])!r}")


def _sizes(x) -> str:
    return ", ".join(f"{v:g}" for v in x)


def _check_enough(model: str, sizes: np.ndarray, n_values: int, errors_from: str) -> None:
    """Refuse a fit the points cannot determine, saying what is missing."""
    k = 2 if model == "1/d" else 3
    law = "a + b/d" if model == "1/d" else "the power law a + b d^-p"
    got = f"got {sizes.size}: {_sizes(sizes)}"
    if sizes.size < k:
        hint = "add a size" + ("" if model == "1/d" else " or use model='1/d'")
        raise ValueError(f"extrapolate needs at least {k} distinct sizes d for {law} ({got}); {hint}")
    if errors_from == "residuals" and n_values <= k:
        raise ValueError(f"extrapolate needs an error estimate for {law} ({n_values} values at sizes "
                         f"{_sizes(sizes)}): give sem, add seeds (>= 2 at some size) or add a size")


def _linear(d: np.ndarray, y: np.ndarray, w: np.ndarray, p: np.ndarray, offset: bool):
    """Weighted least squares of ``y = a + b d^-p`` (``a = 0`` without offset) for each exponent in ``p``.

    Returns ``(a, b, chi2)``, each of the shape of ``p``.
    """
    x = d[None, :] ** -np.atleast_1d(p)[:, None]  # (P, N)
    sw = w.sum()
    if offset:
        xm, ym = (x * w).sum(1) / sw, (w * y).sum() / sw
        dx, dy = x - xm[:, None], y - ym
        sxx, sxy = (w * dx * dx).sum(1), (w * dx * dy).sum(1)
        b = np.divide(sxy, sxx, out=np.zeros_like(sxy), where=sxx > 0)
        a = ym - b * xm
    else:
        sxx, sxy = (w * x * x).sum(1), (w * x * y).sum(1)
        b, a = sxy / sxx, np.zeros(x.shape[0])
    r = y - a[:, None] - b[:, None] * x
    return a, b, (w * r * r).sum(1)


def _best_p(d, y, w, p_range, offset: bool) -> float:
    """The exponent of least chi^2: a grid over ``p_range``, then a bounded search around its best point."""
    grid = np.linspace(*p_range, GRID)
    i = int(np.argmin(_linear(d, y, w, grid, offset)[2]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, GRID - 1)]
    res = optimize.minimize_scalar(lambda p: _linear(d, y, w, np.array([p]), offset)[2][0], bounds=(lo, hi),
                                   method="bounded", options={"xatol": 1e-10})
    return float(res.x)


def _jacobian(model: str, d: np.ndarray, b: float, p: float) -> np.ndarray:
    """Derivatives of ``a + b d^-p`` by its free parameters ((a,) b, (p)), shape (N, k)."""
    x = d ** -p
    cols = ([] if model == "gap" else [np.ones_like(x)]) + [x] + ([] if model == "1/d" else [-b * x * np.log(d)])
    return np.stack(cols, axis=1)


def _fit_law(model: str, d, y, sigma, p_range) -> Law:
    """Fit one law; ``sigma`` None: equal weights, covariance scaled by chi^2 / dof (NaN errors at dof 0)."""
    offset = model != "gap"
    w = _weights(y, sigma)
    p = 1.0 if model == "1/d" else _best_p(d, y, w, p_range, offset)
    a, b, chi2 = (float(v[0]) for v in _linear(d, y, w, np.array([p]), offset))
    jac = _jacobian(model, d, b, p)
    dof = y.size - jac.shape[1]
    cov = np.linalg.pinv(jac.T @ (jac * w[:, None]))
    if sigma is None:
        cov = cov * (chi2 / dof if dof > 0 else math.nan)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    err = dict(zip((["a"] if offset else []) + ["b"] + ([] if model == "1/d" else ["p"]), map(float, err)))
    return Law(model, a=a, a_err=err.get("a", 0.0), b=b, b_err=err["b"], p=p, p_err=err.get("p", 0.0),
               chi2=chi2, dof=dof)


def _weights(y: np.ndarray, sigma) -> np.ndarray:
    return np.ones_like(y) if sigma is None else 1.0 / np.asarray(sigma) ** 2


def _seed_law(sizes: np.ndarray, counts: np.ndarray, std: np.ndarray, min_dof: int) -> dict | None:
    """``{"s", "r"}`` of ``std(d) = s d^-r`` fitted to the seeds, or None when they cannot give it.

    Weighted least squares of ``log var_i + c(nu_i) = log s^2 - 2 r log d_i`` over the sizes with
    ``nu_i = n_i - 1 >= 1``, weights ``nu_i`` (the variance of a log sample variance is about
    ``2 / nu``), ``c(nu) = log(nu/2) - digamma(nu/2)`` removing its bias.
    """
    nu = counts - 1
    has = nu >= 1
    if has.sum() < 2 or np.any(std[has] <= 0) or np.sum(nu) - 2 < min_dof:
        return None
    x, v = np.log(sizes[has]), nu[has].astype(float)
    z = 2 * np.log(std[has]) + np.log(v / 2) - special.digamma(v / 2)
    slope, intercept = np.polyfit(x, z, 1, w=np.sqrt(v))  # z = intercept + slope log d
    return {"s": float(np.exp(intercept / 2)), "r": float(-slope / 2)}


def _select(laws: dict, model: str, n: int, dof: float | None, level: float) -> tuple[str, dict]:
    """The model and the statistics of the nested-model test (module docstring); ``dof`` None: residuals."""
    if model != "auto":
        return model, {"criterion": f"model={model!r} given", "statistic": None, "threshold": None,
                       "p_value": None}
    drop = max(laws["1/d"].chi2 - laws["power"].chi2, 0.0)
    if dof is None:
        dof, rss = n - 3, laws["power"].chi2
        stat = drop / (rss / dof) if rss > 0 else (math.inf if drop > 0 else 0.0)
    else:
        stat = drop
    if math.isinf(dof):
        p_value, threshold = float(stats.chi2.sf(stat, 1)), float(stats.chi2.isf(level, 1))
    else:
        p_value, threshold = float(stats.f.sf(stat, 1, dof)), float(stats.f.isf(level, 1, dof))
    chosen = "power" if p_value < level else "1/d"
    criterion = (f"nested-model F-test at level {level:g}: power law if (chi2(1/d) - chi2(power)) / s2 "
                 f"> F(1, {dof:g}) quantile")
    return chosen, {"criterion": criterion, "statistic": float(stat), "threshold": threshold, "p_value": p_value}


def _crossing(c: float, b: float, p: float, level: float) -> float | None:
    """Least d with ``|c + b d^-p| <= level`` at every larger d (0.0: at every d; None: never)."""
    if b == 0 or p == 0:
        return 0.0 if abs(c + b) <= level else None
    if p < 0 or abs(c) >= level:  # a growing correction, or a limit off by level or more
        return None
    x0 = (level - c) / b if b > 0 else (level + c) / -b  # largest d^-p with |c + b d^-p| <= level
    log_d = -math.log(x0) / p
    return None if log_d > LOG_HUGE else math.exp(log_d)
