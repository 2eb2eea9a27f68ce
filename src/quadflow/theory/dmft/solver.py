"""Transient DMFT for discrete-time GD, SGD with momentum, Adam and minibatch SGD (docs/theory.md section 4):
:func:`solve_dmft`.

The fixed point over the kernels (C_r, K) couples the parameter-side effective
process (:mod:`quadflow.theory.dmft.process`, d_eff x d_eff matrices, ``samples``
copies batched) with the closed-form sample side
(:mod:`quadflow.theory.dmft.kernels`). Every random number is drawn once, so the
kernel map is deterministic. It is also causal: the kernel row k depends on the
process up to step k only, and the process up to step k on the rows before k.
The default solve marches: one pass over the steps, each step's kernel row
computed from the process up to it and then used by that step, which is the
fixed point itself (``method="march"``). ``method="windows"`` iterates it
window after window of steps (plain iteration on the window's rows, the past
frozen), as a cross-check. Outputs (:class:`quadflow.theory.DMFTResult`) are on
the simulation's grid ``t = step * h`` (the paper's time, docs/theory.md section 2),
step 0..steps, with the simulation's metric names and normalisation (docs/theory.md
sections 1-2: ``mse = |S - S*|_F^2 / d``, ``train_loss = (1/(4n)) sum r^2``).
"""
from __future__ import annotations

import functools
import math
import time
import warnings

import numpy as np
import torch

from quadflow.optim import dmft_update, gd_mismatch, optimizer_factory
from quadflow.problem import H_MAX, Problem, Ratios, as_ratios, check_domain
from quadflow.runtime.device import resolve_device
from quadflow.runtime.memory import largest_fitting, require_bytes, usable_bytes
from quadflow.theory.dmft.compressed import history_bytes as compressed_bytes
from quadflow.theory.dmft.compressed import solve_compressed
from quadflow.theory.dmft.kernels import Selection, row_change, sample_rows, sample_side
from quadflow.theory.dmft.process import SUM_DTYPE, EffectiveProcess, draw
from quadflow.theory.results import CURVES, DMFTResult, theory_curves

MIN_D_EFF = 8  # smallest d_eff accepted: the kernel estimates are unstable below it
WARN_D_EFF = 24  # below this d_eff a solve warns (O(1/d_eff) bias)
STALL_ITERATIONS = 3  # non-decreasing residuals before the damping fallback
FALLBACK_DAMPING = 0.5
WINDOW = 1  # steps per causal window; 1 marches in one exact pass (docs/benchmarks.md: 1.6x faster than 25 at d_eff 64, T 400)
METHODS = ("march", "windows")  # the solve methods of solve_dmft
WINDOWS_WIDTH = 25  # default window of method="windows" (6-7 iterations per window)
HISTORIES = ("auto", "exact", "compressed")  # the history modes of solve_dmft
RESOLUTION = 0.2  # default block resolution of the compressed history (docs/validation.md)


class _Unset:
    """The default of an argument left out (``window`` of :func:`solve_dmft`, where None has a meaning)."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


def _check(h, steps, d_eff, samples, channels, tol, max_iter, damping, spectrum_steps, batch_fraction) -> None:
    check_domain(h=h)
    if isinstance(batch_fraction, bool) or not isinstance(batch_fraction, (int, float)) or not 0 < batch_fraction <= 1:
        raise ValueError(f"batch_fraction={batch_fraction!r} is out of range: allowed (0, 1] (the minibatch size over n; "
                         "1 is full batch)")
    for name, value, low in (("steps", steps, 1), ("d_eff", d_eff, MIN_D_EFF), ("samples", samples, 1),
                             ("max_iter", max_iter, 1), ("channels", channels, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}"
                             + (" (the kernel estimates are unstable below it)" if name == "d_eff" else ""))
    if not (tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if not (0 <= damping < 1):
        raise ValueError(f"damping must be in [0, 1), got {damping!r}")
    bad = [s for s in spectrum_steps if not (0 <= int(s) <= steps)]
    if bad:
        raise ValueError(f"spectrum_steps must lie in [0, steps={steps}], got {bad}")
    if d_eff < WARN_D_EFF:
        warnings.warn(f"d_eff={d_eff} is small: kernels carry O(1/d_eff) finite-size bias and "
                      f"O(1/(d_eff sqrt(samples))) noise; use d_eff >= {WARN_D_EFF}", RuntimeWarning, stacklevel=3)


def _update(optim, h: float) -> dict:
    """The effective process's update for ``optim`` (None, a preset name or ``params -> Optimizer``), checked:
    ``{"lr", "momentum", "dampening", "nesterov"}`` for SGD (:func:`quadflow.optim.sgd_settings`), ``{"lr",
    "betas", "eps", "weight_decay", "bias_correction"}`` for Adam, AdamW and RMSprop
    (:func:`quadflow.optim.adam_settings`, :func:`quadflow.optim.rmsprop_settings`), ``{"lr", "rk4"}`` for RK4."""
    if optim is None:
        return {"lr": h, "momentum": 0.0, "dampening": 0.0, "nesterov": False}
    factory = optimizer_factory(optim, h)
    try:
        probe = factory([torch.zeros(1, requires_grad=True)])
    except Exception as err:  # the factory's own refusal (e.g. a negative momentum), named
        raise ValueError(f"optim={optim!r} cannot be built: {err}") from None
    update = dmft_update(probe)
    if update is None:
        raise ValueError(f"optim={gd_mismatch(probe, h)} is not followed by the DMFT: allowed torch.optim.SGD "
                         "(lr, momentum, dampening, nesterov) without weight_decay or maximize, torch.optim.Adam "
                         "or AdamW (lr, betas, eps, decoupled weight_decay) without amsgrad or maximize, "
                         "torch.optim.RMSprop (lr, alpha, eps) without momentum, centered, weight_decay or maximize, "
                         "and quadflow.optim.RK4")
    checks = [("lr", update["lr"], 0 < update["lr"] <= H_MAX, f"(0, {H_MAX:g}]")]
    if "momentum" in update:  # Adam's betas, eps and weight_decay are checked by torch when the probe is built
        checks += [("momentum", update["momentum"], 0 <= update["momentum"] < 1, "[0, 1)"),
                   ("dampening", update["dampening"], 0 <= update["dampening"] <= 1, "[0, 1]")]
    for key, value, ok, allowed in checks:
        if not ok:
            raise ValueError(f"optim {key}={value!r} is out of range: allowed {allowed}")
    return update


def memory_bytes(steps: int, d_eff: int, samples: int, channels: int, itemsize: int = 8,
                 kernel_itemsize: int = 8, tangent_itemsize: int = 4, minibatch: bool = False) -> int:
    """Peak bytes of a solve. Per (T+1) x samples x D numbers (``T = steps``, ``D = d_eff(d_eff+1)/2``, the
    histories are kept in the coordinates of Sym(d_eff)): the error history in the process dtype (``itemsize``
    bytes) and its float32 copy for the memory sums (none when the process is float32), the GOE draws in
    float32, the tangent histories (``channels``) and the probes in the tangent dtype (``tangent_itemsize``);
    plus the per-sample and mean (T+1) x (T+1) kernels (``kernel_itemsize``), two more with ``minibatch`` (the
    selection moments)."""
    per_buffer = (steps + 1) * samples * (d_eff * (d_eff + 1) // 2)
    low = torch.empty((), dtype=SUM_DTYPE).element_size()  # the noise and memory copies (SUM_DTYPE)
    errors = itemsize + (low if itemsize != low else 0)
    process = per_buffer * (errors + low + (channels + 1) * tangent_itemsize)
    return process + (2 * samples + 12 + 2 * minibatch) * (steps + 1) ** 2 * kernel_itemsize


def _fitting(usable: float, need, stages: int, steps: int, d_eff: int, samples: int,
             compressed: bool = False) -> list[str]:
    """The settings that each alone make a solve fit in ``usable`` bytes (``need(rows, d_eff, samples)``: its
    bytes): the compressed mode where it applies, the most steps, the largest d_eff and the most samples that
    fit; the (T+1)^2 kernels need memory whatever d_eff and samples, so those two are named only where they
    can help."""
    out = ["history='compressed' (the long-time mode)"] if compressed else []
    out.append(f"steps <= {largest_fitting(lambda t: need(stages * t, d_eff, samples) <= usable, steps, 1)}")
    if need(stages * steps, MIN_D_EFF, samples) <= usable:
        out.append(f"d_eff <= {largest_fitting(lambda d: need(stages * steps, d, samples) <= usable, d_eff, MIN_D_EFF)}")
    if need(stages * steps, d_eff, 1) <= usable:
        out.append(f"samples <= {largest_fitting(lambda b: need(stages * steps, d_eff, b) <= usable, samples, 1)}")
    if len(out) == 1 + compressed:
        out[-1] += (f" (the (steps+1)^2 kernels alone need about {need(stages * steps, MIN_D_EFF, 1) / 2**30:.3g} "
                   "GiB, whatever d_eff and samples)")
    return out


def _check_compressed(history: str, resolution, update: dict, batch_fraction: float, method: str,
                      save_kernels, return_kernels: bool) -> str:
    """Check ``history`` and ``resolution``; return what of the other settings the compressed mode does not take
    (empty when it takes them all)."""
    if history not in HISTORIES:
        raise ValueError(f"history={history!r} is not a DMFT history: allowed {', '.join(map(repr, HISTORIES))}")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or not 0 <= resolution < 1:
        raise ValueError(f"resolution={resolution!r} is out of range: allowed [0, 1) (the compressed history's "
                         "largest block width relative to its age and start time)")
    found = [name for name, bad in (("batch_fraction < 1", batch_fraction < 1), ("RK4", update.get("rk4", False)),
                                    ("method='windows'", method != "march"),
                                    ("save_kernels", save_kernels is not None), ("return_kernels", return_kernels))
             if bad]
    return ", ".join(found)


def _check_stable(C_e: torch.Tensor, rows, a: int, h: float, stages: int = 1) -> None:
    """Raise when the effective process or its response diverged (step too large) in rows ``[a, b)``
    (``stages`` rows per step)."""
    diag_e = torch.diagonal(C_e)
    diag_r = torch.diagonal(rows.C_r[:, a:])
    bad = ~torch.isfinite(rows.K).all(1)
    for diag, ref in ((diag_e[a:], diag_e[0]), (diag_r, rows.scale)):
        bad |= ~torch.isfinite(diag) | (diag.abs() > 1e6 * max(abs(float(ref)), 1.0))
    if bool(bad.any()):
        k = (a + int(torch.nonzero(bad)[0])) // stages
        raise ValueError(f"h={h} is too large for stability: the effective process diverged at step {k} "
                         f"(t={k * h:.3g}); reduce h (GD needs roughly h < 1/(2 lambda_max(S)), heavy-ball "
                         "momentum mu roughly lr < (1 + mu)/(2 lambda_max(S)))")


RK4_STAGE_TIMES = (0.0, 0.5, 0.5, 1.0)  # the times of RK4's evaluation points within a step, in units of h


def _steps_callback(callback, stages: int, iteration: int, residual: float, solved: int) -> None:
    """``callback`` with the rows solved counted in steps (``stages`` rows per step, rounded up)."""
    callback(iteration, residual, -(-solved // stages))


def _solve_method(method: str | None, window) -> tuple[str, int | None]:
    """``(method, window width)`` from :func:`solve_dmft`'s ``method`` and ``window`` (None width: all steps)."""
    if window not in (_UNSET, None) and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be an integer >= 1 or None, got {window!r}")
    if method is None:  # the window alone: 1 (the default) marches, any other width iterates windows
        method = "march" if window in (_UNSET, 1) else "windows"
    elif method not in METHODS:
        raise ValueError(f"method={method!r} is not a DMFT solve method: allowed {' or '.join(map(repr, METHODS))}")
    if method == "march":
        if window not in (_UNSET, 1):
            raise ValueError(f"window={window!r} does not apply to method='march' (one pass, step by step): "
                             "allowed window=1 or left out; use method='windows' for longer windows")
        return method, 1
    return method, WINDOWS_WIDTH if window is _UNSET else window


def _curves(side, trace: torch.Tensor, p: Ratios, noisy_test: bool) -> dict:
    """The ``CURVES`` (each (T+1,)) from the sample side ``side`` and the sample mean ``trace`` (T+1,) of
    ``Tr S_k / d_eff``."""
    return theory_curves(side.mse, side.train_loss, side.in_sample_error, trace, p.lam, p.Delta, noisy_test)


def _trace(proc: EffectiveProcess) -> torch.Tensor:
    """Per-sample ``Tr S_k / d_eff = Tr(E_k + S*) / d_eff`` of the process, (B, T+1) in float64."""
    d = proc.sym.d
    tr_e = proc.sym.trace(proc.hist_e).double()  # (T+1, B)
    tr_star = torch.diagonal(proc.draws.s_star, dim1=-2, dim2=-1).sum(-1, dtype=torch.float64)  # (B,)
    return ((tr_e + tr_star) / d).mT


def _jackknife(C_e_b: torch.Tensor, R_b: torch.Tensor, trace_b: torch.Tensor, delta: float, p: Ratios,
               noisy_test: bool, fraction: float) -> dict:
    """Leave-one-sample-out standard errors of the curves (NaN with one sample), from the per-sample kernels
    ``C_e_b``, ``R_b`` (B, T+1, T+1) and traces ``trace_b`` (B, T+1)."""
    B = C_e_b.shape[0]
    if B < 2:
        return {k: np.full(C_e_b.shape[1], np.nan) for k in CURVES}
    c_sum, r_sum, tr_sum = C_e_b.sum(0), R_b.sum(0), trace_b.sum(0)
    leave = [_curves(sample_side((c_sum - C_e_b[b]) / (B - 1), (r_sum - R_b[b]) / (B - 1), delta, p.Delta, fraction),
                     (tr_sum - trace_b[b]) / (B - 1), p, noisy_test) for b in range(B)]
    out = {}
    for k in CURVES:
        vals = torch.stack([c[k] for c in leave])
        out[k] = (math.sqrt((B - 1) / B) * torch.linalg.vector_norm(vals - vals.mean(0), dim=0)).cpu().numpy()
    return out


def _extend_rows(M: torch.Tensor, a: int, b: int) -> None:
    """First guess of the rows ``[a, b)`` of the lower-triangular ``M`` (>= b, >= b), in place: each row repeats
    the lag profile of row ``a - 1``, ``M[k, k - l] = M[a-1, a-1-l]`` (0 for lags beyond ``a - 1``)."""
    for k in range(a, b):
        lag = k - a + 1  # row k is row a - 1 shifted right by this many columns
        M[k, :k + 1] = 0.0
        M[k, lag:lag + a] = M[a - 1, :a]


def _march(proc: EffectiveProcess, A: torch.Tensor, L: torch.Tensor, K: torch.Tensor, delta: float, Delta: float,
           h: float, selection: Selection | None, callback) -> None:
    """The marching solve: one pass over the steps in which row k of the kernels (``A``, ``L``, ``K``, each
    (T+1, T+1), filled in place) is computed from the process up to step k, then used by the step from k.
    It is the fixed point itself, not an approximation of it: row k depends on the process up to k only, and
    the process up to k on the rows before k."""
    C_e, R = torch.zeros_like(A), torch.zeros_like(A)  # sample means, row by row
    scale = 0.0

    def fill(k: int) -> None:
        nonlocal scale
        C_e[k, :k + 1] = proc.C_e[:, k, :k + 1].mean(0)
        C_e[:k, k] = C_e[k, :k]
        R[k, :k] = proc.R[:, k, :k].mean(0)
        rows = sample_rows(C_e[:k + 1, :k + 1], R[:k + 1, :k + 1], A, L, k, delta, Delta, scale, selection)
        _check_stable(C_e[:k + 1, :k + 1], rows, k, h, proc.stages)
        A[k, :k + 1], L[k, :k + 1], K[k, :k + 1], scale = rows.A[0], rows.L[0], rows.K[0], rows.scale
        if callback is not None:
            callback(1, 0.0, k + 1)

    proc.run(K, L, A.shape[0], fill=fill)
    proc.freeze()


def _iterate(proc: EffectiveProcess, A: torch.Tensor, L: torch.Tensor, K: torch.Tensor, width: int, delta: float,
             Delta: float, h: float, tol: float, max_iter: int, damping: float, selection: Selection | None,
             callback) -> tuple[list, list, float]:
    """The fixed point iterated window after window of ``width`` steps (the past frozen), filling the kernels
    ``A``, ``L``, ``K`` in place; returns the residuals of every iteration, the windows' reports and the
    damping in use at the end."""
    T1 = A.shape[0]
    scale, residuals, windows = 0.0, [], []
    C_mean, R_mean = torch.zeros_like(A), torch.zeros_like(A)  # sample means, the frozen rows kept
    for a in range(0, T1, width):
        b = min(a + width, T1)
        if a > 0:  # first guess: the last frozen row's lag profile, continued
            _extend_rows(L, a, b)
            _extend_rows(K, a, b)
        best, stalled, done = math.inf, 0, False
        for it in range(1, max_iter + 1):
            proc.run(K, L, b)
            C_mean[a:b, :b] = proc.C_e[:, a:b, :b].mean(0)
            C_mean[:a, a:b] = C_mean[a:b, :a].T
            R_mean[a:b, :b] = proc.R[:, a:b, :b].mean(0)
            C_e, R = C_mean[:b, :b], R_mean[:b, :b]
            rows = sample_rows(C_e, R, A, L, a, delta, Delta, scale, selection)
            _check_stable(C_e, rows, a, h, proc.stages)
            residual = row_change(L, K, rows, a)
            residuals.append(residual)
            done = residual < tol
            if callback is not None:
                callback(len(residuals), residual, b if done else a)
            if done:
                break
            stalled = stalled + 1 if residual >= best else 0
            best = min(best, residual)
            if stalled >= STALL_ITERATIONS and damping == 0.0:
                warnings.warn(f"plain iteration stalled at residual {residual:.3g} in the window of steps [{a}, {b}); "
                              f"switching to damping={FALLBACK_DAMPING}", RuntimeWarning, stacklevel=3)
                damping, stalled = FALLBACK_DAMPING, 0
            L[a:b, :b] = damping * L[a:b, :b] + (1 - damping) * rows.L
            K[a:b, :b] = damping * K[a:b, :b] + (1 - damping) * rows.K
        # the window is frozen with the kernels its process implies (the next window starts from them)
        A[a:b, :b], L[a:b, :b], K[a:b, :b], scale = rows.A, rows.L, rows.K, rows.scale
        windows.append({"start": a, "stop": b, "iterations": it, "residual": residual, "converged": done})
        proc.freeze()
    return residuals, windows, damping


def solve_dmft(p: Ratios | Problem, h: float = 0.05, steps: int = 400, d_eff: int = 64, samples: int = 4,
               seed: int = 0, channels: int = 4, device: str = "cpu", dtype: torch.dtype = torch.float64,
               tangent_dtype: torch.dtype = torch.float32, tol: float = 1e-4,
               max_iter: int = 60, damping: float = 0.0, window: int | None = _UNSET, spectrum_steps=(),
               callback=None, save_kernels: str | None = None, return_kernels: bool = False,
               noisy_test: bool = False, delta: float | None = None, optim=None, batch_fraction: float = 1.0,
               method: str | None = None, history: str = "auto", resolution: float = RESOLUTION) -> DMFTResult:
    """Solve the discrete-time DMFT of GD ``W <- W + 2h (W Gamma - lam W)`` (or of ``optim``) for ``steps`` steps.

    Args:
        p: the ratios (kappa, kappa_star, alpha, Delta, lam, sigma0), as :class:`quadflow.Ratios` or a
            :class:`quadflow.Problem` (whose ``d`` does not enter: the parameter side is simulated at
            ``d_eff``).
        h, steps: GD step size (paper's time, t = step * h) and number of steps.
        optim: the parameter update, as the simulation takes it: None or ``"gd"`` (GD at step h), a preset
            name (``"momentum"``: ``torch.optim.SGD(lr=h, momentum=0.9)``) or a callable ``params ->
            Optimizer``. The DMFT follows ``torch.optim.SGD`` with any ``lr`` (the time axis stays
            ``t = step * h``), ``momentum`` in [0, 1), ``dampening`` in [0, 1] and ``nesterov``, without
            ``weight_decay`` or ``maximize``, and ``torch.optim.Adam``/``AdamW`` (``"adam"``: lr = h) with any
            ``betas``, ``eps`` and decoupled ``weight_decay`` torch accepts, without ``amsgrad`` or
            ``maximize`` (Adam is coordinate-wise: docs/theory.md section 4.2 and docs/validation.md for how
            far its curve describes the simulation), and ``torch.optim.RMSprop`` (any ``alpha``, ``eps``)
            without ``momentum``, ``centered``, ``weight_decay`` or ``maximize``, and :class:`quadflow.optim.RK4`
            (``"rk4"``; its four evaluation points per step are the kernels' rows, docs/theory.md section 4.4);
            anything else (a user's class) raises ValueError.
        batch_fraction: minibatch size over n, in (0, 1] (1: full batch). Each sample enters a step's
            gradient with probability ``batch_fraction``, independently across steps (the simulation's
            ``batch_size = batch_fraction * n``, drawn without replacement each step); the sample side
            averages over the selection exactly (docs/theory.md section 4.3), with any ``optim``.
        d_eff: dimension of the effective matrix process (>= ``MIN_D_EFF`` = 8; O(1/d_eff) bias).
        samples: independent copies of the effective process averaged in the kernels.
        channels: tangents per sample for the estimate of R (probes of times j = c mod
            channels go to tangent c); 4 cuts the noise of the late train loss 2-3x
            against 1 (docs/validation.md) for +60% cost; more gains little.
        seed: seed of all frozen random numbers; sample b shares its teacher and
            initialisation with ``simulate``/``solve_population`` at d_eff and seed + b.
        device: torch device (``cpu``, ``cuda``, ``auto``).
        dtype: dtype of the effective process and its draws. The kernels (C_e, R, C_r, K, the Cholesky
            factor) are float64 either way, and the noise and memory sums float32 (their round-off, 1e-6
            relative, is far below the kernels' noise). A float32 process is not accurate enough: ``C_e`` from
            float32 errors makes ``C_r = A C_e A^T`` (a 1e3-fold cancellation) indefinite, and the windows
            iteration keeps a residual floor near 3e-3 (docs/benchmarks.md).
        tangent_dtype: dtype of the tangents (and their probes) that estimate the response R. float32 by
            default: R is a Hutchinson estimate with relative noise O(1/d_eff), far above float32 round-off,
            and the curves move by at most a few hundredths of their jackknife error against float64
            tangents (docs/benchmarks.md), for 1.6-3.5x faster tangent products.
        tol: convergence threshold on the per-iteration residual of a window longer than one step
            (:func:`quadflow.theory.dmft.kernels.row_change` over its rows).
        max_iter: iteration cap per window (longer than one step); a window not converging warns (naming its
            steps and its residual) and sets ``converged=False``; the later windows still run.
        damping: weight of the old kernels in the update of a window longer than one step (0 = plain
            iteration). If the residual of a window stalls for 3 iterations, damping switches to 0.5 (warned).
        method: how the fixed point is solved. Row k of the kernels depends on the process up to step k
            only, and the process up to k on the rows before k. ``"march"`` (the default) is one pass, each
            step's row computed from the process up to it before that step runs; no iteration, no
            tolerance, the fixed point to round-off (``residuals == [0.0]``, ``passes == 1``).
            ``"windows"`` iterates the fixed point window after window of ``window`` steps with the past
            frozen (a cross-check; 6-7 iterations per window at 25 steps, to ``tol``).
        window: steps per causal window of ``method="windows"`` (default 25; None: one window over all
            steps, the plain fixed-point iteration, 11-13 iterations). Without ``method``, ``window=1`` (the
            default) marches and any other window iterates windows of that width.
        history: ``"exact"``: the (T+1) x (T+1) kernels and the whole history, read at every step (O(T^2) time
            and memory; what the other arguments describe). ``"compressed"``: the long-time mode
            (:mod:`quadflow.theory.dmft.compressed`): the noise realised from a reservoir of samples and the
            history merged into blocks, O(T log T) time and O(log T) memory, for full-batch updates other than
            RK4; its ``stderr`` is the copies' spread, and it has no kernels. ``"auto"`` (the default): exact
            when its buffers fit in memory, else compressed, with a warning saying so.
        resolution: the compressed mode's largest block width relative to its age and its start time (>= 0;
            0 keeps every step; the error it adds against 0 is measured in docs/validation.md).
        spectrum_steps: steps at which to return the eigenvalues of S (all samples pooled).
        callback: ``callback(iteration, residual, solved)`` after every iteration: its number over the
            whole solve, the residual of its window, and the number of steps converged so far (the window's
            end once it converged); when marching, after every step as ``(1, 0.0, steps done)``.
        save_kernels: path of an ``.npz`` with ``t`` (rows,) and the kernels C_e, R, C_r, C_u (the field's
            covariance, C_r for full batch), K, each (rows, rows), as float64 numpy arrays; ``rows = steps + 1``,
            or ``4 steps + 1`` for RK4, whose rows are its evaluation points (``t`` = step h plus 0, h/2, h/2, h).
        return_kernels: also return them under ``"kernels"``.
        noisy_test: add Delta to ``test_error`` (as the simulation's option).
        delta: Onsager ratio ``D/n`` of the sample side; default its limit ``1/(2 alpha)``
            (``p.D / p.n`` reproduces a finite-d design's exact ratio).

    Returns:
        :class:`quadflow.theory.DMFTResult` (also a mapping with the same keys), numpy arrays of shape
        (steps + 1,) over steps 0..steps: ``t``, ``step``,
        ``mse``, ``test_error`` (2 mse, + Delta with ``noisy_test``), ``train_loss``,
        ``in_sample_error``, ``trace`` (``Tr S / d_eff``, averaged over samples), ``loss_reg``
        (``train_loss + lam trace``); ``stderr`` (dict of jackknife standard errors of the
        ``CURVES`` over samples, same shape; NaN with one sample); ``spectrum`` (list,
        one array of ``samples * d_eff`` eigenvalues of S per spectrum step),
        ``spectrum_t`` (their times); ``converged`` (bool: every window converged),
        ``iterations`` (over all windows), ``residuals`` (list, in order), ``windows`` (list of
        ``{start, stop, iterations, residual, converged}``), ``passes`` (the process steps run, in
        full passes over all steps), ``damping``, ``method``, ``d_eff``, ``samples``, ``wall_time`` (s);
        ``kernels`` with ``return_kernels``.

    Raises:
        ValueError: bad argument (named), or divergence of the process (h too large).
        InsufficientMemoryError (a ValueError): the buffers (:func:`memory_bytes`) do not fit.
    """
    p = as_ratios(p)
    spectrum_steps = tuple(sorted({int(s) for s in spectrum_steps}))
    _check(h, steps, d_eff, samples, channels, tol, max_iter, damping, spectrum_steps, batch_fraction)
    update = _update(optim, h)
    method, window = _solve_method(method, window)
    start = time.perf_counter()
    dev = resolve_device(device)
    size = lambda t: torch.empty((), dtype=t).element_size()  # noqa: E731
    stages = 4 if update.get("rk4") else 1  # kernel rows per step: RK4's evaluation points
    rows = stages * steps
    need = functools.partial(memory_bytes, channels=channels, itemsize=size(dtype),
                             tangent_itemsize=size(tangent_dtype), minibatch=batch_fraction < 1)
    delta = 1.0 / (2.0 * p.alpha) if delta is None else float(delta)
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    label = f"solve_dmft (steps={steps}, d_eff={d_eff}, samples={samples})"
    unsupported = _check_compressed(history, resolution, update, batch_fraction, method, save_kernels, return_kernels)
    if history == "auto" and not unsupported and need(rows, d_eff, samples) > usable_bytes(dev):
        warnings.warn(f"{label}: the exact history needs {need(rows, d_eff, samples) / 2**30:.3g} GiB, more than "
                      f"this device has; solving in the compressed mode (history='compressed', resolution="
                      f"{resolution:g})", RuntimeWarning, stacklevel=2)
        history = "compressed"
    if history == "compressed":
        if unsupported:
            raise ValueError(f"history='compressed' does not take {unsupported}: allowed full-batch updates other "
                             "than RK4, method 'march' and no kernels")
        require_bytes(compressed_bytes(steps, d_eff, samples, channels, resolution), dev, label + " compressed",
                      ["fewer steps (the curves keep every step)", "a smaller d_eff", "fewer samples or channels",
                       "a larger resolution"])
        return solve_compressed(p, h, steps, d_eff, samples, seed, channels, resolution, dev, dtype, tangent_dtype,
                                update, delta, noisy_test, spectrum_steps, callback)
    require_bytes(need(rows, d_eff, samples), dev, label,
                  functools.partial(_fitting, need=need, stages=stages, steps=steps, d_eff=d_eff, samples=samples,
                                    compressed=not unsupported))
    if rows > d_eff * (d_eff + 1) // 2:
        warnings.warn(f"steps={steps} exceeds D = d_eff(d_eff+1)/2: probes are orthogonal only in blocks, "
                      "R is noisier; increase d_eff", RuntimeWarning, stacklevel=2)
    kd = torch.float64
    proc = EffectiveProcess(draw(p.at(d_eff), rows, samples, seed, dev, dtype, probe_dtype=tangent_dtype),
                            alpha=p.alpha, h=h, lam=p.lam, channels=channels,
                            spectrum_steps=[stages * s for s in spectrum_steps], kernel_dtype=kd,
                            tangent_dtype=tangent_dtype, **update)
    T1 = rows + 1
    if stages > 1 and callback is not None:  # report steps, not evaluation points
        callback = functools.partial(_steps_callback, callback, stages)
    A, L, K = (torch.zeros(T1, T1, dtype=kd, device=dev) for _ in range(3))  # L: Cholesky factor of C_u
    fraction = float(batch_fraction)
    selection = None if fraction == 1.0 else Selection(T1, fraction, A)
    if method == "march":
        _march(proc, A, L, K, delta, p.Delta, h, selection, callback)
        residuals, windows = [0.0], [{"start": 0, "stop": T1, "iterations": 1, "residual": 0.0, "converged": True}]
    else:
        residuals, windows, damping = _iterate(proc, A, L, K, T1 if window is None else window, delta, p.Delta, h, tol,
                                               max_iter, damping, selection, callback)
    failed = [w for w in windows if not w["converged"]]
    if failed:
        first, worst = failed[0], max(failed, key=lambda w: w["residual"])
        warnings.warn(f"DMFT not converged in {len(failed)} of {len(windows)} windows after max_iter={max_iter} "
                      f"iterations each: first the window of steps [{first['start']}, {first['stop']}) (t in "
                      f"[{first['start'] * h:.4g}, {(first['stop'] - 1) * h:.4g}], residual {first['residual']:.3g}), "
                      f"worst residual {worst['residual']:.3g} in [{worst['start']}, {worst['stop']}) > tol={tol}; "
                      "the result is flagged (converged=False): increase max_iter, set damping (e.g. 0.5), or reduce h",
                      RuntimeWarning, stacklevel=2)
    side = sample_side(proc.C_e.mean(0), proc.R.mean(0), delta, p.Delta, fraction)
    trace_b = _trace(proc)
    at_steps = np.arange(0, T1, stages)
    row_t = h * (np.arange(T1) // stages + np.array(RK4_STAGE_TIMES if stages > 1 else [0.0])[np.arange(T1) % stages])
    kernels = {"t": row_t, **{k: v.cpu().numpy() for k, v in
                          (("C_e", proc.C_e.mean(0)), ("R", proc.R.mean(0)), ("C_r", side.C_r),
                           ("C_u", side.C_u), ("K", side.K))}}
    if save_kernels is not None:
        np.savez(save_kernels, **kernels)
    curves = _curves(side, trace_b.mean(0), p, noisy_test)
    stderr = _jackknife(proc.C_e, proc.R, trace_b, delta, p, noisy_test, fraction)
    return DMFTResult(
        t=h * np.arange(steps + 1), step=np.arange(steps + 1),
        **{k: v.cpu().numpy()[at_steps] for k, v in curves.items()},
        stderr={k: v[at_steps] for k, v in stderr.items()},
        spectrum=[proc.spectra[stages * s].reshape(-1).double().cpu().numpy() for s in spectrum_steps],
        spectrum_t=h * np.array(spectrum_steps, dtype=float),
        converged=all(w["converged"] for w in windows), iterations=len(residuals), residuals=residuals,
        windows=windows, passes=sum(w["iterations"] * (w["stop"] - w["start"]) for w in windows) / T1,
        damping=damping, method=method, d_eff=d_eff, samples=samples, wall_time=time.perf_counter() - start,
        kernels=kernels if return_kernels else None)
