"""Sample side of the DMFT (docs/theory.md section 4) in closed form, on the discrete time grid.

The scalar process ``r_k = sqrt(Delta) xi - omega_k - delta sum_{j<k} R_kj r_j``
(``omega`` centred Gaussian with covariance ``C_e``, ``delta = 1/(2 alpha)``) is
linear, so with ``A = (I + delta R)^{-1}`` (lower triangular, unit diagonal):

    C_r = A (Delta 1 1^T + C_e) A^T,     K = I - A,     E[r_k xi] = sqrt(Delta) (A 1)_k.

Observables: ``mse = C_e(k,k)/2``, ``train_loss = C_r(k,k)/4``,
``in_sample_error = (Delta - 2 Delta (A 1)_k + C_r(k,k))/4``. All matrices are
(T+1, T+1) over steps 0..T.

Minibatch SGD (each sample selected at each step with probability ``f``,
independently; docs/theory.md section 4.3): the memory term weights ``r_j`` by
``s_j / f``, so ``r = A_s v`` with ``A_s = (I + delta R diag(s/f))^{-1}`` and
``v = sqrt(Delta) xi 1 - omega``. Averaged over the selection, ``E[A_s] = A``
(so ``K`` and ``E[r xi]`` are GD's), while the second moments ``C_r = E[r r^T]``
and the covariance of the field ``U``, ``C_u = E[(s s^T / f^2) r r^T]``, follow
an exact row recursion (:class:`Selection`). With ``f = 1``, ``C_u = C_r``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SampleSide:
    """Kernels and observables implied by (C_e, R); tensors of shape (T+1, T+1) or (T+1,). ``C_u`` is the
    covariance of the field ``U`` (``C_r`` itself for full-batch GD)."""

    C_r: torch.Tensor
    C_u: torch.Tensor
    K: torch.Tensor
    A: torch.Tensor
    mse: torch.Tensor
    train_loss: torch.Tensor
    in_sample_error: torch.Tensor


class Selection:
    """Second moments of the minibatch sample process, filled row by row (module docstring).

    With ``f`` the selection probability and ``C = Delta 1 1^T + C_e``, for ``k > l``:

        P_kl = (A C)_lk - delta sum_{j<k} R_kj C_u(j, l)         (= E[(s_l/f) r_k r_l] = C_u(k, l))
        Q_kl = (A C)_lk - delta sum_{j<k} R_kj Qt(j, l)          (= E[r_k r_l] = C_r(k, l), also for l = k)

    with ``C_u(k, k) = Q_kk / f`` and ``Qt(j, l) = Q_jl`` for ``j >= l``, ``P_lj`` for ``j < l``. Row k needs
    rows ``< k`` only, in O(k^2). ``C_u`` and ``Qt`` are (size, size) float matrices kept between calls, so
    the marching solve adds one row per step.
    """

    def __init__(self, size: int, fraction: float, like: torch.Tensor):
        self.fraction = float(fraction)
        self.C_u = like.new_zeros(size, size)
        self.Q_t = like.new_zeros(size, size)

    def rows(self, A: torch.Tensor, R: torch.Tensor, C: torch.Tensor, a: int, delta: float):
        """Rows ``[a, b)`` of ``C_u`` and of ``C_r`` (each (b - a, b)) from ``A`` (rows ``[0, b)`` valid),
        ``R`` and ``C`` (both (b, b)); rows ``[0, a)`` of the kept matrices are read, rows ``[a, b)`` written."""
        b = C.shape[0]
        C_u, Q_t = self.C_u, self.Q_t
        for k in range(a, b):
            ac = A[:k + 1, :k + 1] @ C[:k + 1, k]
            r = delta * R[k, :k]
            p = ac[:k] - r @ C_u[:k, :k]
            C_u[k, :k] = p
            C_u[:k, k] = p
            Q_t[:k, k] = p
            q = ac - r @ Q_t[:k, :k + 1]
            Q_t[k, :k + 1] = q
            C_u[k, k] = q[k] / self.fraction
        C_r = Q_t[a:b, :b].clone()
        block = torch.tril(C_r[:, a:])
        C_r[:, a:] = block + torch.tril(block, -1).T
        return C_u[a:b, :b].clone(), C_r


def sample_side(C_e: torch.Tensor, R: torch.Tensor, delta: float, Delta: float, fraction: float = 1.0) -> SampleSide:
    """Sample side from the parameter-side kernels ``C_e`` and ``R`` (strictly lower): closed form for
    full-batch GD, the :class:`Selection` recursion for selection probability ``fraction < 1``."""
    eye = torch.eye(C_e.shape[0], dtype=C_e.dtype, device=C_e.device)
    A = torch.linalg.solve_triangular(eye + delta * R, eye, upper=False, unitriangular=True)
    if fraction == 1.0:
        C_r = A @ (C_e + Delta) @ A.T
        C_u = C_r = (C_r + C_r.T) / 2
    else:
        C_u, C_r = Selection(C_e.shape[0], fraction, C_e).rows(A, R, C_e + Delta, 0, delta)
    diag = torch.diagonal(C_r)
    return SampleSide(C_r=C_r, C_u=C_u, K=eye - A, A=A, mse=torch.diagonal(C_e) / 2, train_loss=diag / 4,
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
    ``C_r``, the field's covariance ``C_u`` (``C_r`` itself for full-batch GD), its lower Cholesky factor ``L``
    (the noise of the process) and ``K = I - A``; ``scale`` is ``max |C_u|`` over rows ``[0, b)``."""

    A: torch.Tensor
    C_r: torch.Tensor
    C_u: torch.Tensor
    L: torch.Tensor
    K: torch.Tensor
    scale: float


def sample_rows(C_e: torch.Tensor, R: torch.Tensor, A: torch.Tensor, L: torch.Tensor, a: int, delta: float,
                Delta: float, scale: float, selection: Selection | None = None) -> KernelRows:
    """Rows ``[a, b)`` of the sample side (:func:`sample_side`) from the frozen rows ``[0, a)`` of ``A`` and
    ``L`` (both at least (b, b), lower triangular; their rows beyond ``a`` are ignored), in O((b - a) b^2).

    ``C_e``, ``R``: (b, b) parameter-side kernels, rows ``[a, b)`` new. ``scale``: ``max |C_u|`` of the frozen
    rows (0 when ``a = 0``), which sets the Cholesky jitter. ``selection``: the minibatch moments (None for
    full-batch GD), whose frozen rows ``[0, a)`` are read and rows ``[a, b)`` written. The rows equal those
    of the full sample side and of its jittered Cholesky factor: every quantity is causal (row k needs rows
    <= k only).
    """
    b = C_e.shape[0]
    w = b - a
    eye = torch.eye(w, dtype=C_e.dtype, device=C_e.device)
    A_rows = C_e.new_zeros(w, b)
    A_rows[:, a:] = torch.linalg.solve_triangular(eye + delta * R[a:, a:], eye, upper=False, unitriangular=True)
    if a:
        A_rows[:, :a] = -A_rows[:, a:] @ (delta * R[a:, :a] @ A[:a, :a])
    if selection is None:  # C_rows = A_rows (C_e + Delta 1 1^T) [A[:a]; A_rows]^T, without stacking the k x k rows
        v = A_rows @ C_e + Delta * A_rows.sum(1, keepdim=True)  # (w, b); A's rows vanish beyond their diagonal
        C_rows = torch.cat([v[:, :a] @ A[:a, :a].T, v @ A_rows.T], dim=1)
        block = C_rows[:, a:]
        C_rows[:, a:] = (block + block.T) / 2
        U_rows = C_rows
    else:
        U_rows, C_rows = selection.rows(torch.cat([A[:a, :b], A_rows]), R, C_e + Delta, a, delta)
    scale = max(scale, float(U_rows.abs().max()))
    L_rows = torch.zeros_like(U_rows)
    if a:
        L_rows[:, :a] = torch.linalg.solve_triangular(L[:a, :a], U_rows[:, :a].T, upper=False).T
    L_rows[:, a:] = cholesky_jittered(U_rows[:, a:] - L_rows[:, :a] @ L_rows[:, :a].T, scale)
    K_rows = -A_rows
    K_rows[:, a:] += eye
    return KernelRows(A=A_rows, C_r=C_rows, C_u=U_rows, L=L_rows, K=K_rows, scale=scale)


def row_change(L: torch.Tensor, K: torch.Tensor, new: KernelRows, a: int) -> float:
    """Residual of one fixed-point iteration over the rows ``[a, b)`` (dimensionless).

    ``max(|dC_u|_max / |C_u|_max, |dK|_inf)`` between the kernels the process ran with (``C_u = L L^T``,
    ``K``) and the new ones: the change of the noise covariance relative to its size, and of the memory
    kernel in the row-sum norm, i.e. its effect on Gamma relative to the ``-E`` term (coefficient 1).
    """
    b = new.C_u.shape[1]
    old_C = L[a:b, :b] @ L[:b, :b].T
    dc = float((new.C_u - old_C).abs().max()) / max(new.scale, 1e-300)
    dk = float((new.K - K[a:b, :b]).abs().sum(1).max())
    return max(dc, dk)
