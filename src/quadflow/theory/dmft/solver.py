"""Transient DMFT for discrete-time GD (docs/theory.md section 4): :func:`solve_dmft`.

The fixed point over the kernels (C_r, K) couples the parameter-side effective
process (:mod:`quadflow.theory.dmft.process`, d_eff x d_eff matrices, ``samples``
copies batched) with the closed-form sample side
(:mod:`quadflow.theory.dmft.kernels`). Every random number is drawn once, so the
kernel map is deterministic and plain iteration converges to its fixed point.
Outputs are on the simulation's grid ``t = step * h`` (the paper's time,
docs/theory.md section 2), step 0..steps, with the simulation's metric names and
normalisation (docs/theory.md sections 1-2: ``mse = |S - S*|_F^2 / d``,
``train_loss = (1/(4n)) sum r^2``).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace

import numpy as np
import torch

from quadflow.runtime.memory import require_bytes
from quadflow.problem import Problem, check_domain
from quadflow.runtime.device import resolve_device
from quadflow.theory.dmft.kernels import kernel_change, noise_factor, sample_side
from quadflow.theory.dmft.process import draw, run_pass

CURVES = ("mse", "test_error", "train_loss", "in_sample_error")
MIN_D_EFF = 8  # smallest d_eff accepted: the kernel estimates are unstable below it
WARN_D_EFF = 24  # below this d_eff a solve warns (O(1/d_eff) bias)
STALL_ITERATIONS = 3  # non-decreasing residuals before the damping fallback
FALLBACK_DAMPING = 0.5


def _check(h, steps, d_eff, samples, channels, tol, max_iter, damping, spectrum_steps) -> None:
    check_domain(h=h)
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
    if steps > d_eff * (d_eff + 1) // 2:
        warnings.warn(f"steps={steps} exceeds D = d_eff(d_eff+1)/2: probes are orthogonal only in blocks, "
                      "R is noisier; increase d_eff", RuntimeWarning, stacklevel=3)


def memory_bytes(steps: int, d_eff: int, samples: int, channels: int, itemsize: int = 8) -> int:
    """Bytes a solve holds (``itemsize`` bytes per number): the state history (1 + channels),
    noise, GOE draws and probes, each (T+1) x samples x d_eff^2 numbers, plus the
    per-sample (T+1) x (T+1) kernels; ``T = steps``."""
    per_buffer = (steps + 1) * samples * d_eff ** 2 * itemsize
    return per_buffer * (channels + 4) + (2 * samples + 12) * (steps + 1) ** 2 * itemsize


def _check_stable(C_e: torch.Tensor, side, h: float) -> None:
    """Raise when the effective process or its response diverged (GD step too large)."""
    bad = ~torch.isfinite(side.K).all(1)
    for diag in (torch.diagonal(C_e), torch.diagonal(side.C_r)):
        bad |= ~torch.isfinite(diag) | (diag.abs() > 1e6 * diag[0].abs().clamp_min(1.0))
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        raise ValueError(f"h={h} is too large for stability: the effective process diverged at step {k} "
                         f"(t={k * h:.3g}); reduce h (GD needs roughly h < 1/(2 lambda_max(S)))")


def _curves(side, p: Problem, noisy_test: bool) -> dict:
    mse = side.mse
    return {"mse": mse, "test_error": 2 * mse + (p.Delta if noisy_test else 0.0),
            "train_loss": side.train_loss, "in_sample_error": side.in_sample_error}


def _jackknife(C_e_b: torch.Tensor, R_b: torch.Tensor, delta: float, p: Problem, noisy_test: bool) -> dict:
    """Leave-one-sample-out standard errors of the curves (NaN with one sample)."""
    B = C_e_b.shape[0]
    if B < 2:
        return {k: np.full(C_e_b.shape[1], np.nan) for k in CURVES}
    c_sum, r_sum = C_e_b.sum(0), R_b.sum(0)
    leave = [_curves(sample_side((c_sum - C_e_b[b]) / (B - 1), (r_sum - R_b[b]) / (B - 1), delta, p.Delta),
                     p, noisy_test) for b in range(B)]
    out = {}
    for k in CURVES:
        vals = torch.stack([c[k] for c in leave])
        out[k] = (math.sqrt((B - 1) / B) * torch.linalg.vector_norm(vals - vals.mean(0), dim=0)).cpu().numpy()
    return out


def solve_dmft(p: Problem, h: float = 0.05, steps: int = 400, d_eff: int = 64, samples: int = 4, seed: int = 0,
               channels: int = 4, device: str = "cpu", dtype: torch.dtype = torch.float64, tol: float = 1e-4, max_iter: int = 60,
               damping: float = 0.0, spectrum_steps=(), callback=None, save_kernels: str | None = None,
               return_kernels: bool = False, noisy_test: bool = False, delta: float | None = None) -> dict:
    """Solve the discrete-time DMFT of GD ``W <- W + 2h (W Gamma - lam W)`` for ``steps`` steps.

    Args:
        p: the problem; only its ratios (kappa, kappa_star, alpha, Delta, lam, sigma0)
            enter, the parameter side is simulated at ``d_eff`` (p.d is ignored).
        h, steps: GD step size (paper's time, t = step * h) and number of steps.
        d_eff: dimension of the effective matrix process (>= ``MIN_D_EFF`` = 8; O(1/d_eff) bias).
        samples: independent copies of the effective process averaged in the kernels.
        channels: tangents per sample for the estimate of R (probes of times j = c mod
            channels go to tangent c); 4 cuts the noise of the late train loss 2-3x
            against 1 (docs/validation.md) for +60% cost; more gains little.
        seed: seed of all frozen random numbers; sample b shares its teacher and
            initialisation with ``simulate``/``solve_population`` at d_eff and seed + b.
        device, dtype: torch device (``cpu``, ``cuda``, ``auto``) and dtype.
        tol: convergence threshold on the per-iteration residual
            (:func:`quadflow.theory.dmft.kernels.kernel_change`).
        max_iter: iteration cap; not converging warns and sets ``converged=False``.
        damping: weight of the old kernels in the update (0 = plain iteration). If
            the residual stalls for 3 iterations, damping switches to 0.5 (warned).
        spectrum_steps: steps at which to return the eigenvalues of S (all samples pooled).
        callback: ``callback(iteration, residual)`` after every iteration.
        save_kernels: path of an ``.npz`` with ``t`` (steps + 1,) and the kernels C_e, R, C_r, K,
            each (steps + 1, steps + 1), as numpy arrays of ``dtype``.
        return_kernels: also return them under ``"kernels"``.
        noisy_test: add Delta to ``test_error`` (as the simulation's option).
        delta: Onsager ratio ``D/n`` of the sample side; default its limit ``1/(2 alpha)``
            (``p.D / p.n`` reproduces a finite-d design's exact ratio).

    Returns:
        dict of numpy arrays of shape (steps + 1,) over steps 0..steps: ``t``, ``step``,
        ``mse``, ``test_error`` (2 mse, + Delta with ``noisy_test``), ``train_loss``,
        ``in_sample_error``; ``stderr`` (dict of jackknife standard errors of the
        ``CURVES`` over samples, same shape; NaN with one sample); ``spectrum`` (list,
        one array of ``samples * d_eff`` eigenvalues of S per spectrum step),
        ``spectrum_t`` (their times); ``converged`` (bool),
        ``iterations``, ``residuals`` (list), ``damping``, ``d_eff``, ``samples``,
        ``wall_time`` (s).

    Raises:
        ValueError: bad argument (named), or divergence of the process (h too large).
        InsufficientMemoryError (a ValueError): the buffers (:func:`memory_bytes`) do not fit.
    """
    spectrum_steps = tuple(sorted({int(s) for s in spectrum_steps}))
    _check(h, steps, d_eff, samples, channels, tol, max_iter, damping, spectrum_steps)
    start = time.perf_counter()
    dev = resolve_device(device)
    require_bytes(memory_bytes(steps, d_eff, samples, channels, torch.empty((), dtype=dtype).element_size()), dev,
                  "solve_dmft", ["reduce d_eff, steps, samples or channels"])
    delta = 1.0 / (2.0 * p.alpha) if delta is None else float(delta)
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    draws = draw(replace(p, d=d_eff), steps, samples, seed, dev, dtype)
    C_r = torch.zeros(steps + 1, steps + 1, dtype=dtype, device=dev)
    K = torch.zeros_like(C_r)
    residuals, converged, best, stalled = [], False, math.inf, 0
    for iteration in range(1, max_iter + 1):
        res = run_pass(draws, K, noise_factor(C_r), alpha=p.alpha, h=h, lam=p.lam, channels=channels,
                       spectrum_steps=spectrum_steps)
        C_e, R = res.C_e.mean(0), res.R.mean(0)
        side = sample_side(C_e, R, delta, p.Delta)
        _check_stable(C_e, side, h)
        residual = kernel_change(C_r, K, side)
        residuals.append(residual)
        if callback is not None:
            callback(iteration, residual)
        if residual < tol:
            converged = True
            break
        stalled = stalled + 1 if residual >= best else 0
        best = min(best, residual)
        if stalled >= STALL_ITERATIONS and damping == 0.0:
            warnings.warn(f"plain iteration stalled at residual {residual:.3g}; switching to damping="
                          f"{FALLBACK_DAMPING}", RuntimeWarning, stacklevel=2)
            damping, stalled = FALLBACK_DAMPING, 0
        C_r = damping * C_r + (1 - damping) * side.C_r
        K = damping * K + (1 - damping) * side.K
    if not converged:
        warnings.warn(f"DMFT not converged after max_iter={max_iter} iterations (residual {residuals[-1]:.3g} "
                      f"> tol={tol}); increase max_iter, set damping (e.g. 0.5), or reduce steps",
                      RuntimeWarning, stacklevel=2)
    out = {"t": h * np.arange(steps + 1), "step": np.arange(steps + 1)}
    out.update({k: v.cpu().numpy() for k, v in _curves(side, p, noisy_test).items()})
    out["stderr"] = _jackknife(res.C_e, res.R, delta, p, noisy_test)
    out["spectrum"] = [res.spectra[s].reshape(-1).cpu().numpy() for s in spectrum_steps]
    out["spectrum_t"] = h * np.array(spectrum_steps, dtype=float)
    out.update(converged=converged, iterations=len(residuals), residuals=residuals, damping=damping,
               d_eff=d_eff, samples=samples, wall_time=time.perf_counter() - start)
    kernels = {"t": out["t"], **{k: v.cpu().numpy() for k, v in
                                 (("C_e", C_e), ("R", R), ("C_r", side.C_r), ("K", side.K))}}
    if save_kernels is not None:
        np.savez(save_kernels, **kernels)
    if return_kernels:
        out["kernels"] = kernels
    return out
