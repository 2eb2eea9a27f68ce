"""Sample side of the DMFT (docs/theory.md section 4) in closed form, on the discrete time grid.

The scalar process ``r_k = sqrt(Delta) xi - omega_k - delta sum_{j<k} R_kj r_j``
(``omega`` centred Gaussian with covariance ``C_e``, ``delta = 1/(2 alpha)``) is
linear, so with ``A = (I + delta R)^{-1}`` (lower triangular, unit diagonal):

    C_r = A (Delta 1 1^T + C_e) A^T,     K = I - A,     E[r_k xi] = sqrt(Delta) (A 1)_k.

Observables: ``mse = C_e(k,k)/2``, ``train_loss = C_r(k,k)/4``,
``in_sample_error = (Delta - 2 Delta (A 1)_k + C_r(k,k))/4``. All matrices are
(T+1, T+1) over steps 0..T.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SampleSide:
    """Kernels and observables implied by (C_e, R); tensors of shape (T+1, T+1) or (T+1,)."""

    C_r: torch.Tensor
    K: torch.Tensor
    A: torch.Tensor
    mse: torch.Tensor
    train_loss: torch.Tensor
    in_sample_error: torch.Tensor


def sample_side(C_e: torch.Tensor, R: torch.Tensor, delta: float, Delta: float) -> SampleSide:
    """Closed-form sample side from the parameter-side kernels ``C_e`` and ``R`` (strictly lower)."""
    eye = torch.eye(C_e.shape[0], dtype=C_e.dtype, device=C_e.device)
    A = torch.linalg.solve_triangular(eye + delta * R, eye, upper=False, unitriangular=True)
    C_r = A @ (C_e + Delta) @ A.T
    C_r = (C_r + C_r.T) / 2
    diag = torch.diagonal(C_r)
    return SampleSide(C_r=C_r, K=eye - A, A=A, mse=torch.diagonal(C_e) / 2, train_loss=diag / 4,
                      in_sample_error=(Delta - 2 * Delta * A.sum(1) + diag) / 4)


def noise_factor(C_r: torch.Tensor, jitter: float = 1e-12) -> torch.Tensor:
    """Lower Cholesky factor ``L`` of ``C_r`` (so ``U_k`` depends on C_r up to k only).

    A relative jitter ``jitter * max diag`` is added and raised tenfold (up to
    1e-6) while the factorisation fails; C_r is smooth in time, hence nearly
    singular. A zero C_r gives ``L = 0``.
    """
    scale = float(torch.diagonal(C_r).abs().max())
    if scale == 0.0:
        return torch.zeros_like(C_r)
    eye = torch.eye(C_r.shape[0], dtype=C_r.dtype, device=C_r.device)
    while jitter <= 1e-6:
        L, info = torch.linalg.cholesky_ex(C_r + jitter * scale * eye)
        if int(info) == 0:
            return L
        jitter *= 10.0
    raise ValueError("C_r is not positive semi-definite (Cholesky failed with jitter 1e-6): "
                     "the kernel estimates are too noisy; increase d_eff or samples")


def kernel_change(old_C_r: torch.Tensor, old_K: torch.Tensor, new: SampleSide) -> float:
    """Residual of one fixed-point iteration (dimensionless).

    ``max(|dC_r|_max / |C_r|_max, |dK|_inf)``: the change of the noise covariance
    relative to its size, and of the memory kernel in the row-sum norm, i.e. its
    effect on Gamma relative to the ``-E`` term (which has coefficient 1).
    """
    dc = float((new.C_r - old_C_r).abs().max() / new.C_r.abs().max().clamp_min(1e-300))
    dk = float((new.K - old_K).abs().sum(1).max())
    return max(dc, dk)
