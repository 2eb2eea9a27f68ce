"""Stable import path of the thresholds (docs/theory.md section 6).

``from quadflow.theory.thresholds import interpolation_threshold, perfect_recovery_threshold``
(and ``parameter_count``) keeps working; the implementation is
:mod:`quadflow.theory.static.thresholds`, the documented path :mod:`quadflow.theory`.
"""
from quadflow.theory.static.thresholds import interpolation_threshold, parameter_count, perfect_recovery_threshold

__all__ = ["interpolation_threshold", "parameter_count", "perfect_recovery_threshold"]
