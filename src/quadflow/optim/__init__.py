"""Optimisers: any ``torch.optim`` class, and quadflow's own (:class:`RK4`).

The paper's time: with quadflow's loss scaling ``torch.optim.SGD(lr=h)`` is the
discrete flow ``W <- W + 2h (W Gamma - lam W)`` and ``t = step * h``
(docs/theory.md section 2). :func:`by_name` gives the four presets of the
``optim`` config group to Python callers (``simulate(..., optim="adam")``).
"""
from __future__ import annotations

import functools
from typing import Callable

import torch

from quadflow.optim.rk4 import RK4

# name -> (class, default arguments): the same choices as conf/optim/*.yaml
PRESETS = {
    "gd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "adam": (torch.optim.Adam, {}),
    "rk4": (RK4, {}),
}


def by_name(name: str, h: float, **params) -> Callable:
    """``params -> Optimizer`` for a preset name (``gd|momentum|adam|rk4``) with learning rate ``h``.

    ``params`` are the optimiser's own constructor arguments (``momentum``, ``betas``, ``eps``, ...).
    """
    if name not in PRESETS:
        raise ValueError(f"optim must be one of {tuple(PRESETS)} or a callable params -> Optimizer, got {name!r}")
    cls, defaults = PRESETS[name]
    return functools.partial(cls, **{"lr": h, **defaults, **params})


def optimizer_factory(optim: str | Callable, h: float, params: dict | None = None) -> Callable:
    """``params -> Optimizer``: :func:`by_name` for a preset name, ``optim`` itself for a callable."""
    return by_name(optim, h, **(params or {})) if isinstance(optim, str) else optim


def uses_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` must be given a closure (RK4, L-BFGS)."""
    return bool(getattr(optimizer, "uses_closure", False)) or isinstance(optimizer, torch.optim.LBFGS)


__all__ = ["PRESETS", "RK4", "adam_settings", "by_name", "dmft_update", "follows_flow", "optimizer_factory",
           "rk4_settings", "rmsprop_settings", "sgd_settings", "uses_closure"]


def gd_mismatch(optimizer: torch.optim.Optimizer, h: float) -> str | None:
    """What makes ``optimizer`` differ from the paper's discrete GD at step ``h`` (None when it is that GD).

    That GD is ``torch.optim.SGD`` with ``lr = h`` and no momentum, Nesterov, weight decay or ``maximize``
    (quadflow's loss scaling puts the l2 term in the loss, not in ``weight_decay``). Returns the
    optimiser's name and the arguments that differ, e.g. ``"SGD(momentum=0.9)"``.
    """
    name = type(optimizer).__name__
    if type(optimizer) is not torch.optim.SGD:
        return name
    group = optimizer.param_groups[0]
    plain = {"momentum": 0, "nesterov": False, "weight_decay": 0, "maximize": False}
    differ = [f"{k}={group[k]!r}" for k, v in plain.items() if k in group and group[k] != v]
    lr = float(group["lr"])
    if abs(lr - h) > 1e-12 * h:
        differ.insert(0, f"lr={lr:g} with trainer.h={h:g}")
    return f"{name}({', '.join(differ)})" if differ else None


def sgd_settings(optimizer: torch.optim.Optimizer) -> dict | None:
    """The update of ``optimizer`` as the DMFT's effective process runs it, or None when it cannot.

    It can for ``torch.optim.SGD`` (the class itself) with every parameter group alike, ``weight_decay`` 0
    and ``maximize`` False (quadflow puts the l2 term in the loss): returns ``{"lr", "momentum",
    "dampening", "nesterov"}`` as float, float, float, bool. Adam, RK4, subclasses and users' classes give None.
    """
    if type(optimizer) is not torch.optim.SGD:
        return None
    keys = ("lr", "momentum", "dampening", "nesterov", "weight_decay", "maximize")
    first = optimizer.param_groups[0]
    if any(group[k] != first[k] for group in optimizer.param_groups[1:] for k in keys):
        return None
    if first["weight_decay"] != 0 or first["maximize"]:
        return None
    return {"lr": float(first["lr"]), "momentum": float(first["momentum"]), "dampening": float(first["dampening"]),
            "nesterov": bool(first["nesterov"])}


def adam_settings(optimizer: torch.optim.Optimizer) -> dict | None:
    """The update of ``optimizer`` as the DMFT's effective process runs it when it is Adam, or None.

    It can for ``torch.optim.Adam`` and ``torch.optim.AdamW`` (the classes themselves) with every parameter
    group alike, ``amsgrad`` and ``maximize`` False, and ``weight_decay`` either 0 or decoupled (AdamW's
    ``W <- (1 - lr wd) W`` before the step; Adam's coupled l2 term is refused, quadflow puts it in the loss):
    returns ``{"lr", "betas", "eps", "weight_decay", "bias_correction"}`` as float, (float, float), float,
    float, True.
    """
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
        return None
    keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")
    first = optimizer.param_groups[0]
    if any(group.get(k) != first.get(k) for group in optimizer.param_groups[1:] for k in keys):
        return None
    decoupled = first.get("decoupled_weight_decay", type(optimizer) is torch.optim.AdamW)
    if first["amsgrad"] or first["maximize"] or (first["weight_decay"] != 0 and not decoupled):
        return None
    b1, b2 = first["betas"]
    return {"lr": float(first["lr"]), "betas": (float(b1), float(b2)), "eps": float(first["eps"]),
            "weight_decay": float(first["weight_decay"]), "bias_correction": True}


def rmsprop_settings(optimizer: torch.optim.Optimizer) -> dict | None:
    """The update of ``optimizer`` in :func:`adam_settings`'s form when it is plain RMSprop, or None.

    ``torch.optim.RMSprop(lr, alpha, eps)`` (the class itself, every parameter group alike, without
    ``momentum``, ``centered``, ``weight_decay`` or ``maximize``) is Adam with ``betas = (0, alpha)`` and no
    bias correction: ``v <- alpha v + (1 - alpha) g^2``, ``W <- W - lr g / (sqrt(v) + eps)``."""
    if type(optimizer) is not torch.optim.RMSprop:
        return None
    keys = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
    first = optimizer.param_groups[0]
    if any(group.get(k) != first.get(k) for group in optimizer.param_groups[1:] for k in keys):
        return None
    if first["momentum"] != 0 or first["centered"] or first["weight_decay"] != 0 or first["maximize"]:
        return None
    return {"lr": float(first["lr"]), "betas": (0.0, float(first["alpha"])), "eps": float(first["eps"]),
            "weight_decay": 0.0, "bias_correction": False}


def rk4_settings(optimizer: torch.optim.Optimizer) -> dict | None:
    """``{"lr", "rk4": True}`` for quadflow's :class:`RK4` (the class itself, every parameter group alike), else
    None: the effective process then runs RK4's four evaluation points per step."""
    if type(optimizer) is not RK4:
        return None
    lrs = {float(group["lr"]) for group in optimizer.param_groups}
    return {"lr": lrs.pop(), "rk4": True} if len(lrs) == 1 else None


def dmft_update(optimizer: torch.optim.Optimizer) -> dict | None:
    """The update the DMFT's effective process runs for ``optimizer``: :func:`sgd_settings`,
    :func:`adam_settings`, :func:`rmsprop_settings` or :func:`rk4_settings`, None when it follows none."""
    return sgd_settings(optimizer) or adam_settings(optimizer) or rmsprop_settings(optimizer) or rk4_settings(optimizer)


def follows_flow(optimizer: torch.optim.Optimizer) -> bool:
    """Whether each step of ``optimizer`` is ``-lr grad L`` to first order in ``lr`` (the gradient flow of ``L``
    with step ``lr``): RK4, and plain SGD (:func:`gd_mismatch` at its own ``lr`` finds nothing)."""
    return isinstance(optimizer, RK4) or gd_mismatch(optimizer, float(optimizer.param_groups[0]["lr"])) is None
