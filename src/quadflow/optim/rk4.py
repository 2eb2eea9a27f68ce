"""Gradient flow integrated by the classical fourth-order Runge-Kutta scheme, as a ``torch.optim`` optimiser."""
from __future__ import annotations

import torch


class RK4(torch.optim.Optimizer):
    """RK4 for the flow ``d theta/dt = -grad L(theta)`` with step ``lr`` in the paper's time.

    With quadflow's loss scaling (:mod:`quadflow.models.objective`) this integrates
    ``dW/dt = 2 (W Gamma - lam W)`` to fourth order in ``lr``, so it takes larger steps
    than small-step GD for the same accuracy, up to its stability limit, about 1.4 times
    GD's largest step (conf/optim/rk4.yaml; above it RK4 oscillates or settles on points
    that are not fixed points of the flow). ``step(closure)`` needs a closure that
    zeroes the gradients, evaluates the loss and calls ``backward()``; the gradients
    already in ``.grad`` (from the loop's own evaluation at the current point) are
    the first stage, so a step costs three further evaluations.
    """

    uses_closure = True

    def __init__(self, params, lr: float):
        if not lr > 0:
            raise ValueError(f"RK4: lr must be > 0, got {lr!r}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise ValueError("RK4.step needs a closure that re-evaluates the loss and its gradients")
        params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        lrs = [g["lr"] for g in self.param_groups for p in g["params"] if p.requires_grad]
        if any(p.grad is None for p in params):
            with torch.enable_grad():
                closure()
        start = [p.detach().clone() for p in params]
        k1 = [-p.grad for p in params]

        def stage(fraction: float, k: list) -> list:
            for p, w0, h, ki in zip(params, start, lrs, k):
                p.copy_(w0 + fraction * h * ki)
            with torch.enable_grad():
                closure()
            return [-p.grad for p in params]

        k2 = stage(0.5, k1)
        k3 = stage(0.5, k2)
        k4 = stage(1.0, k3)
        for p, w0, h, a, b, c, e in zip(params, start, lrs, k1, k2, k3, k4):
            p.copy_(w0 + (h / 6.0) * (a + 2 * b + 2 * c + e))
        return None
