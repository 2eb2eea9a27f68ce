"""The student's gradient field: residuals, Gamma and the drift ``W Gamma`` (theory.md section 2).

Conventions: ``W`` has shape (m, d), ``S = W^T W / m``, ``f_mu = <S, Z_mu>``,
``r_mu = y_mu - f_mu`` and

    Gamma = (d / (2n)) sum_mu r_mu Z_mu                      (d, d)

For Gaussian inputs ``Z = (x x^T - I)/sqrt(d)`` this is
``Gamma = sqrt(d)/(2n) (X^T diag(r) X - sum(r) I)``. Two routes compute the
drift ``W Gamma`` over sample chunks:

- S-route: ``f = rowsum((X S) * X)``, ``X^T diag(r) X``: ``4 n d^2`` flops;
- W-route: ``H = X W^T``, ``f = |H|^2/m``, ``(H * r)^T X``: ``4 n d m`` flops,
  never forming a d x d sample sum (cheaper when ``m < d``).

Each field returns the drift and :class:`Stats`, the losses at the same W in
the normalisation of architecture.md (``train_loss = sum r^2 / (4n)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from quadflow.data import Dataset, quadratic_form
from quadflow.runtime.distributed import all_reduce_sum

ROUTES = ("auto", "S", "W")


@dataclass
class Stats:
    """Sample averages at the current W: ``train_loss = sum r^2/(4n)``,
    ``in_sample_error = sum (f - f*)^2/(4n)``."""

    train_loss: float
    in_sample_error: float


Field = Callable[[torch.Tensor], "tuple[torch.Tensor, Stats]"]


def student_matrix(w: torch.Tensor) -> torch.Tensor:
    """``S = W^T W / m`` for W of shape (m, d)."""
    return w.T @ w / w.shape[0]


def mse(s: torch.Tensor, s_star: torch.Tensor) -> float:
    """The paper's MSE ``|S - S*|_F^2 / d`` (test error is twice this)."""
    return float(torch.sum((s - s_star.to(s)) ** 2)) / s.shape[0]


def choose_route(route: str, design: str, m: int, d: int) -> str:
    """Resolve ``auto`` by flop count (W-route when m < d); GOE data uses the S-route."""
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    if design == "goe":
        if route == "W":
            raise ValueError("route=W needs data.design=gaussian (GOE matrices have no input vectors)")
        return "S"
    if route == "auto":
        return "W" if m < d else "S"
    return route


class EmpiricalField:
    """The sampled gradient field ``W -> W Gamma(W)`` over a :class:`Dataset`.

    Sums over this rank's chunks are all-reduced over ranks, so every rank
    gets the full-batch drift. ``chunk_rows`` bounds the temporaries
    (``chunk_rows x max(d, m)`` numbers for the Gaussian design).
    """

    def __init__(self, data: Dataset, route: str = "auto", chunk_rows: int = 65536):
        self.data = data
        self.d = data.p.d
        self.route = choose_route(route, data.design, data.p.m, self.d)
        self.chunk_rows = int(chunk_rows)

    def __call__(self, w: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        data, d, n = self.data, self.d, self.data.n
        dt = data.dtype
        use_w = self.route == "W"
        s = None if use_w else student_matrix(w)
        acc = torch.zeros(w.shape if use_w else (d, d), dtype=w.dtype, device=w.device)
        sums = torch.zeros(3, dtype=torch.float64, device=w.device)  # sum r, sum r^2, sum (f - f*)^2
        w_norm2 = torch.sum(w * w) if use_w else None
        for sl, a in data.chunks(self.chunk_rows):
            if use_w:
                h = (a @ w.to(dt).T).to(w.dtype)
                f = ((h * h).sum(1) - w_norm2) / (w.shape[0] * math.sqrt(d))
            else:
                f = quadratic_form(a, s, data.design)
            r = data.y[sl] - f
            if use_w:
                acc += ((h * r[:, None]).to(dt).T @ a).to(w.dtype)
            elif data.design == "goe":
                acc += (r.to(dt) @ a.reshape(a.shape[0], -1)).reshape(d, d).to(w.dtype)
            else:
                acc += (a.T @ (a * r[:, None].to(dt))).to(w.dtype)
            e = f - data.y_clean[sl]
            sums += torch.stack([r.sum(), (r * r).sum(), (e * e).sum()]).to(torch.float64)
        all_reduce_sum([acc, sums])
        sum_r = sums[0].to(w.dtype)
        if data.design == "goe":
            drift = w @ (acc * (d / (2 * n)))
        elif use_w:
            drift = (acc - sum_r * w) * (math.sqrt(d) / (2 * n))
        else:
            gamma = (acc - sum_r * torch.eye(d, dtype=w.dtype, device=w.device)) * (math.sqrt(d) / (2 * n))
            drift = w @ gamma
        stats = Stats(train_loss=float(sums[1]) / (4 * n), in_sample_error=float(sums[2]) / (4 * n))
        return drift, stats


class PopulationField:
    """The alpha -> infinity field ``W -> W (S* - S)`` (theory.md section 2).

    Its losses are the population ones: ``train_loss = (2 mse + Delta)/4`` and
    ``in_sample_error = mse / 2``.
    """

    def __init__(self, s_star: torch.Tensor, Delta: float):
        self.s_star, self.Delta = s_star, Delta

    def __call__(self, w: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        s = student_matrix(w)
        e = mse(s, self.s_star)
        return w @ (self.s_star - s), Stats(train_loss=(2 * e + self.Delta) / 4, in_sample_error=e / 2)
