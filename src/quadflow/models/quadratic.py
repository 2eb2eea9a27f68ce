"""The paper's network as a ``torch.nn.Module``: :class:`QuadraticNetwork` (student and teacher).

``f(x) = (|W x|^2 - |W|_F^2) / (m sqrt d) = <S, Z(x)>`` with ``W`` of shape (m, d),
``S = W^T W / m`` and the sensing matrix ``Z(x) = (x x^T - I) / sqrt(d)``
(docs/theory.md section 1). On the GOE design an input is a symmetric (d, d)
matrix ``G`` and ``f(G) = <S, G>``.

With ``replicas=R`` one module holds R independent networks on a leading axis: ``W`` of shape (R, m, d),
inputs (R, batch, d) or (R, batch, d, d), outputs (R, batch), ``S()`` of shape (R, d, d); every product is
a batched GEMM.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from quadflow.data.dataset import quadratic_form
from quadflow.data.seeds import gaussian_weights


class QuadraticNetwork(nn.Module):
    """Width-``m`` quadratic network on ``d`` inputs, one parameter ``W`` of shape (m, d).

    Args:
        d: input dimension; m: width (the teacher is the same class with ``m = m_star``).
        sigma0: standard deviation of the i.i.d. Gaussian initial weights (1 is the paper's).
        seed: draw ``W`` from quadflow's counter-based stream ``seed`` (reproducible across
            devices and precisions); None draws from torch's global generator. With ``replicas``, a
            sequence of R seeds (replica r drawn from stream ``seed[r]``).
        replicas: None (one network) or the number R of networks on the leading axis.
        dtype, device: of ``W`` (the draw is made in float64 on the CPU, then cast).
    """

    def __init__(self, d: int, m: int, sigma0: float = 1.0, seed=None, replicas: int | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        for name, value in (("d", d), ("m", m)) + ((("replicas", replicas),) if replicas is not None else ()):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QuadraticNetwork: {name} must be an integer >= 1, got {value!r}")
        if not (sigma0 > 0 and math.isfinite(sigma0)):
            raise ValueError(f"QuadraticNetwork: sigma0 must be a finite number > 0, got {sigma0!r}")
        self.d, self.m, self.replicas = d, m, replicas
        seeds = [seed] if replicas is None else (list(seed) if seed is not None else [None] * replicas)
        if len(seeds) != (replicas or 1):
            raise ValueError(f"QuadraticNetwork: {replicas} replicas need {replicas} seeds, got {len(seeds)}")
        w = torch.stack([gaussian_weights(m, d, s, sigma0) if s is not None
                         else sigma0 * torch.randn(m, d, dtype=torch.float64) for s in seeds])
        self.W = nn.Parameter((w[0] if replicas is None else w).to(device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (..., batch) for inputs (..., batch, d), or for GOE matrices (..., batch, d, d); the leading
        axis is the replicas' when the module has them."""
        w = self.W
        if x.dim() == w.dim() + 1:  # GOE matrices
            return quadratic_form(x, self.S().to(x.dtype), "goe")
        h = x.to(w.dtype) @ w.mT
        return ((h * h).sum(-1) - (w * w).sum((-2, -1))[..., None]) / (self.m * math.sqrt(self.d))

    def S(self) -> torch.Tensor:
        """The learned matrix ``S = W^T W / m``, shape (d, d), or (R, d, d) with replicas."""
        return self.W.mT @ self.W / self.m

    def has_analytic_gradient(self) -> bool:
        """True for this class itself: the objective then takes the chunked analytic gradient
        (:mod:`quadflow.models.risk`); a subclass that changes ``forward`` trains by autograd."""
        return type(self).forward is QuadraticNetwork.forward and [n for n, _ in self.named_parameters()] == ["W"]

    def extra_repr(self) -> str:
        return f"d={self.d}, m={self.m}" + (f", replicas={self.replicas}" if self.replicas else "")


def teacher_network(d: int, m: int, seed: int | None = None, **kwargs) -> QuadraticNetwork:
    """The teacher: a :class:`QuadraticNetwork` of width ``m = m_star`` in float64, frozen (no gradients)."""
    kwargs.setdefault("dtype", torch.float64)
    return QuadraticNetwork(d=d, m=m, seed=seed, **kwargs).requires_grad_(False)
