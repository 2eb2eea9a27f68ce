"""Theory predictions for the gradient flow of extensive-width quadratic networks (docs/theory.md).

Public API (this package is the one documented import path)::

    from quadflow.theory import (Ratios, solve_dmft, solve_population, solve_longtime, longtime_curve,
                                 interpolation_threshold, perfect_recovery_threshold, parameter_count,
                                 Curves, DMFTResult, PopulationResult, LongTimeSolution,
                                 LongTimeValidityWarning, top_m_cut_binds)

    r = Ratios(kappa=1.5, kappa_star=0.5, alpha=1.0, Delta=0.0, lam=0.1)   # d-free; a Problem works too
    th = solve_dmft(r, h=0.05, steps=400, d_eff=64)               # DMFTResult: th.mse, (steps + 1,)
    th = solve_dmft(r, h=0.05, steps=400, method="windows", window=25)    # the windowed cross-check
    pop = solve_population(r, h=0.05, steps=400, d_eff=64)        # PopulationResult (needs d_eff with Ratios)
    sol = solve_longtime(r)                                       # LongTimeSolution: sol.mse, sol.q, sol.xi
    curve = longtime_curve(r, "alpha", [0.5, 1.0, 2.0])           # dict of arrays over the values

Every solver takes a :class:`~quadflow.problem.Ratios` or a :class:`~quadflow.problem.Problem` first
(only the ratios enter; the trajectory solvers run at ``d_eff``). :class:`DMFTResult` and
:class:`PopulationResult` share the :class:`Curves` core (``t``, ``step`` and the metric arrays,
of shape ``(records,)``, in the paper's time ``t = step * h``) and also answer mapping access
(``th["mse"]``, ``"kernels" in th``). ``solve_longtime`` also takes the scalars
``solve_longtime(alpha=, kappa=, kappa_star=, lam=, Delta=)``; its :class:`LongTimeSolution`
holds constants, not curves.

Layout:

- :mod:`quadflow.theory.dmft`: transient DMFT of discrete GD and its optimisers (docs/theory.md
  section 4); ``solver`` (:func:`solve_dmft`, the fixed point over the kernels), ``process`` (the
  parameter-side effective matrix process), ``kernels`` (the closed-form sample side).
- :mod:`quadflow.theory.static`: the long-time limit (docs/theory.md sections 5 and 6);
  ``spectral`` (free convolution of Marchenko-Pastur and a semicircle), ``functionals``
  (the tail integrals of the static equations at one noise level), ``longtime``
  (:func:`solve_longtime`, :func:`longtime_curve`) and ``thresholds``.
- :mod:`quadflow.theory.population`: the ``alpha -> infinity`` flow (docs/theory.md
  section 2), its own loop over the population objective of :mod:`quadflow.models`.
- :mod:`quadflow.theory.results`: the result dataclasses.

``quadflow.theory.longtime``, ``quadflow.theory.thresholds`` and ``quadflow.theory.dmft``
are stable import paths of the same functions. Importing this package needs torch,
numpy and scipy only: it loads neither the training loop (``quadflow.train``) nor the app
(``quadflow.cli``), Hydra, OmegaConf or W&B.
"""
from quadflow.problem import Ratios
from quadflow.theory.dmft import solve_dmft
from quadflow.theory.population import solve_population
from quadflow.theory.results import Curves, DMFTResult, PopulationResult
from quadflow.theory.static.longtime import (LongTimeSolution, LongTimeValidityWarning, longtime_curve,
                                             solve_longtime, top_m_cut_binds)
from quadflow.theory.static.thresholds import interpolation_threshold, parameter_count, perfect_recovery_threshold

__all__ = ["Curves", "DMFTResult", "LongTimeSolution", "LongTimeValidityWarning", "PopulationResult", "Ratios",
           "interpolation_threshold", "longtime_curve", "parameter_count", "perfect_recovery_threshold",
           "solve_dmft", "solve_longtime", "solve_population", "top_m_cut_binds"]
