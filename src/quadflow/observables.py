"""Observables of a student at one time, in the normalisation of docs/architecture.md.

    mse              |S - S*|_F^2 / d                 (exact, for a student with S())
    test_error       2 mse (+ Delta with noisy test labels)
    train_loss       sum_mu r_mu^2 / (4n)              (exact, from the objective's pass)
    in_sample_error  sum_mu (f - f*)^2 / (4n)
    rank_fraction    fraction of eigenvalues of S above ``rank_tol``
    trace            Tr S / d                          (exact, for a student with S())
    loss_reg         train_loss + lam * trace          (the objective GD descends, L / (m d): for the
                                                       quadratic network lam |W|_F^2 / (m d) = lam Tr S / d)

A student without ``S()`` gets ``test_error = E_x (f - f*)^2`` estimated on a
held-out set of fresh Gaussian inputs (:class:`quadflow.data.HeldOut`), its
standard error as ``test_error_se``, and ``mse = test_error / 2`` (the same
identity as for the quadratic network); ``rank_fraction``, ``trace`` and ``loss_reg`` are then absent.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

METRICS = ("mse", "test_error", "train_loss", "in_sample_error", "rank_fraction", "trace", "loss_reg")
RANK_TOL = 1e-2  # one default for the command line and the Python API


def mse(s: torch.Tensor, s_star: torch.Tensor):
    """The paper's MSE ``|S - S*|_F^2 / d`` (test error is twice this): a float for S (d, d), an array (R,) for
    replicas' S (R, d, d) against their teachers (R, d, d)."""
    e = torch.sum((s - s_star.to(s)) ** 2, (-2, -1)).double().cpu().numpy() / s.shape[-1]
    return float(e) if s.dim() == 2 else e


class Evaluator:
    """Records of a student: ``{"step", "t", metrics..., ["spectrum"]}``.

    Args:
        s_star: teacher matrix (d, d) for the exact mse of students with ``S()``; (R, d, d) for R replicas,
            whose records then hold arrays (R,) per metric and a spectrum (R, d).
        lam: l2 strength of the objective, the weight of ``trace`` in ``loss_reg``.
        Delta: label-noise variance, added to ``test_error`` when ``noisy_test``.
        rank_tol: eigenvalues of S above it count towards ``rank_fraction``.
        heldout: held-out inputs for students without ``S()`` (None: such students get no test error).
    """

    def __init__(self, s_star: torch.Tensor, *, lam: float, Delta: float = 0.0, noisy_test: bool = False,
                 rank_tol: float = RANK_TOL, heldout=None):
        if not rank_tol > 0:
            raise ValueError(f"record.rank_tol must be > 0, got {rank_tol!r}")
        self.s_star, self.lam, self.rank_tol, self.heldout = s_star, float(lam), rank_tol, heldout
        self.noise = Delta if noisy_test else 0.0

    def __call__(self, model: nn.Module, stats, step: int, t: float, spectrum: bool = False) -> dict:
        rec = {"step": step, "t": t, "train_loss": stats.train_loss, "in_sample_error": stats.in_sample_error}
        with torch.no_grad():
            if callable(getattr(model, "S", None)):
                s = model.S()
                d, one = s.shape[-1], s.dim() == 2
                e = mse(s, self.s_star)
                eig = torch.linalg.eigvalsh(s.double() if s.dtype == torch.bfloat16 else s)
                rank = (eig > self.rank_tol).sum(-1).cpu().numpy() / d
                trace = torch.diagonal(s, dim1=-2, dim2=-1).sum(-1, dtype=torch.float64).cpu().numpy() / d
                rank, trace = (float(rank), float(trace)) if one else (rank, trace)
                rec.update(mse=e, test_error=2 * e + self.noise, rank_fraction=rank, trace=trace,
                           loss_reg=stats.train_loss + self.lam * trace)
                if spectrum:
                    rec["spectrum"] = eig.double().cpu().numpy()
            elif self.heldout is not None:
                err, se = self.heldout.error(model)
                rec.update(mse=err / 2, test_error=err + self.noise, test_error_se=se)
        return rec


def metric_row(rec: dict, prefix: str = "sim") -> dict:
    """The logged columns of a record: ``<prefix>/<metric>`` for each metric; for replicas (arrays (R,)) their
    mean there, its standard error (sample std over sqrt R) under ``<prefix>/<metric>_se`` and each replica
    under ``replicas/<r>/<metric>`` (a held-out ``test_error_se`` then only per replica)."""
    row = {}
    for k in (*METRICS, "test_error_se"):
        if k not in rec:
            continue
        v = rec[k]
        if np.ndim(v) == 0:
            row[f"{prefix}/{k}"] = float(v)
            continue
        v = np.asarray(v, dtype=float)
        row.update({f"replicas/{r}/{k}": float(x) for r, x in enumerate(v)})
        if k != "test_error_se":
            row[f"{prefix}/{k}"] = float(v.mean())
            row[f"{prefix}/{k}_se"] = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return row


EXCESS_METRICS = ("loss_reg", "mse", "train_loss", "trace")  # metrics whose distance to the static solution is logged


def static_excess(row: dict, limits: dict) -> dict:
    """The distance of a logged row to the static (long-time) solution: ``<source>/<m>_excess = <source>/<m> -
    limits[m]`` for each ``sim/<m>`` and ``theory/<name>/<m>`` of ``row`` (``theory/longtime`` itself excepted)
    with ``m`` in :data:`EXCESS_METRICS` and a finite limit; a run of replicas' ``sim/<m>_se`` carries over as
    ``sim/<m>_excess_se``. ``loss_reg_excess`` is the regularised objective's approach to its limit (the
    quantity of the paper's Fig. 14: slow relaxation, critical slowing down near the thresholds)."""
    out = {}
    for key, value in row.items():
        parts = key.split("/")
        metric = parts[-1]
        source = (parts[0] == "sim" and len(parts) == 2) or (parts[0] == "theory" and len(parts) == 3
                                                             and parts[1] != "longtime")
        limit = limits.get(metric)
        if source and metric in EXCESS_METRICS and limit is not None and np.isfinite(limit) and np.isfinite(value):
            out[f"{key}_excess"] = float(value - limit)
            if f"{key}_se" in row:
                out[f"{key}_excess_se"] = row[f"{key}_se"]
    return out


def collect(records: list[dict]) -> dict:
    """Stack per-time records into ``{"t": array, "step": array, metric: array, "spectrum": [...]}`` (a metric
    (T,), or (T, R) for replicas; a spectrum (d,), or (R, d))."""
    rows = [r for r in records if "train_loss" in r]
    keys = [k for k in ("t", "step", *METRICS, "test_error_se") if rows and k in rows[0]]
    out = {k: np.array([r[k] for r in rows]) for k in keys}
    out["spectrum"] = [r["spectrum"] for r in records if "spectrum" in r]
    out["spectrum_t"] = np.array([r["t"] for r in records if "spectrum" in r])
    return out
