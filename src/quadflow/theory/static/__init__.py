"""The long-time limit of the flow: static equations and thresholds (docs/theory.md sections 5-6).

- :mod:`~quadflow.theory.static.spectral`: the spectrum ``rho`` of ``Y = S* + sqrt(xi) G``
  (Marchenko-Pastur free-convolved with a semicircle), its Hilbert transform and
  spectrally accurate tail integrals.
- :mod:`~quadflow.theory.static.functionals`: the functionals ``mse``, ``I``, rank
  fraction and trace at one ``(kappa_star, xi)``, cached; shared by the two modules below.
- :mod:`~quadflow.theory.static.longtime`: :func:`solve_longtime` and :func:`longtime_curve`.
- :mod:`~quadflow.theory.static.thresholds`: interpolation and perfect-recovery thresholds.

Dependencies run one way: spectral <- functionals <- thresholds <- longtime.
"""
