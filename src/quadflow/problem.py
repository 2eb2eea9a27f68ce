"""The problem specification: widths, sample size, noise and regularisation.

Scalings (theory.md section 1): input dimension ``d``; student width
``m = round(kappa d)``; teacher width ``m_star = round(kappa_star d)``;
training-set size ``n = round(alpha d^2)``. ``Delta`` is the label-noise
variance, ``lam`` the l2 (weight-decay) strength in the paper's time
convention ``dW/dt = 2 (W Gamma - lam W)``, ``sigma0`` the standard deviation
of the i.i.d. initial weights.

:class:`Ratios` holds these d-free parameters alone (what the high-dimensional
theory depends on); :class:`Problem` adds ``d``. ``Problem.ratios`` and
``Ratios.at(d)`` go from one to the other.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


# The largest step h accepted (the paper's time). GD W <- W + 2h (W Gamma - lam W) is stable only below about
# h = 1/(2 lambda_max(S)), and near the teacher lambda_max(S) >= tr(S*)/d = 1, so the flows (gd, rk4) diverge
# for every h above 1 or so; for other optimisers h only sets the time unit t = step * h. 1000 leaves three
# decades in which a too-large step diverges cleanly (the divergence guard names it), and keeps
# h x gradient far inside float32 (a step of 1e300 overflows in the optimiser itself).
H_MAX = 1000.0


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_domain(**params: float) -> None:
    """Validate model parameters by name, raising ``ValueError`` naming the first bad one.

    Strictly positive: ``d, kappa, kappa_star, alpha, sigma0``; ``h`` in ``(0, H_MAX]``;
    non-negative: ``Delta, lam``. Unknown names are ignored, ``None`` skipped.
    """
    for name, value in params.items():
        if value is None:
            continue
        if name in ("Delta", "lam"):
            _check_nonnegative(name, value)
        elif name in ("d", "kappa", "kappa_star", "alpha", "sigma0"):
            _check_positive(name, value)
        elif name == "h":
            _check_step(value)


def _check_step(h: float) -> None:
    if not (isinstance(h, (int, float)) and 0 < h <= H_MAX):
        raise ValueError(f"h must be a number in (0, {H_MAX:g}], got {h!r} (GD is stable only below about "
                         "h = 1/(2 lambda_max(S)), under 1 here; larger steps diverge)")


RATIOS = ("kappa", "kappa_star", "alpha", "Delta", "lam", "sigma0")  # the d-free parameters, in order


def _ratio_values(params) -> dict:
    """The :data:`RATIOS` attributes of ``params`` (a Ratios or a Problem) by name."""
    return {name: getattr(params, name) for name in RATIOS}


@dataclass(frozen=True)
class Ratios:
    """The d-free parameters of a problem: what the high-dimensional theory depends on (theory.md section 1).

    Attributes:
        kappa: student width ratio ``m / d`` (> 0).
        kappa_star: teacher width ratio ``m_star / d`` (> 0).
        alpha: sample ratio ``n / d^2`` (> 0).
        Delta: label-noise variance (>= 0).
        lam: l2 regularisation strength (>= 0), in the paper's time.
        sigma0: standard deviation of the initial weights (> 0); 1 is the paper's.

    Raises ``ValueError`` (one line naming the parameter, its value and the allowed range) for a value
    outside the model's domain, as :class:`Problem` does.
    """

    kappa: float
    kappa_star: float
    alpha: float
    Delta: float = 0.0
    lam: float = 0.0
    sigma0: float = 1.0

    def __post_init__(self) -> None:
        check_domain(**_ratio_values(self))

    def at(self, d: int) -> "Problem":
        """The :class:`Problem` of these ratios at input dimension ``d`` (int >= 2)."""
        return Problem(d=d, **asdict(self))


def as_ratios(params: "Ratios | Problem") -> Ratios:
    """``params`` as :class:`Ratios`: itself, or a Problem's :attr:`Problem.ratios`; ``TypeError`` otherwise."""
    if isinstance(params, Ratios):
        return params
    if isinstance(params, Problem):
        return params.ratios
    raise TypeError(f"expected a quadflow Ratios or Problem, got {type(params).__name__}: {params!r}")


@dataclass(frozen=True)
class Problem:
    """A teacher/student quadratic-network problem (theory.md section 1).

    Attributes:
        d: input dimension (int >= 2).
        kappa: student width ratio, ``m = round(kappa d)`` (>= 1 neuron).
        kappa_star: teacher width ratio, ``m_star = round(kappa_star d)``.
        alpha: sample ratio, ``n = round(alpha d^2)``.
        Delta: label-noise variance (>= 0).
        lam: l2 regularisation strength (>= 0).
        sigma0: standard deviation of the initial weights (> 0); 1 is the paper's.
    """

    d: int
    kappa: float
    kappa_star: float
    alpha: float
    Delta: float = 0.0
    lam: float = 0.0
    sigma0: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.d, bool) or not isinstance(self.d, int) or self.d < 2:
            raise ValueError(f"d must be an integer >= 2, got {self.d!r}")
        check_domain(**_ratio_values(self))
        if self.n < 1:
            raise ValueError(f"alpha={self.alpha} gives n = round(alpha d^2) = 0 samples at d={self.d}")

    @property
    def ratios(self) -> Ratios:
        """The d-free parameters (kappa, kappa_star, alpha, Delta, lam, sigma0) as :class:`Ratios`."""
        return Ratios(**_ratio_values(self))

    @property
    def m(self) -> int:
        """Student width, ``max(1, round(kappa d))``."""
        return max(1, round(self.kappa * self.d))

    @property
    def m_star(self) -> int:
        """Teacher width, ``max(1, round(kappa_star d))``."""
        return max(1, round(self.kappa_star * self.d))

    @property
    def n(self) -> int:
        """Number of training samples, ``round(alpha d^2)``."""
        return round(self.alpha * self.d ** 2)

    @property
    def D(self) -> int:
        """Dimension of the symmetric-matrix space, ``d (d + 1) / 2``."""
        return self.d * (self.d + 1) // 2

    def realised(self) -> "Problem":
        """The same problem with the ratios it realises at this d: ``m/d``, ``m_star/d``, ``n/d^2``.

        Rounding ``kappa d`` to an integer shifts the ratios by up to ``1/(2d)`` (e.g.
        kappa = 0.4 at d = 24 is 10/24, a 17 % change of the long-time mse); theory
        compared with a finite-d run should use these.
        """
        return Problem(d=self.d, kappa=self.m / self.d, kappa_star=self.m_star / self.d, alpha=self.n / self.d ** 2,
                       Delta=self.Delta, lam=self.lam, sigma0=self.sigma0)

    def to_dict(self) -> dict:
        """Parameters and derived sizes as a plain dict (for logging)."""
        return {**asdict(self), "m": self.m, "m_star": self.m_star, "n": self.n}
