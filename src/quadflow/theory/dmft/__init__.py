"""DMFT of discrete-time GD, SGD with momentum, Adam and minibatch SGD (docs/theory.md section 4).

- :mod:`~quadflow.theory.dmft.solver`: :func:`solve_dmft`, the fixed point over the
  kernels ``(C_r, K)``, with its argument checks and memory estimate.
- :mod:`~quadflow.theory.dmft.process`: the parameter side, ``samples`` batched copies
  of the ``d_eff x d_eff`` effective matrix process and its tangents (estimate of ``R``).
- :mod:`~quadflow.theory.dmft.kernels`: the sample side in closed form (``C_r``, ``K``
  and the observables from ``C_e`` and ``R``).
- :mod:`~quadflow.theory.dmft.compressed`: the long-time mode, a reservoir noise and a
  compressed history (``solve_dmft(..., history="compressed")``).

``from quadflow.theory.dmft import solve_dmft`` (and ``CURVES``, ``HISTORIES``, ``MIN_D_EFF``,
``memory_bytes``, ``WINDOW``) is a stable import path; :mod:`quadflow.theory` is the
documented one of :func:`solve_dmft`.
"""
from quadflow.theory.dmft.solver import CURVES, HISTORIES, MIN_D_EFF, WINDOW, memory_bytes, solve_dmft

__all__ = ["CURVES", "HISTORIES", "MIN_D_EFF", "WINDOW", "memory_bytes", "solve_dmft"]
