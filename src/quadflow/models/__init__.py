"""Students and teachers as ``nn.Module``s, and the objective that trains them.

``QuadraticNetwork`` is the paper's network; :class:`EmpiricalObjective` puts
its chunked analytic gradient (or any module's chunked autograd gradient)
behind ``loss.backward()``.
"""
from quadflow.models.objective import (ROUTES, EmpiricalObjective, PopulationObjective, Stats, check_student,
                                       choose_route, uses_analytic_gradient)
from quadflow.models.quadratic import QuadraticNetwork, teacher_network
from quadflow.models.variants import SecondLayerQuadratic

__all__ = ["ROUTES", "EmpiricalObjective", "PopulationObjective", "QuadraticNetwork", "SecondLayerQuadratic", "Stats", "check_student",
           "choose_route", "teacher_network", "uses_analytic_gradient"]
