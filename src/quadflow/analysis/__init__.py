"""Analysis of measured results against the theory (numpy and scipy only).

    from quadflow.analysis import extrapolate
    ex = extrapolate(d, mse, theory=sol.mse)     # d: size of each seed's run, mse: its final value
    ex.value, ex.error, ex.model, ex.p, ex.gap, ex.gap_law.p, ex.size_at_gap(0.02)

The measurements of scripts/validation/ are built on three submodules, imported on their own (torch,
numpy, scipy; no Hydra or W&B): :mod:`quadflow.analysis.points` (the resumable runner: points cached
under their config hash), :mod:`quadflow.analysis.regimes` (the named parameter points) and
:mod:`quadflow.analysis.curves` (curves of finite-size runs against the DMFT, extrapolated to d -> infinity).
"""
from quadflow.analysis.finite_size import Extrapolation, Law, extrapolate, extrapolate_or_explain, per_size

__all__ = ["Extrapolation", "Law", "extrapolate", "extrapolate_or_explain", "per_size"]
