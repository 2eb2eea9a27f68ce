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
        s_star: teacher matrix (d, d), or (R, d, d) for R replicas; seed: the inputs stream (a sequence of R
            seeds with replicas); size: number of test inputs (>= 2); dtype: of inputs and outputs.

    Attributes: ``x`` (size, d) and ``f_star`` (size,), with a leading replica axis R with replicas.
    """

    def __init__(self, s_star: torch.Tensor, seed, size: int, *, device, dtype: torch.dtype = torch.float32):
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f"data.test_samples must be an integer >= 2, got {size!r}")
        d, replicated = s_star.shape[-1], s_star.dim() == 3
        seeds = list(seed) if replicated else [seed]
        x = torch.stack([torch.cat([torch.randn(min(BLOCK, size - lo), d, device=device, dtype=GENERATION_DTYPE,
                                                generator=generator(sd, lo // BLOCK, torch.device(device),
                                                                    salt=HELDOUT_SALT))
                                    for lo in range(0, size, BLOCK)]) for sd in seeds]).to(dtype)
        self.x = x if replicated else x[0]
        self.f_star = quadratic_form(self.x, s_star.to(device=device, dtype=dtype), "gaussian")

    def error(self, model: nn.Module, chunk_rows: int = 65536):
        """``(mean, standard error)`` of ``(f(x) - f*(x))^2`` over the held-out inputs: floats, or arrays (R,)
        with replicas."""
        sq = []
        with torch.no_grad():
            for lo in range(0, self.x.shape[-2], chunk_rows):
                f = model(self.x[..., lo:lo + chunk_rows, :])
                sq.append(((f - self.f_star[..., lo:lo + chunk_rows].to(f.dtype)) ** 2).double())
        e = torch.cat(sq, -1)
        mean, se = e.mean(-1).cpu().numpy(), (e.std(-1) / math.sqrt(e.shape[-1])).cpu().numpy()
        return (float(mean), float(se)) if e.dim() == 1 else (mean, se)
