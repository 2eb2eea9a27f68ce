"""Precision resolution.

Precision modes (storage dtype of the dataset / compute dtype of W and S):

- ``fp64``: float64 everywhere (tests, validation).
- ``fp32``: float32 with full-precision matmuls (TF32 disabled).
- ``tf32``: float32 storage, TF32 tensor-core matmuls on CUDA (fp32 on CPU).
- ``bf16``: dataset stored in bfloat16, matmuls on bfloat16 inputs, W, S,
  residuals and all reductions of metrics in float32.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

PRECISIONS = ("fp64", "fp32", "tf32", "bf16")


@dataclass(frozen=True)
class Precision:
    """Resolved precision: ``storage`` dtype of data, ``compute`` dtype of W/S, TF32 flag."""

    name: str
    storage: torch.dtype
    compute: torch.dtype
    tf32: bool

    @contextlib.contextmanager
    def matmul_context(self):
        """Set ``torch.backends.cuda.matmul.allow_tf32`` for the duration, then restore it."""
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old


def resolve_precision(name: str) -> Precision:
    """Map a precision name (``fp64|fp32|tf32|bf16``) to a :class:`Precision`."""
    table = {
        "fp64": Precision("fp64", torch.float64, torch.float64, False),
        "fp32": Precision("fp32", torch.float32, torch.float32, False),
        "tf32": Precision("tf32", torch.float32, torch.float32, True),
        "bf16": Precision("bf16", torch.bfloat16, torch.float32, False),
    }
    if name not in table:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    return table[name]
