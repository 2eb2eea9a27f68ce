"""The named parameter points of the validation measurements (scripts/validation/scale.py, open_regime.py).

    from quadflow.analysis.regimes import REGIMES, parse_regimes, problem
    a = REGIMES["A"]                                        # kappa, kappa_star, alpha, lam, Delta
    regimes = parse_regimes("A,E", ["A:lam=0.2", "E:kappa=1,kappa_star=0.5,alpha=2,lam=0.1,Delta=0"])
    p = problem({**a.config(), "d": 64})                    # quadflow.Problem of a point's config
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from quadflow.analysis.points import parse_names
from quadflow.problem import Problem

PARAMS = ("kappa", "kappa_star", "alpha", "lam", "Delta")


@dataclass(frozen=True)
class Regime:
    """A parameter point of the theory; ``what`` says which regime it stands for."""

    name: str
    kappa: float
    kappa_star: float
    alpha: float
    lam: float
    Delta: float
    what: str = ""

    def config(self) -> dict:
        """``{"regime": name, kappa, kappa_star, alpha, lam, Delta}``: how a point's config names it."""
        return {"regime": self.name, **{k: float(getattr(self, k)) for k in PARAMS}}


# Checked with solve_longtime (all converged, residual < 1e-10, one solution, branch "regularized"):
#   A  mse 0.01633  train_loss 0.003576  rank 0.500 (= kappa*)      q 0.151
#   B  mse 0.1140   train_loss 0.08063   rank 0.589 (< kappa: q cut) q 0.075, alpha above alpha_inter 0.378
#   C  mse 0.1587   train_loss 0.04060   rank 0.300 (= kappa: top-m cut, omega 1.31 > q 0.070)
#   D  mse 0.07921  train_loss 0.09468   rank 0.624                  q 0.132
REGIMES = {r.name: r for r in (
    Regime("A", 1.5, 0.5, 1.0, 0.1, 0.0, "kappa > 1, noiseless"),
    Regime("B", 0.7, 0.3, 1.0, 0.05, 0.5, "kappa* < kappa < 1, noisy"),
    Regime("C", 0.3, 0.5, 1.0, 0.05, 0.0, "kappa < kappa*, noiseless (top-m cut)"),
    Regime("D", 2.0, 0.5, 1.5, 0.1, 0.5, "kappa > 1, noisy, lam > 0"),
)}


def problem(cfg: dict) -> Problem:
    """The problem of a point's config: its ``d`` and :data:`PARAMS` (sigma0 = 1)."""
    return Problem(d=cfg["d"], **{k: cfg[k] for k in PARAMS})


def parse_regimes(names: str, overrides: list[str], table: dict[str, Regime] = REGIMES) -> list[Regime]:
    """The regimes named in ``names`` (comma-separated) among ``table``, after ``NAME:key=value,...`` overrides.

    An override of an unknown NAME defines a new regime and must give all of kappa, kappa_star,
    alpha, lam, Delta.
    """
    table = dict(table)
    for spec in overrides:
        name, _, body = spec.partition(":")
        values = {}
        for item in filter(None, body.split(",")):
            key, _, value = item.partition("=")
            if key not in PARAMS:
                raise ValueError(f"--regime {spec!r}: unknown key {key!r}; allowed {', '.join(PARAMS)}")
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f"--regime {spec!r}: {key} must be a number, got {value!r}") from None
        if name in table:
            table[name] = replace(table[name], **values)
        elif set(values) == set(PARAMS):
            table[name] = Regime(name, **values, what="given on the command line")
        else:
            raise ValueError(f"--regime {spec!r}: a new regime needs all of {', '.join(PARAMS)}")
    return [table[n] for n in parse_names(names, table, "--regimes")]
