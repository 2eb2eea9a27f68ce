"""Parameter side of the DMFT (docs/theory.md section 4): the effective matrix process.

A batch of ``B`` independent copies of the d_eff x d_eff process

    Gamma_k = -E_k + sum_{j<k} K_kj E_j + U_k,        E_k = S_k - S*
    W_{k+1} = W_k M_k,   M_k = (1 - 2 h lam) I + 2 h Gamma_k,   S_k = W_k^T W_k / m

(discrete GD, the same map the simulation iterates), with ``U_k = c sum_{j<=k}
L_kj G_j``, ``c = sqrt(1/(4 alpha))``, ``C_r = L L^T`` and ``G_j`` i.i.d. GOE.
Alongside it runs the forward-mode tangent driven by one probe ``P_j`` per
time (U held fixed, memory feedback included):

    dGamma_k = -dE_k + sum_{j<k} K_kj dE_j + P_k,   dW_{k+1} = dW_k M_k + 2 h W_k dGamma_k

With momentum ``mu > 0`` the step is ``torch.optim.SGD(lr, momentum=mu, dampening=tau, nesterov)`` on the
effective gradient ``g_k = -2 W_k (Gamma_k - lam I)`` (quadflow's loss scaling), written with
``G_k = -g_k / 2 = W_k (Gamma_k - lam I)``:

    V_0 = G_0,   V_k = mu V_{k-1} + (1 - tau) G_k,   W_{k+1} = W_k + 2 lr (G_k + mu V_k  if nesterov  else V_k)

and the tangent is the same linear recursion on ``dG_k = dW_k (Gamma_k - lam I) + W_k dGamma_k`` and
``dV_k``. The time axis stays ``t = step * h`` whatever ``lr``; with ``mu = 0`` the step is the GD map
above with ``h`` replaced by ``lr``.

With ``betas = (b1, b2)`` the step is ``torch.optim.Adam(lr, betas, eps)`` (``torch.optim.AdamW`` with
``weight_decay = wd``) on the same ``g_k``, elementwise over the m x d entries of ``W``:

    m_k = b1 m_{k-1} + (1 - b1) g_k,   v_k = b2 v_{k-1} + (1 - b2) g_k^2,   m_{-1} = v_{-1} = 0
    mh = m_k / (1 - b1^(k+1)),   s = sqrt(v_k / (1 - b2^(k+1))),   W_{k+1} = (1 - lr wd) W_k - lr mh / (s + eps)

(``torch.optim.RMSprop(lr, alpha, eps)`` is the case ``betas = (0, alpha)`` without the bias corrections,
``mh = m_k``, ``s = sqrt(v_k)``) and its tangent ``dm_k = b1 dm_{k-1} + (1 - b1) dg_k``, ``dv_k = b2 dv_{k-1} + 2 (1 - b2) g_k dg_k``,
``dW_{k+1} = (1 - lr wd) dW_k - lr [dmh / (s + eps) - mh dvh / (2 s (s + eps)^2)]`` (the last term 0 where
``s = 0``, where ``v_k`` and ``dv_k`` vanish), ``dg_k = -2 dG_k``.

With ``rk4`` the rows are the RK4 evaluation points, four per step (docs/theory.md section 4.4): at point
``e`` (stage ``e mod 4`` of step ``e // 4``) the slope is ``F_e = 2 W_e (Gamma_e - lam I)``, and with
``W_base`` the step's start and ``A`` the sum of its slopes so far (weights 1, 2, 2, 1)

    W_{e+1} = W_base + (lr/2) F_e,  W_base + (lr/2) F_e,  W_base + lr F_e,  W_base + (lr/6) A   (stages 0-3)

the last being the next step's start; the tangent is the same linear recursion on
``dF_e = 2 (dW_e (Gamma_e - lam I) + W_e dGamma_e)``.

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
    """Frozen randomness of the effective process (all on one device).

    s_star: (B, d, d) teachers ``W*^T W* / m_star``, ``W*`` i.i.d. N(0, 1), in the process dtype.
    w0: (B, m, d) initial weights, i.i.d. N(0, sigma0^2), in the process dtype.
    goe: (T + 1, B, D) GOE matrices (off-diagonal variance 1/d, diagonal 2/d) in the coordinates of
        :class:`SymCoords` (``D = d(d+1)/2``), in the dtype of the noise and memory sums (``SUM_DTYPE`` by
        default).
    probes: (T, B, D) symmetric probes in the same coordinates, i.i.d. N(0, 1), exactly orthogonal across
        time (in blocks of D times when T > D).
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


class SymCoords:
    """Coordinates of symmetric d x d matrices in a Frobenius-orthonormal basis of Sym(d): the upper
    triangle, row by row, off-diagonal entries times sqrt(2), so ``pack(A) . pack(B) = Tr(A B)``.

    The effective process keeps its histories (errors, tangents, noise, probes) in these D = d(d+1)/2
    coordinates: every inner product and time sum over the history reads half the bytes of the matrices."""

    def __init__(self, d: int, device=None):
        i, j = torch.triu_indices(d, d, device=device)
        self.d, self.D = d, len(i)
        self.upper = i * d + j  # (D,) flat index of each coordinate's entry
        self.lower = j * d + i  # (D,) flat index of its mirror entry
        self.diagonal = torch.nonzero(i == j).view(-1)  # (d,) the coordinates on the diagonal
        full = torch.empty(d * d, dtype=torch.long, device=device)
        full[i * d + j] = torch.arange(self.D, device=device)
        full[j * d + i] = torch.arange(self.D, device=device)
        self.full = full  # (d^2,) the coordinate of each entry
        self._scale = torch.where(i == j, 1.0, math.sqrt(2.0)).to(torch.float64)
        self._scales: dict = {}

    def _scale_as(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._scales:
            self._scales[dtype] = self._scale.to(dtype)
        return self._scales[dtype]

    def pack(self, M: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(..., d, d) symmetric -> (..., D) coordinates (into ``out`` when given)."""
        return torch.mul(M.flatten(-2)[..., self.upper], self._scale_as(M.dtype), out=out)

    def pack_symmetrised(self, M: torch.Tensor, scale: float = 1.0, out: torch.Tensor | None = None) -> torch.Tensor:
        """(..., d, d) any square -> (..., D) coordinates of ``scale (M + M^T)`` (into ``out`` when given),
        without forming ``M + M^T``."""
        flat = M.flatten(-2)
        both = flat[..., self.upper].add_(flat[..., self.lower])
        return torch.mul(both, self._scale_as(M.dtype) * scale, out=out)

    def trace(self, c: torch.Tensor) -> torch.Tensor:
        """(..., D) coordinates -> (...,) traces of the matrices."""
        return c[..., self.diagonal].sum(-1)

    def unpack(self, c: torch.Tensor) -> torch.Tensor:
        """(..., D) coordinates -> (..., d, d) symmetric matrices."""
        return (c / self._scale_as(c.dtype))[..., self.full].unflatten(-1, (self.d, self.d))


def orthogonal_probes(steps: int, samples: int, d: int, g: torch.Generator, device, dtype) -> torch.Tensor:
    """(steps, samples, D) probe coordinates in ``dtype``: Haar-orthogonal directions of R^D scaled by sqrt(D), in
    blocks of D times. The Gaussians are drawn in float64 (one stream whatever ``dtype``) and orthogonalised in
    ``dtype``."""
    D = d * (d + 1) // 2
    out = torch.empty(steps, samples, D, dtype=dtype, device=device)
    for start in range(0, steps, D):
        width = min(D, steps - start)
        gauss = torch.randn(samples, D, width, generator=g, device=device, dtype=torch.float64).to(dtype)
        q, _ = torch.linalg.qr(gauss)
        out[start:start + width] = q.permute(2, 0, 1).mul_(math.sqrt(D))
    return out


GOE_CHUNK = 256  # times per GOE draw: a multiple of 16, so chunked draws give the stream of a single one
# The GOE draws behind the noise and the copy of the error history that the memory sums read are float32, whatever
# the process dtype: ``U_k = L_k. G`` and ``sum_j K_kj E_j`` are then float32 products (relative error ~1e-6, far
# below the kernels' O(1/d_eff) noise), reading half the bytes. ``C_e`` still comes from the float64 history:
# ``C_r = A C_e A^T`` cancels about 1e3-fold, and a float32 ``C_e`` makes it indefinite.
SUM_DTYPE = torch.float32  # the noise and memory sums (comment above)


def goe(shape: tuple[int, ...], d: int, g: torch.Generator, device, dtype) -> torch.Tensor:
    """GOE matrices of shape (*shape, D) in :class:`SymCoords` coordinates: off-diagonal entries of variance
    1/d, diagonal ones of variance 2/d (``(A + A^T) / sqrt(2 d)``, ``A`` i.i.d. N(0, 1) of shape (*shape, d, d),
    drawn ``GOE_CHUNK`` entries of the first axis at a time, so the full matrices never exist at once)."""
    sym = SymCoords(d, device)
    out = torch.empty(*shape, sym.D, dtype=dtype, device=device)
    for start in range(0, shape[0], GOE_CHUNK):
        part = out[start:start + GOE_CHUNK]
        a = torch.randn(*part.shape[:-1], d, d, generator=g, device=device, dtype=torch.float64)
        part.copy_(sym.pack_symmetrised(a, 1.0 / math.sqrt(2.0 * d)))
    return out


def starting_states(q: Problem, samples: int, seed: int, device: torch.device, dtype: torch.dtype):
    """``(s_star, w0)``, (B, d, d) and (B, m, d) in ``dtype``: sample ``b`` has the teacher and initialisation of
    ``quadflow.simulate`` at dimension ``q.d`` with seed ``seed + b``."""
    seeds = [Seeds.from_master(seed + b) for b in range(samples)]
    s_star = torch.stack([teacher_matrix(q, s.teacher) for s in seeds]).to(device, dtype)
    w0 = torch.stack([initial_weights(q, s.init) for s in seeds]).to(device, dtype)
    return s_star, w0


def draw(q: Problem, steps: int, samples: int, seed: int, device: torch.device, dtype: torch.dtype,
         probe_dtype: torch.dtype | None = None, sum_dtype: torch.dtype = SUM_DTYPE) -> Draws:
    """Draw every random number of the effective process at dimension ``q.d`` from ``seed``, stored in
    ``dtype`` (the probes in ``probe_dtype``, default ``dtype``: the dtype of the tangents they drive; the GOE
    draws in ``sum_dtype``, the dtype the process's noise and memory sums then run in).

    Sample ``b`` has the teacher and initialisation of ``quadflow.simulate`` (and
    ``solve_population``) at dimension ``q.d`` with seed ``seed + b``; the GOE
    draws and the probes come from their own streams.
    """
    s_star, w0 = starting_states(q, samples, seed, device, dtype)
    g_noise, g_probe = (generator(seed, counter, device) for counter in (101, 102))
    # drawn in float64 and stored in SUM_DTYPE: a float32 process sees the same realisation as a float64 one
    noise = goe((steps + 1, samples), q.d, g_noise, device, sum_dtype)
    return Draws(s_star=s_star, w0=w0, goe=noise,
                 probes=orthogonal_probes(steps, samples, q.d, g_probe, device, probe_dtype or dtype))


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


class EffectiveStep:
    """One step of the effective process and its tangent(s), with no history: :meth:`observe` reads ``E_k`` and
    ``dS_k`` off the states, :meth:`advance` takes the step under a given field ``Gamma_k`` and its tangents.
    :class:`EffectiveProcess` adds the histories, the kernels and the exact sums over the past;
    :mod:`quadflow.theory.dmft.compressed` its compressed sums.

    Args:
        s_star: (B, d, d) teachers; w0: (B, m, d) initial weights (their dtype is the process's).
        alpha, h, lam: sample ratio, step size (the default ``lr``), l2 strength.
        lr, momentum, dampening, nesterov: the parameter update, ``torch.optim.SGD``'s semantics on the
            effective gradient (module docstring); ``lr`` None is ``h``, ``momentum`` 0 is plain GD.
        betas, eps, weight_decay: with ``betas`` (b1, b2) the update is ``torch.optim.AdamW``'s (``Adam``'s
            when ``weight_decay`` is 0) at ``lr`` instead (module docstring); ``momentum`` must then be 0.
        bias_correction: Adam's division of the moments by ``1 - b^(k+1)``; False with ``betas = (0, alpha)``
            is ``torch.optim.RMSprop``.
        rk4: the update is :class:`quadflow.optim.RK4`'s at ``lr``: the rows are its evaluation points, four per
            step (module docstring); ``momentum`` must be 0 and ``betas`` None.
        channels: number P of tangents; tangent c receives the probes of the times
            j = c mod P only, so the estimate of column j of R picks up cross terms
            from T/P injections instead of T (cost: P tangents).
        spectrum_steps: steps at which the eigenvalues of S are kept (in ``spectra``).
        tangent_dtype: dtype of the tangents (default the process dtype). The tangents are linear in the probes
            and enter only through the Hutchinson estimate of ``R``, whose relative noise is ``O(1/d)``, so
            float32 round-off (``1e-7``) is far below it.

    Attributes: ``w``, ``dw`` (B, m, d), (B, m, P, d): the states where the next window starts. With momentum,
    the state also holds the momentum buffer ``V`` (B, m, d) and its tangents ``dV`` (B, m, P, d) (None before
    the first step); with Adam, the moments ``m``, ``v`` (B, m, d) and their tangents (B, m, P, d) in the same
    places (``buf``, ``sq``; ``dbuf``, ``dsq``); with RK4, the step's start and the sum of its slopes (None at a
    step's first point).
    """

    def __init__(self, s_star: torch.Tensor, w0: torch.Tensor, *, alpha: float, h: float, lam: float,
                 lr: float | None = None, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 betas: tuple[float, float] | None = None, eps: float = 1e-8, weight_decay: float = 0.0,
                 bias_correction: bool = True, rk4: bool = False, channels: int = 1, spectrum_steps=(),
                 tangent_dtype: torch.dtype | None = None):
        B, m, d = w0.shape
        if betas is not None and momentum != 0:
            raise ValueError(f"momentum={momentum!r} with betas={betas!r}: allowed momentum 0 for Adam")
        if rk4 and (betas is not None or momentum != 0):
            raise ValueError("rk4=True with momentum or betas: RK4 has no optimiser state beyond its stages")
        self.s_star, self.alpha, self.h, self.lam, self.P = s_star, alpha, h, lam, channels
        self.lr = h if lr is None else lr
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.betas, self.eps, self.weight_decay, self.bias_correction = betas, eps, weight_decay, bias_correction
        self.rk4 = rk4
        self.spectrum_steps = frozenset(int(s) for s in spectrum_steps)
        dev = w0.device
        self.tangent_dtype = tangent_dtype or w0.dtype
        self.sym = SymCoords(d, dev)
        self.eye = torch.eye(d, dtype=w0.dtype, device=dev)
        self.shrink = (1.0 - 2.0 * self.lr * lam) * self.eye  # GD's step map without Gamma
        self.spectra: dict = {}
        self.w, self.dw = w0, torch.zeros(B, m, channels, d, dtype=self.tangent_dtype, device=dev)
        self.buf = self.dbuf = self.sq = self.dsq = None

    def observe(self, k: int, state: tuple, out_e: torch.Tensor, out_t: torch.Tensor) -> None:
        """Write ``E_k = W^T W / m - S*`` (B, D) into ``out_e`` and the tangents' ``dS_k`` (B, P, D) into ``out_t``,
        in :class:`SymCoords` coordinates, from ``state`` (``(W, dW, ...)`` at step k, as :meth:`advance` returns
        it); keep the eigenvalues of S at the spectrum steps."""
        w, dw = state[0], state[1]
        B, m, d = w.shape
        e_k = torch.baddbmm(self.s_star, w.mT, w, beta=-1.0, alpha=1.0 / m)
        self.sym.pack(e_k, out=out_e)
        ds = (dw.view(B, m, self.P * d).mT @ w.to(dw.dtype)).view(B, self.P, d, d)
        self.sym.pack_symmetrised(ds, 1.0 / m, out=out_t)
        if k in self.spectrum_steps:
            self.spectra[k] = torch.linalg.eigvalsh(e_k + self.s_star)

    def advance(self, k: int, state: tuple, gamma: torch.Tensor, dgamma: torch.Tensor) -> tuple:
        """The step from k: ``state`` ``(W, dW, buf, dbuf, sq, dsq)`` at step k to the one at k + 1, under the field
        ``Gamma_k`` (B, D) and its tangents ``dGamma_k`` (B, P, D) (probe included), in :class:`SymCoords`
        coordinates.

        The P tangents of a sample are side by side, ``dw`` (B, m, P, d), so each of their products is one
        matrix product per sample: ``[dW_1 .. dW_P]^T W`` (P d x m by m x d), ``[dW_1 .. dW_P] M`` (m P x d
        by d x d) and ``W [dGamma_1 .. dGamma_P]`` (m x d by d x P d)."""
        w, dw, buf, dbuf, sq, dsq = state
        B, m, d = w.shape
        P, lr, dt = self.P, self.lr, dw.dtype
        gamma, dgamma = self.sym.unpack(gamma), self.sym.unpack(dgamma)
        w_t = w.to(dt)
        dgamma_flat = dgamma.transpose(1, 2).reshape(B, d, P * d)  # [dGamma_1 .. dGamma_P]
        if self.momentum == 0 and self.betas is None and not self.rk4:
            step = torch.add(self.shrink, gamma, alpha=2.0 * lr)  # M_k = (1 - 2 lr lam) I + 2 lr Gamma_k
            moved = (dw.view(B, m * P, d) @ step.to(dt)).view(B, m, P * d)
            dw = torch.baddbmm(moved, w_t, dgamma_flat, alpha=2.0 * lr).view(B, m, P, d)
            return w @ step, dw, buf, dbuf, sq, dsq
        drift = torch.sub(gamma, self.eye, alpha=self.lam)  # Gamma_k - lam I
        grad = w @ drift  # G_k = -g_k / 2
        dgrad = torch.baddbmm((dw.view(B, m * P, d) @ drift.to(dt)).view(B, m, P * d), w_t,
                              dgamma_flat).view(B, m, P, d)
        if self.rk4:
            return self._rk4_stage(k, w, dw, grad, dgrad, buf, dbuf, sq, dsq)
        if self.betas is not None:
            return self._adam_step(k, w, dw, grad, dgrad, buf, dbuf, sq, dsq)
        if k == 0:
            buf, dbuf = grad, dgrad
        else:
            buf = torch.add(grad.mul(1.0 - self.dampening), buf, alpha=self.momentum)
            dbuf = torch.add(dgrad.mul(1.0 - self.dampening), dbuf, alpha=self.momentum)
        if self.nesterov:
            return (w + 2.0 * lr * torch.add(grad, buf, alpha=self.momentum),
                    dw + 2.0 * lr * torch.add(dgrad, dbuf, alpha=self.momentum), buf, dbuf, sq, dsq)
        return torch.add(w, buf, alpha=2.0 * lr), torch.add(dw, dbuf, alpha=2.0 * lr), buf, dbuf, sq, dsq

    @property
    def stages(self) -> int:
        """Rows of the kernels per optimiser step: 4 for RK4 (its evaluation points), else 1."""
        return 4 if self.rk4 else 1

    def _rk4_stage(self, e, w, dw, grad, dgrad, base, dbase, acc, dacc):
        """RK4's evaluation point ``e`` (module docstring) at ``W_e`` (B, m, d) and its tangents ``dW_e`` (B, m, P, d),
        from ``G_e = W_e (Gamma_e - lam I)`` and its tangents ``dG_e``: the slope is ``F_e = 2 G_e``. ``base``, ``dbase``: the step's start and
        its tangents; ``acc``, ``dacc``: the weighted sum of the step's slopes so far and its tangents (None
        before the first point). Returns the next point's ``W``, ``dW`` and the four carried states."""
        stage, lr = e % 4, self.lr
        slope, dslope = grad.mul(2.0), dgrad.mul(2.0)
        if stage == 0:
            base, dbase, acc, dacc = w, dw, slope, dslope
        else:
            weight = 1.0 if stage == 3 else 2.0
            acc, dacc = torch.add(acc, slope, alpha=weight), torch.add(dacc, dslope, alpha=weight)
        if stage == 3:
            return (torch.add(base, acc, alpha=lr / 6.0), torch.add(dbase, dacc, alpha=lr / 6.0),
                    None, None, None, None)
        fraction = 1.0 if stage == 2 else 0.5
        return (torch.add(base, slope, alpha=fraction * lr), torch.add(dbase, dslope, alpha=fraction * lr),
                base, dbase, acc, dacc)

    def _adam_step(self, k, w, dw, grad, dgrad, m1, dm1, m2, dm2):
        """Adam's step ``k`` (module docstring) from ``G_k = -g_k / 2`` (B, m, d) and its tangents ``dG_k``
        (B, m, P, d); the moments ``m1``, ``m2`` (B, m, d) and their tangents (B, m, P, d) are None at k = 0.
        Returns the new ``W``, ``dW`` and moments with their tangents."""
        b1, b2 = self.betas
        lr, dt = self.lr, dw.dtype
        g, dg = grad.mul(-2.0), dgrad.mul(-2.0)
        gt = g.unsqueeze(2).to(dt)
        if k == 0:
            m1, dm1 = g.mul(1.0 - b1), dg.mul(1.0 - b1)
            m2, dm2 = g.square().mul(1.0 - b2), dg.mul(gt).mul_(2.0 * (1.0 - b2))
        else:
            m1, dm1 = torch.add(g.mul(1.0 - b1), m1, alpha=b1), torch.add(dg.mul(1.0 - b1), dm1, alpha=b1)
            m2 = torch.add(g.square().mul(1.0 - b2), m2, alpha=b2)
            dm2 = torch.add(dg.mul(gt).mul_(2.0 * (1.0 - b2)), dm2, alpha=b2)
        c1, c2 = (1.0 - b1 ** (k + 1), 1.0 - b2 ** (k + 1)) if self.bias_correction else (1.0, 1.0)
        mh, s = m1 / c1, (m2 / c2).sqrt()
        den = s + self.eps
        # d(mh / den) = dmh / den - mh dvh / (2 s den^2), with dvh = dm2 / c2; 0 where s = 0 (then dm2 = 0)
        cross = torch.where(s > 0, mh / (2.0 * s.clamp_min(torch.finfo(s.dtype).tiny) * den.square() * c2),
                            torch.zeros_like(s))
        du = (dm1 / c1).div_(den.unsqueeze(2).to(dt)).sub_(dm2.mul(cross.unsqueeze(2).to(dt)))
        keep = 1.0 - lr * self.weight_decay
        return w.mul(keep).sub_(mh / den, alpha=lr), dw.mul(keep).sub_(du, alpha=lr), m1, dm1, m2, dm2

class EffectiveProcess(EffectiveStep):
    """The effective process and its tangent(s), run window by window on its frozen draws.

    The process up to step k depends on the kernels ``K`` and ``L`` up to row k only (causality). A
    window ``[done, stop)`` is run from the states at step ``done`` (:meth:`run`, as often as the kernel
    iteration needs) and then frozen (:meth:`freeze`): its rows of the history, of ``C_e`` and of ``R``
    stay, and the next window starts from the states at ``stop``. One window ``[0, T+1)`` is the plain
    full pass (:func:`run_pass`); with a ``fill`` hook, one window ``[0, T+1)`` is the marching solve, each
    step's kernel row written just before the step uses it.

    Args:
        draws: frozen randomness (T steps, B samples, width m, dimension d).
        block: the memory and noise sums over the past are one matrix product per block of this many
            steps (the in-block part is a short vector product per step); 1 when marching.
        kernel_dtype: dtype of ``C_e`` and ``R`` (default the draws' dtype). The process runs in the
            draws' dtype; the kernels ``K``, ``L`` it is given are cast to it, and its products for ``C_e`` and
            ``R`` are accumulated in it, then stored in ``kernel_dtype``.
        tangent_dtype: also the dtype of the tangents' history and of the probes; the process itself keeps the
            draws' dtype (its ``C_e`` needs float64, see ``SUM_DTYPE``).
        the others: :class:`EffectiveStep`'s.

    Attributes (per sample, over steps 0..T): ``C_e``, ``R`` (B, T+1, T+1), filled in rows ``[0, stop)``
    of the last run; ``hist_e`` (T+1, B, D): the errors ``E_k`` (``hist_m``: the same in the GOE draws' dtype, what the
    memory sums read), and ``hist_t`` (T+1, B, P, D): ``dS_k`` of each tangent, all in :class:`SymCoords`
    coordinates (``D = d(d+1)/2``); the states at step ``done`` (:class:`EffectiveStep`).

    Cost of a window of w rows ending at b: O(w m d^2 B (2 + 3P)) for the step products, O(w b d^2 B (1 + P))
    for memory, noise, C_e and R (as products of w rows; one row per step when marching).
    """

    def __init__(self, draws: Draws, *, block: int = 32, kernel_dtype: torch.dtype | None = None, **step):
        super().__init__(draws.s_star, draws.w0, **step)
        T, B, m, d = draws.shape
        dev, td = draws.w0.device, self.tangent_dtype
        self.draws, self.block = draws, block
        self.probes = draws.probes.to(td)  # no copy when the draws hold them in td
        self.hist_e = draws.w0.new_empty(T + 1, B, self.sym.D)
        sums = draws.goe.dtype  # the dtype of the noise and memory sums
        self.hist_m = self.hist_e if self.hist_e.dtype == sums else torch.empty(T + 1, B, self.sym.D, dtype=sums,
                                                                                 device=dev)
        self.hist_t = torch.empty(T + 1, B, self.P, self.sym.D, dtype=td, device=dev)
        self.C_e = torch.zeros(B, T + 1, T + 1, dtype=kernel_dtype or draws.w0.dtype, device=dev)
        self.R = torch.zeros_like(self.C_e)
        self.done = 0  # rows [0, done) are frozen; w, dw and the optimiser's states are those at step done
        self._next = None

    def run(self, K: torch.Tensor, L: torch.Tensor, stop: int, fill=None) -> None:
        """Run steps ``done .. stop-1`` under the rows ``[done, stop)`` of ``K`` (strictly lower memory kernel)
        and ``L`` (lower factor of C_r, ``U = L @ G / sqrt(4 alpha)``); both (>= stop, >= stop). Fills those
        rows of ``hist_e``, ``hist_t``, ``C_e`` (and its mirror columns) and ``R``; the frozen rows are not
        touched.

        ``fill``: ``fill(k)`` is called once ``E_k``, ``dS_k`` and their kernel rows ``C_e[:, k]``, ``R[:, k]``
        exist, before the step from k, and must write row k of ``K`` and ``L`` (the marching solve: that row
        depends on the process up to k only). The steps then run one at a time, each summing its memory and
        noise over the whole past; without ``fill`` they run in blocks of ``block`` steps whose sums over the
        steps before the block are one matrix product each (the step itself: :meth:`observe`, :meth:`advance`)."""
        T, B, m, d = self.draws.shape
        a, P = self.done, self.P
        block = 1 if fill is not None else self.block
        hist_e, hist_t = self.hist_e, self.hist_t
        de, dm, dt, D = hist_e.dtype, self.hist_m.dtype, hist_t.dtype, self.sym.D
        flat_e, flat_t = self.hist_m.view(T + 1, B * D), hist_t.view(T + 1, B * P * D)
        goe = self.draws.goe.view(T + 1, B * D)
        state = (self.w, self.dw, self.buf, self.dbuf, self.sq, self.dsq)
        for k in range(a, stop):
            self.observe(k, state, hist_e[k], hist_t[k])
            if self.hist_m is not hist_e:
                self.hist_m[k].copy_(hist_e[k])
            if fill is not None:
                self._kernel_rows(k, k + 1)
                fill(k)
            if k == T:
                break
            if (k - a) % block == 0:  # the block's sums over the steps before it, and its noise
                start, end = k, min(k + block, stop)
                past_e = (K[start:end, :start].to(dm) @ flat_e[:start]).view(end - start, B, D)
                past_t = (K[start:end, :start].to(dt) @ flat_t[:start]).view(end - start, B, P, D)
                noise = (L[start:end, :end].to(goe.dtype) @ goe[:end]).mul_(1.0 / math.sqrt(4.0 * self.alpha))
                noise = noise.view(end - start, B, D)
            gamma = past_e[k - start].to(de).sub_(hist_e[k]).add_(noise[k - start])
            dgamma = past_t[k - start].sub(hist_t[k])
            if k > start:  # memory within the block
                gamma += (K[k, start:k].to(dm) @ flat_e[start:k]).view(B, D)
                dgamma += (K[k, start:k].to(dt) @ flat_t[start:k]).view(B, P, D)
            dgamma[:, k % P] += self.probes[k]
            state = self.advance(k, state, gamma, dgamma)
        self._next = (stop, *state)
        if fill is None:
            self._kernel_rows(a, stop)

    def _kernel_rows(self, a: int, b: int) -> None:
        """Rows ``[a, b)`` of the per-sample ``C_e`` (columns ``[0, b)``, mirrored) and ``R`` (strictly lower)."""
        T, B, m, d = self.draws.shape
        D = self.sym.D
        e = self.hist_e[:b].transpose(0, 1)
        rows = ((2.0 / d) * (e[:, a:b] @ e.transpose(1, 2))).to(self.C_e.dtype)
        self.C_e[:, a:b, :b] = rows
        self.C_e[:, :a, a:b] = rows[:, :, :a].transpose(1, 2)
        R = self.R[:, a:b, :b]
        R.zero_()
        last = min(b, T)  # probes exist for the times 0..T-1
        for c in range(min(self.P, last)):
            ds = self.hist_t[a:b, :, c].transpose(0, 1)
            pr = self.probes[c:last:self.P].transpose(0, 1)
            R[:, :, c:last:self.P] = ((ds @ pr.transpose(1, 2)) / D).to(R.dtype)
        R.copy_(torch.tril(R, diagonal=a - 1))  # row k keeps the columns j < k

    def freeze(self) -> None:
        """Freeze the rows of the last :meth:`run` and move the start of the next window to its end."""
        self.done, self.w, self.dw, self.buf, self.dbuf, self.sq, self.dsq = self._next


def run_pass(draws: Draws, K: torch.Tensor, L: torch.Tensor, *, alpha: float, h: float, lam: float,
             channels: int = 1, spectrum_steps=(), block: int = 32, keep_states: bool = False,
             **sgd) -> PassResult:
    """One full pass of the effective process and its tangent(s) for T steps under kernels ``K`` and ``L``
    (both (T+1, T+1); see :class:`EffectiveProcess` for the arguments, ``sgd`` its ``lr``, ``momentum``,
    ``dampening``, ``nesterov``, ``betas``, ``eps``, ``weight_decay``, ``bias_correction``, ``rk4``); ``keep_states`` also returns the error
    trajectory ``E`` (diagnostics, tests)."""
    T = draws.shape[0]
    proc = EffectiveProcess(draws, alpha=alpha, h=h, lam=lam, channels=channels, spectrum_steps=spectrum_steps,
                            block=block, **sgd)
    proc.run(K, L, T + 1)
    return PassResult(C_e=proc.C_e, R=proc.R, spectra=proc.spectra,
                      E=proc.sym.unpack(proc.hist_e) if keep_states else None)
