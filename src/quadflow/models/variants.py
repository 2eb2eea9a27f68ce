"""Students that depart from the paper's network, to see where its theory stops holding.

They train by the objective's chunked autograd path (:mod:`quadflow.models.objective`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from quadflow.models.quadratic import QuadraticNetwork


class SecondLayerQuadratic(QuadraticNetwork):
    """``f(x) = sum_k a_k ((w_k . x)^2 - |w_k|^2) / (m sqrt d)`` with a trainable second layer ``a`` (m,).

    ``a`` starts at ones, so the network starts as the :class:`QuadraticNetwork` with the same ``W``.
    It has no ``S()``: its test error is estimated on held-out inputs.
    """

    S = None

    def __init__(self, d: int, m: int, **kwargs):
        super().__init__(d, m, **kwargs)
        self.a = nn.Parameter(torch.ones(m, dtype=self.W.dtype, device=self.W.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (batch,) for inputs (batch, d)."""
        w = self.W
        h = x.to(w.dtype) @ w.T
        return ((h * h - (w * w).sum(1)) @ self.a) / (self.m * math.sqrt(self.d))
