"""Parameter side of the DMFT (docs/theory.md section 4): the effective matrix process.

A batch of ``B`` independent copies of the d_eff x d_eff process

    Gamma_k = -E_k + sum_{j<k} K_kj E_j + U_k,        E_k = S_k - S*
    W_{k+1} = W_k M_k,   M_k = (1 - 2 h lam) I + 2 h Gamma_k,   S_k = W_k^T W_k / m

(discrete GD, the same map the simulation iterates), with ``U_k = c sum_{j<=k}
L_kj G_j``, ``c = sqrt(1/(4 alpha))``, ``C_r = L L^T`` and ``G_j`` i.i.d. GOE.
Alongside it runs the forward-mode tangent driven by one probe ``P_j`` per
time (U held fixed, memory feedback included):

    dGamma_k = -dE_k + sum_{j<k} K_kj dE_j + P_k,   dW_{k+1} = dW_k M_k + 2 h W_k dGamma_k

so that ``R_kj ~ (1/D) <P_j, dS_k>`` (Hutchinson; ``D = d(d+1)/2``; exact in
expectation because the probes have i.i.d. N(0, 1) coordinates in an
orthonormal basis of Sym(d)). With ``channels = P`` there are P tangents, the
probe of time j feeding tangent ``j mod P`` only, which cuts the cross terms
``<P_j, J_ki P_i>`` that dominate the noise. All random numbers live in :class:`Draws`,
drawn once and reused at every fixed-point iteration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from quadflow.data import Seeds, generator, initial_weights, teacher_matrix
from quadflow.problem import Problem


@dataclass(frozen=True)
class Draws:
    """Frozen randomness of the effective process (all on one device and dtype).

    s_star: (B, d, d) teachers ``W*^T W* / m_star``, ``W*`` i.i.d. N(0, 1).
    w0: (B, m, d) initial weights, i.i.d. N(0, sigma0^2).
    goe: (T + 1, B, d, d) GOE matrices (off-diagonal variance 1/d, diagonal 2/d).
    probes: (T, B, d, d) symmetric probes with i.i.d. N(0, 1) coordinates in an
        orthonormal basis of Sym(d), exactly orthogonal across time (in blocks
        of D times when T > D).
    """

    s_star: torch.Tensor
    w0: torch.Tensor
    goe: torch.Tensor
    probes: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(T, B, m, d)``."""
        b, m, d = self.w0.shape
        return self.probes.shape[0], b, m, d


def sym_from_coords(coords: torch.Tensor, d: int) -> torch.Tensor:
    """Map coordinates (..., D) in the Frobenius-orthonormal basis of Sym(d) to matrices (..., d, d)."""
    i, j = torch.triu_indices(d, d, device=coords.device)
    scale = torch.where(i == j, 1.0, 1.0 / math.sqrt(2.0)).to(coords.dtype)
    out = coords.new_zeros(*coords.shape[:-1], d, d)
    out[..., i, j] = coords * scale
    out[..., j, i] = coords * scale
    return out


def orthogonal_probes(steps: int, samples: int, d: int, g: torch.Generator, device, dtype) -> torch.Tensor:
    """(steps, samples, d, d) probes: Haar-orthogonal directions scaled by sqrt(D), in blocks of D times."""
    D = d * (d + 1) // 2
    blocks = []
    for start in range(0, steps, D):
        width = min(D, steps - start)
        gauss = torch.randn(samples, D, width, generator=g, device=device, dtype=dtype)
        q, _ = torch.linalg.qr(gauss)
        blocks.append(math.sqrt(D) * q)
    coords = torch.cat(blocks, dim=2).permute(2, 0, 1)
    return sym_from_coords(coords, d)


def goe(shape: tuple[int, ...], d: int, g: torch.Generator, device, dtype) -> torch.Tensor:
    """GOE matrices of shape (*shape, d, d): off-diagonal variance 1/d, diagonal 2/d."""
    a = torch.randn(*shape, d, d, generator=g, device=device, dtype=dtype)
    return (a + a.transpose(-1, -2)) / math.sqrt(2.0 * d)


def draw(q: Problem, steps: int, samples: int, seed: int, device: torch.device, dtype: torch.dtype) -> Draws:
    """Draw every random number of the effective process at dimension ``q.d`` from ``seed``.

    Sample ``b`` has the teacher and initialisation of ``quadflow.simulate`` (and
    ``solve_population``) at dimension ``q.d`` with seed ``seed + b``; the GOE
    draws and the probes come from their own streams.
    """
    seeds = [Seeds.from_master(seed + b) for b in range(samples)]
    s_star = torch.stack([teacher_matrix(q, s.teacher) for s in seeds]).to(device, dtype)
    w0 = torch.stack([initial_weights(q, s.init) for s in seeds]).to(device, dtype)
    g_noise, g_probe = (generator(seed, counter, device) for counter in (101, 102))
    return Draws(s_star=s_star, w0=w0, goe=goe((steps + 1, samples), q.d, g_noise, device, dtype),
                 probes=orthogonal_probes(steps, samples, q.d, g_probe, device, dtype))


@dataclass
class PassResult:
    """One pass of the effective process.

    C_e: (B, T+1, T+1) per-sample ``(2/d) Tr(E_k E_j)``.
    R: (B, T+1, T+1) per-sample Hutchinson estimates of ``(1/D) Tr dS_k/dGamma_j``,
        strictly lower-triangular (the factor h is inside, as in discrete GD).
    spectra: {step: (B, d) eigenvalues of S_step}.
    E: (T+1, B, d, d) errors ``S_k - S*`` when asked for (``keep_states``), else None.
    """

    C_e: torch.Tensor
    R: torch.Tensor
    spectra: dict
    E: torch.Tensor | None = None


def run_pass(draws: Draws, K: torch.Tensor, L: torch.Tensor, *, alpha: float, h: float, lam: float,
             channels: int = 1, spectrum_steps=(), block: int = 32, keep_states: bool = False) -> PassResult:
    """Run the effective process and its tangent(s) for T steps under kernels ``K`` and ``L``.

    Args:
        draws: frozen randomness (T steps, B samples, width m, dimension d).
        K: (T+1, T+1) strictly lower-triangular memory kernel.
        L: (T+1, T+1) lower-triangular factor of C_r (``U = L @ G / sqrt(4 alpha)``).
        alpha, h, lam: sample ratio, step size, l2 strength.
        channels: number P of tangents; tangent c receives the probes of the times
            j = c mod P only, so the estimate of column j of R picks up cross terms
            from T/P injections instead of T (cost: P tangents).
        spectrum_steps: steps at which the eigenvalues of S are kept.
        block: the memory sum over past blocks is one matrix product per block of
            this many steps (the in-block part is a short vector product per step).
        keep_states: also return the error trajectory ``E`` (diagnostics, tests).

    Cost: O(T m d^2 B (2 + 3P)) for the matrix products, O(T^2 d^2 B (1 + P)) for memory and noise.
    """
    T, B, m, d = draws.shape
    P = channels
    n_flat = B * d * d
    noise = (L @ draws.goe.reshape(T + 1, n_flat)).mul_(1.0 / math.sqrt(4.0 * alpha)).reshape(T + 1, B, d, d)
    hist = draws.w0.new_empty(T + 1, 1 + P, B, d, d)  # [E_k, dS_k of each channel]
    flat = hist.view(T + 1, (1 + P) * n_flat)
    eye = torch.eye(d, dtype=hist.dtype, device=hist.device)
    w, dw = draws.w0.clone(), draws.w0.new_zeros(P, B, m, d)
    spectra = {}
    for start in range(0, T + 1, block):
        stop = min(start + block, T + 1)
        past = (K[start:stop, :start] @ flat[:start]).view(stop - start, 1 + P, B, d, d)
        for k in range(start, stop):
            s = w.transpose(1, 2) @ w / m
            ds = dw.transpose(2, 3) @ w
            hist[k, 0] = s - draws.s_star
            hist[k, 1:] = (ds + ds.transpose(2, 3)) / m
            if k in spectrum_steps:
                spectra[k] = torch.linalg.eigvalsh(s)
            if k == T:
                break
            mem = past[k - start] + (K[k, start:k] @ flat[start:k]).view(1 + P, B, d, d)
            gamma = mem[0] - hist[k, 0] + noise[k]
            dgamma = mem[1:] - hist[k, 1:]
            dgamma[k % P] += draws.probes[k]
            both = torch.cat([w[None], dw]) @ ((1.0 - 2.0 * h * lam) * eye + 2.0 * h * gamma)
            dw = both[1:] + 2.0 * h * (w @ dgamma)
            w = both[0]
    e = hist[:, 0].reshape(T + 1, B, d * d).transpose(0, 1)
    C_e = (2.0 / d) * (e @ e.transpose(1, 2))
    R = C_e.new_zeros(B, T + 1, T + 1)
    for c in range(P):
        ds = hist[:, 1 + c].reshape(T + 1, B, d * d).transpose(0, 1)
        pr = draws.probes[c::P].reshape(-1, B, d * d).transpose(0, 1)
        R[:, :, c:T:P] = (ds @ pr.transpose(1, 2)) / (d * (d + 1) // 2)
    return PassResult(C_e=C_e, R=torch.tril(R, diagonal=-1), spectra=spectra,
                      E=hist[:, 0].clone() if keep_states else None)
