"""Stable import path of the long-time solver (docs/theory.md section 5).

``from quadflow.theory.longtime import solve_longtime, longtime_curve`` keeps working;
the implementation is :mod:`quadflow.theory.static.longtime`, the documented path
:mod:`quadflow.theory`.
"""
from quadflow.theory.static.longtime import LongTimeSolution, longtime_curve, solve_longtime

__all__ = ["LongTimeSolution", "longtime_curve", "solve_longtime"]
