"""Theory predictions for the gradient flow of extensive-width quadratic networks (docs/theory.md).

Public API::

    from quadflow.theory import (solve_dmft, solve_longtime, longtime_curve, LongTimeSolution,
                                 interpolation_threshold, perfect_recovery_threshold,
                                 parameter_count, solve_population)

Layout:

- :mod:`quadflow.theory.dmft`: transient DMFT of discrete GD (docs/theory.md section 4);
  ``solver`` (:func:`solve_dmft`, the fixed point over the kernels), ``process`` (the
  parameter-side effective matrix process), ``kernels`` (the closed-form sample side).
- :mod:`quadflow.theory.static`: the long-time limit (docs/theory.md sections 5 and 6);
  ``spectral`` (free convolution of Marchenko-Pastur and a semicircle), ``functionals``
  (the tail integrals of the static equations at one noise level), ``longtime``
  (:func:`solve_longtime`, :func:`longtime_curve`) and ``thresholds``.
- :mod:`quadflow.theory.population`: the ``alpha -> infinity`` flow (docs/theory.md
  section 2). It runs the simulation's training loop, so ``solve_population`` is
  imported on first use only.

``quadflow.theory.longtime``, ``quadflow.theory.thresholds`` and ``quadflow.theory.dmft``
are stable import paths of the same functions. Importing this package needs torch,
numpy and scipy only (no Hydra, OmegaConf or W&B).
"""
from quadflow.theory.dmft import solve_dmft
from quadflow.theory.static.longtime import (LongTimeSolution, LongTimeValidityWarning, longtime_curve,
                                             solve_longtime, top_m_cut_binds)
from quadflow.theory.static.thresholds import interpolation_threshold, parameter_count, perfect_recovery_threshold

__all__ = ["LongTimeSolution", "LongTimeValidityWarning", "interpolation_threshold", "longtime_curve",
           "parameter_count", "perfect_recovery_threshold", "solve_dmft", "solve_longtime", "solve_population",
           "top_m_cut_binds"]


def __getattr__(name: str):
    if name == "solve_population":  # lazily: population imports the training loop (quadflow.simulation)
        from quadflow.theory.population import solve_population

        return solve_population
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
