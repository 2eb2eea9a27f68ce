"""Held-out test inputs: fresh Gaussian samples for the test error of students without ``S()``."""
from __future__ import annotations

import math

import torch
from torch import nn

from quadflow.data.dataset import BLOCK, GENERATION_DTYPE, quadratic_form
from quadflow.data.seeds import generator

HELDOUT_SALT = 2


class HeldOut:
    """``size`` fresh inputs ``x ~ N(0, I_d)`` (from the inputs stream, salted) and the teacher's clean outputs.

    Args:
        s_star: teacher matrix (d, d); size: number of test inputs (>= 2); dtype: of inputs and outputs.
    """

    def __init__(self, s_star: torch.Tensor, seed: int, size: int, *, device, dtype: torch.dtype = torch.float32):
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f"data.test_samples must be an integer >= 2, got {size!r}")
        d = s_star.shape[0]
        blocks = [torch.randn(min(BLOCK, size - lo), d, device=device, dtype=GENERATION_DTYPE,
                              generator=generator(seed, lo // BLOCK, torch.device(device), salt=HELDOUT_SALT))
                  for lo in range(0, size, BLOCK)]
        self.x = torch.cat(blocks).to(dtype)
        self.f_star = quadratic_form(self.x, s_star.to(device=device, dtype=dtype), "gaussian")

    def error(self, model: nn.Module, chunk_rows: int = 65536) -> tuple[float, float]:
        """``(mean, standard error)`` of ``(f(x) - f*(x))^2`` over the held-out inputs."""
        sq = []
        with torch.no_grad():
            for lo in range(0, len(self.x), chunk_rows):
                f = model(self.x[lo:lo + chunk_rows])
                sq.append(((f - self.f_star[lo:lo + chunk_rows].to(f.dtype)) ** 2).double())
        e = torch.cat(sq)
        return float(e.mean()), float(e.std() / math.sqrt(len(e)))
