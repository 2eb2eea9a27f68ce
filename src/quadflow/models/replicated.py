"""R copies of any student on a leading tensor axis: :class:`Replicated` (``torch.func`` stacking and ``vmap``).

The built-in :class:`quadflow.models.QuadraticNetwork` has its own replica axis (``replicas=R``, batched
GEMMs); any other ``nn.Module`` is replicated here: its R copies' parameters are stacked by
``torch.func.stack_module_state`` into parameters of shape (R, ...) and the forward pass is the copy's
forward under ``vmap``, so one autograd pass gives every replica its own gradient.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state


class Replicated(nn.Module):
    """R independent copies of a module, trained as one.

    Args:
        modules: the R copies (same class and parameter shapes; their own initialisations).

    Parameters are registered under the copies' names with ``.`` replaced by ``__`` and shape (R, ...).
    ``forward`` maps inputs (R, batch, ...) to outputs (R, batch); ``S()`` (when the copies have one) returns
    (R, d, d).
    """

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        if not modules:
            raise ValueError("Replicated: needs at least one module")
        params, buffers = stack_module_state(modules)
        self.replicas, self.names = len(modules), list(params)
        for name, value in params.items():
            self.register_parameter(name.replace(".", "__"), nn.Parameter(value))
        for name, value in buffers.items():
            self.register_buffer(name.replace(".", "__"), value)
        self.buffer_names = list(buffers)
        base = copy.deepcopy(modules[0]).to("meta")
        object.__setattr__(self, "base", base)  # not a submodule: its parameters are the stacked ones
        self.module_class = type(modules[0])
        self.d, self.m = getattr(modules[0], "d", None), getattr(modules[0], "m", None)

    def _state(self) -> dict:
        return {**{n: getattr(self, n.replace(".", "__")) for n in self.names},
                **{n: getattr(self, n.replace(".", "__")) for n in self.buffer_names}}

    def _vmapped(self, method: str, *args):
        """``method`` of every copy on its own slice of the stacked state (and of ``args``), stacked on axis 0."""
        def call(state, *a):
            return _method_call(self.base, state, method, *a)
        return torch.vmap(call, randomness="different")(self._state(), *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (R, batch) for inputs (R, batch, ...)."""
        return self._vmapped("forward", x)

    @property
    def S(self):
        """The copies' ``S()`` stacked to (R, d, d), or None when the module has none."""
        if not callable(getattr(self.base, "S", None)):
            return None
        return lambda: self._vmapped("S")

    def extra_repr(self) -> str:
        return f"{self.module_class.__name__} x {self.replicas}"


def _method_call(module: nn.Module, state: dict, method: str, *args):
    """``module.<method>(*args)`` with its parameters and buffers replaced by ``state`` (``functional_call``
    for any method: the module's ``forward`` is swapped for the method during the call)."""
    if method == "forward":
        return functional_call(module, state, args, strict=False)

    class Call(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, *a):
            return getattr(self.inner, method)(*a)

    return functional_call(Call(), {f"inner.{k}": v for k, v in state.items()}, args, strict=False)
