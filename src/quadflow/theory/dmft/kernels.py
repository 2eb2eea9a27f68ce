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


def cholesky_jittered(C: torch.Tensor, scale: float, jitter: float = 1e-12) -> torch.Tensor:
    """Lower Cholesky factor of ``C + jitter * scale * I``, the jitter raised tenfold (up to 1e-6) while the
    factorisation fails: C_r is smooth in time, hence nearly singular. ``scale = 0`` gives ``L = 0``."""
    if scale == 0.0:
        return torch.zeros_like(C)
    eye = torch.eye(C.shape[0], dtype=C.dtype, device=C.device)
    while jitter <= 1e-6:
        L, info = torch.linalg.cholesky_ex(C + jitter * scale * eye)
        if int(info) == 0:
            return L
        jitter *= 10.0
    raise ValueError("C_r is not positive semi-definite (Cholesky failed with jitter 1e-6): "
                     "the kernel estimates are too noisy; increase d_eff or samples")


@dataclass
class KernelRows:
    """Rows ``[a, b)`` (columns ``[0, b)``) of the sample side, each (b - a, b): ``A = (I + delta R)^{-1}``,
    ``C_r``, its lower Cholesky factor ``L`` (the noise of the process) and ``K = I - A``; ``scale`` is
    ``max |C_r|`` over rows ``[0, b)``."""

    A: torch.Tensor
    C_r: torch.Tensor
    L: torch.Tensor
    K: torch.Tensor
    scale: float


def sample_rows(C_e: torch.Tensor, R: torch.Tensor, A: torch.Tensor, L: torch.Tensor, a: int, delta: float,
                Delta: float, scale: float) -> KernelRows:
    """Rows ``[a, b)`` of the sample side (:func:`sample_side`) from the frozen rows ``[0, a)`` of ``A`` and
    ``L`` (both at least (b, b), lower triangular; their rows beyond ``a`` are ignored), in O((b - a) b^2).

    ``C_e``, ``R``: (b, b) parameter-side kernels, rows ``[a, b)`` new. ``scale``: ``max |C_r|`` of the frozen
    rows (0 when ``a = 0``), which sets the Cholesky jitter. The rows equal those of the full sample side
    and of its jittered Cholesky factor: every quantity is causal (row k needs rows <= k only).
    """
    b = C_e.shape[0]
    w = b - a
    eye = torch.eye(w, dtype=C_e.dtype, device=C_e.device)
    A_rows = C_e.new_zeros(w, b)
    A_rows[:, a:] = torch.linalg.solve_triangular(eye + delta * R[a:, a:], eye, upper=False, unitriangular=True)
    if a:
        A_rows[:, :a] = -A_rows[:, a:] @ (delta * R[a:, :a] @ A[:a, :a])
    A_all = torch.cat([A[:a, :b], A_rows])
    C_rows = A_rows @ C_e @ A_all.T + Delta * A_rows.sum(1, keepdim=True) * A_all.sum(1)[None, :]
    block = C_rows[:, a:]
    C_rows[:, a:] = (block + block.T) / 2
    scale = max(scale, float(C_rows.abs().max()))
    L_rows = torch.zeros_like(C_rows)
    if a:
        L_rows[:, :a] = torch.linalg.solve_triangular(L[:a, :a], C_rows[:, :a].T, upper=False).T
    L_rows[:, a:] = cholesky_jittered(C_rows[:, a:] - L_rows[:, :a] @ L_rows[:, :a].T, scale)
    K_rows = -A_rows
    K_rows[:, a:] += eye
    return KernelRows(A=A_rows, C_r=C_rows, L=L_rows, K=K_rows, scale=scale)


def row_change(L: torch.Tensor, K: torch.Tensor, new: KernelRows, a: int) -> float:
    """Residual of one fixed-point iteration over the rows ``[a, b)`` (dimensionless).

    ``max(|dC_r|_max / |C_r|_max, |dK|_inf)`` between the kernels the process ran with (``C_r = L L^T``,
    ``K``) and the new ones: the change of the noise covariance relative to its size, and of the memory
    kernel in the row-sum norm, i.e. its effect on Gamma relative to the ``-E`` term (coefficient 1).
    """
    b = new.C_r.shape[1]
    old_C = L[a:b, :b] @ L[:b, :b].T
    dc = float((new.C_r - old_C).abs().max()) / max(new.scale, 1e-300)
    dk = float((new.K - K[a:b, :b]).abs().sum(1).max())
    return max(dc, dk)
