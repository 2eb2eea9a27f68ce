"""The DMFT at long times: a reservoir noise and a compressed history, so that a step costs the same at any t.

The exact marching solve (:mod:`quadflow.theory.dmft.solver`) reads its whole history at every step and keeps
(T+1) x (T+1) kernels: O(T^2) time and memory. Two changes remove both.

**The noise from a reservoir.** With ``A = (I + delta R)^{-1}``, the field of the effective process is
``Gamma = -A E + U`` and its noise is ``U = c A V`` (``c = 1/sqrt(2 alpha d)`` per coordinate of Sym(d)), where
each coordinate of ``V`` is an independent copy of the sample side's input ``sqrt(Delta) xi - omega``, ``omega``
centred Gaussian with covariance ``C_e`` (docs/theory.md section 4). Each copy of the process realises its ``V``
from a reservoir of D samples:

    V_k = sqrt(Delta) xi - sqrt(2 D / d) O E_k,

``xi`` (B, D) i.i.d. N(0, 1) and ``O`` a fixed random orthogonal map of R^D (:class:`Rotation`), so that the
coordinates of ``O E`` are Gaussian with covariance ``E_k . E_j / D`` and ``V`` has covariance
``Delta + C_e`` (the copy's own ``C_e``, which is the kernel up to O(1/d)). Then

    Gamma_k = c X_k - F_k,   X = A V,   F = A E,

and both follow the recursion ``Y_k = y_k - delta sum_{j<k} R_kj Y_j``: the noise needs neither the Cholesky
factor of ``C_r`` (a near-singular matrix, 1e3-fold cancellation) nor a history of GOE draws, and ``C_e`` enters
the dynamics only through the realised path. ``X`` is the reservoir's residual ``r``, so the train loss is
``mean(X_k^2) / 4`` over its samples and copies (relative noise ``sqrt(2 / (B D))``), the in-sample error
``mean((X_k - sqrt(Delta) xi)^2) / 4``. The tangents (``U`` held fixed) carry ``Z = -A dE``, ``dGamma_k = Z_k
+ P_k``, and ``R_kj = (1/D) mean_b <dS_k, P_j>`` as in the exact solve.

**The history compressed.** The sums ``sum_j R_kj Y_j`` run over columns (:class:`History`): the last
``recent`` steps one by one, older steps merged into blocks whose width stays below ``resolution`` times both
their age (the lag to the current step) and their start time, so that O((1/resolution) log T) columns cover
T steps. A block keeps the mean of ``F``, ``X``, ``Z`` over its steps and, per tangent channel, the sum of its
probes, so ``sum_{j in block} R_kj = (1/D) mean_b <dS_k, sum_{j in block} P_j>`` is exact and the only error is
``Y_j`` replaced by its block mean. ``resolution = 0`` keeps every step: the reservoir solve without
approximation, O(T^2).
"""
from __future__ import annotations

import heapq
import math
import time

import numpy as np
import torch

from quadflow.data import generator
from quadflow.problem import Ratios
from quadflow.theory.dmft.process import SUM_DTYPE, EffectiveStep, orthogonal_probes, starting_states
from quadflow.theory.results import CURVES, DMFTResult, theory_curves

RECENT = 32  # steps kept one by one before merging
PROBE_BLOCK = 512  # probes are drawn (and made orthogonal across time) this many steps at a time
ROTATION_ROUNDS = 3  # rounds of random signs and Hartley transform in the reservoir's rotation


class Rotation:
    """A fixed random orthogonal map of R^D per copy: ``ROTATION_ROUNDS`` rounds of random signs, a random
    permutation and the orthonormal discrete Hartley transform ``H x = (Re - Im)(FFT x) / sqrt(D)`` (O(D log D)).
    Applied to (B, D) float tensors, row b with copy b's map."""

    def __init__(self, samples: int, D: int, g: torch.Generator, device):
        self.signs = [torch.randint(0, 2, (samples, D), generator=g, device=device).mul_(2).sub_(1)
                      for _ in range(ROTATION_ROUNDS)]
        self.perms = [torch.argsort(torch.rand(samples, D, generator=g, device=device), dim=1)
                      for _ in range(ROTATION_ROUNDS)]
        self.scale = 1.0 / math.sqrt(D)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for signs, perm in zip(self.signs, self.perms):
            f = torch.fft.fft(torch.gather(x * signs, 1, perm), dim=1)
            x = (f.real - f.imag) * self.scale
        return x


class History:
    """The compressed past: up to ``capacity`` columns in slots (their order in time kept aside, the products
    over them do not need it), each holding the block means of the process's memory variables
    ``values`` (capacity, N) and the per-channel probe sums ``probes`` (capacity, B P D), both ``SUM_DTYPE``.
    A block ``[start, start + width)`` merges with its successor when the merged width is at most
    ``resolution * min(age, start)``, ``age`` the steps from the merged block's end to the current step, and
    that end lies at least ``recent`` steps back."""

    def __init__(self, capacity: int, n_values: int, n_probes: int, resolution: float, recent: int, device):
        self.values = torch.zeros(capacity, n_values, dtype=SUM_DTYPE, device=device)
        self.probes = torch.zeros(capacity, n_probes, dtype=SUM_DTYPE, device=device)
        self.resolution, self.recent = resolution, recent
        self.start = [0] * capacity  # per slot: its block's first step and width
        self.width = [0] * capacity
        self.order: list[int] = []  # slots, oldest first
        self.free = list(range(capacity))  # a heap: the lowest free slot is used first
        self.top = 0  # slots [0, top) hold every column

    def __len__(self) -> int:
        return len(self.order)

    def append(self, step: int, values: torch.Tensor, probes: torch.Tensor) -> None:
        """Add step ``step`` as a column of width 1 (``values`` (N,), ``probes`` (B P D,))."""
        if not self.free:
            raise RuntimeError(f"the compressed history is full ({self.values.shape[0]} columns): raise its capacity")
        slot = heapq.heappop(self.free)
        self.values[slot] = values
        self.probes[slot] = probes
        self.start[slot], self.width[slot] = step, 1
        self.order.append(slot)
        self.top = max(self.top, slot + 1)

    def compress(self, now: int) -> None:
        """Merge adjacent blocks while the rule allows (``now``: the next step to be taken)."""
        if self.resolution <= 0:
            return
        order, start, width = self.order, self.start, self.width
        i = 0
        while i + 1 < len(order):
            a, b = order[i], order[i + 1]
            end = start[b] + width[b]
            merged = end - start[a]
            age = now - end
            if age >= self.recent and merged <= self.resolution * min(age, start[a]):
                wa, wb = width[a], width[b]
                self.values[a].mul_(wa / merged).add_(self.values[b], alpha=wb / merged)
                self.probes[a].add_(self.probes[b])
                self.values[b].zero_()
                self.probes[b].zero_()
                width[a] = merged
                del order[i + 1]
                heapq.heappush(self.free, b)
            else:
                i += 1
        while self.top and self.top - 1 in self.free:
            self.top -= 1


def capacity_for(steps: int, resolution: float, recent: int = RECENT) -> int:
    """Columns needed to cover ``steps`` steps: all of them without compression, else ``recent`` plus two
    geometric grids of ratio ``1 + resolution`` (by age and by start time), with margin."""
    if resolution <= 0:
        return steps + 1
    return min(steps + 1, 2 * recent + int(4.0 / resolution * math.log(max(steps, 2))) + 64)


def history_bytes(steps: int, d_eff: int, samples: int, channels: int, resolution: float) -> int:
    """Bytes of the compressed history (:class:`History` at :func:`capacity_for`), the per-copy curves and one
    block of probes."""
    D = d_eff * (d_eff + 1) // 2
    size = torch.empty((), dtype=SUM_DTYPE).element_size()
    column = samples * D * (2 + 2 * channels) * size
    return capacity_for(steps, resolution) * column + 5 * samples * (steps + 1) * 8 + PROBE_BLOCK * samples * D * 4


def solve_compressed(p: Ratios, h: float, steps: int, d_eff: int, samples: int, seed: int, channels: int,
                     resolution: float, device: torch.device, dtype: torch.dtype, tangent_dtype: torch.dtype,
                     update: dict, delta: float, noisy_test: bool, spectrum_steps=(), callback=None) -> DMFTResult:
    """The long-time solve (module docstring) of a full-batch update. ``update``: the effective process's
    optimiser keywords (:class:`EffectiveStep`); ``delta``: the Onsager ratio of the sample side; ``resolution``
    (>= 0): the largest block width relative to its age and start (0: every step kept); the rest as
    :func:`quadflow.theory.dmft.solve_dmft`'s arguments.

    Returns a :class:`quadflow.theory.DMFTResult` over steps 0..steps with the ``CURVES`` and, as ``stderr``,
    the spread of the copies' curves over sqrt(B) (the copies share the kernel R); no kernels;
    ``method == "compressed"``; ``windows`` holds one entry whose ``columns`` is the largest number of history
    columns used."""
    start_time = time.perf_counter()
    q = p.at(d_eff)
    s_star, w0 = starting_states(q, samples, seed, device, dtype)
    proc = EffectiveStep(s_star, w0, alpha=p.alpha, h=h, lam=p.lam, channels=channels, spectrum_steps=spectrum_steps,
                         tangent_dtype=tangent_dtype, **update)
    sym, B, P = proc.sym, samples, channels
    D, td, f64 = sym.D, proc.tangent_dtype, torch.float64
    g_probe, g_reservoir = generator(seed, 102, device), generator(seed, 103, device)
    rotate = Rotation(B, D, g_reservoir, device)
    label_noise = math.sqrt(p.Delta) * torch.randn(B, D, generator=g_reservoir, device=device, dtype=f64).to(dtype)
    c_field, c_omega = 1.0 / math.sqrt(2.0 * p.alpha * d_eff), math.sqrt(2.0 * D / d_eff)
    hist = History(capacity_for(steps, resolution), B * D * (2 + P), B * P * D, resolution, RECENT, device)
    e_k, ds_k = w0.new_empty(B, D), torch.empty(B, P, D, dtype=td, device=device)
    column = torch.empty(2 + P, B, D, dtype=SUM_DTYPE, device=device)  # F_k, X_k and the P tangents' Z_k
    column_probes = torch.zeros(B, P, D, dtype=SUM_DTYPE, device=device)
    per_copy = torch.empty(4, B, steps + 1, dtype=f64, device=device)  # mse, trace, train_loss, in_sample_error
    tr_star = torch.diagonal(s_star, dim1=-2, dim2=-1).sum(-1).to(f64)
    state, probes, columns = (proc.w, proc.dw, None, None, None, None), None, 0
    for k in range(steps + 1):
        proc.observe(k, state, e_k, ds_k)
        # delta sum_j R_kj Y_j over the columns (none at step 0), R_kj = (1/D) mean_b <dS_k, P_j>
        r_row = (hist.probes[:hist.top] @ ds_k.reshape(-1).to(SUM_DTYPE)).mul_(delta / (D * B))
        past = (r_row @ hist.values[:hist.top]).view(2 + P, B, D).to(f64)
        f_k = e_k - past[0]  # (A E)_k
        x_k = label_noise - c_omega * rotate(e_k) - past[1]  # (A V)_k: the reservoir's residuals
        z_k = ds_k.to(f64).neg_().sub_(past[2:].transpose(0, 1))  # -(A dE)_k
        per_copy[0, :, k] = e_k.square().sum(1) / d_eff
        per_copy[1, :, k] = (sym.trace(e_k) + tr_star) / d_eff
        per_copy[2, :, k] = x_k.square().mean(1) / 4
        per_copy[3, :, k] = (x_k - label_noise).square().mean(1) / 4
        if k % 256 == 0 and not bool(torch.isfinite(per_copy[:, :, k]).all()):
            raise ValueError(f"h={h} is too large for stability: the effective process diverged by step {k} "
                             f"(t={k * h:.3g}); reduce h")
        if callback is not None:
            callback(1, 0.0, k + 1)
        if k == steps:
            break
        if k % PROBE_BLOCK == 0:
            probes = orthogonal_probes(min(steps - k, PROBE_BLOCK), B, d_eff, g_probe, device, td)
        probe = probes[k % PROBE_BLOCK]
        dgamma = z_k.to(td)
        dgamma[:, k % P] += probe
        column[0], column[1], column[2:] = f_k, x_k, z_k.transpose(0, 1)
        column_probes.zero_()
        column_probes[:, k % P] = probe
        hist.append(k, column.view(-1), column_probes.view(-1))
        hist.compress(k + 1)
        columns = max(columns, len(hist))
        state = proc.advance(k, state, (c_field * x_k).sub_(f_k), dgamma)
    if not bool(torch.isfinite(per_copy).all()):
        raise ValueError(f"h={h} is too large for stability: the effective process diverged; reduce h")
    mse, trace, train, in_sample = per_copy.cpu().numpy()
    copies = theory_curves(mse, train, in_sample, trace, p.lam, p.Delta, noisy_test)
    spread = (lambda v: v.std(0, ddof=1) / math.sqrt(B)) if B > 1 else (lambda v: np.full(v.shape[1], np.nan))
    return DMFTResult(
        t=h * np.arange(steps + 1), step=np.arange(steps + 1), **{k: copies[k].mean(0) for k in CURVES},
        stderr={k: spread(copies[k]) for k in CURVES},
        spectrum=[proc.spectra[s].reshape(-1).double().cpu().numpy() for s in spectrum_steps],
        spectrum_t=h * np.array(spectrum_steps, dtype=float), converged=True, iterations=1, residuals=[0.0],
        windows=[{"start": 0, "stop": steps + 1, "iterations": 1, "residual": 0.0, "converged": True,
                  "columns": columns, "resolution": resolution}],
        passes=1.0, damping=0.0, method="compressed", d_eff=d_eff, samples=samples,
        wall_time=time.perf_counter() - start_time, kernels=None)
