"""Minibatches for stochastic GD: the same global draw on every rank, each rank taking its own rows."""
from __future__ import annotations

import torch

from quadflow.data.seeds import generator

BATCH_SALT = 1


def check_batch_size(batch_size: int | None, n: int) -> None:
    """Raise ``ValueError`` unless ``batch_size`` is None (full batch) or in ``[1, n]``."""
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ValueError(f"trainer.batch_size={batch_size!r} is out of range: allowed 1..n = {n} or null (full batch)")


class MinibatchSampler:
    """``step -> (local row indices, batch size)``: ``batch_size`` of the ``n`` samples without replacement.

    The draw at a step depends only on ``(seed, step)``, so a resumed run sees the same batches;
    ``rows`` is the range of global sample indices this rank holds. With a sequence of R seeds (replicas,
    one rank) each replica draws its own batch: indices (R, batch_size).
    """

    def __init__(self, n: int, batch_size: int, seed, rows: range, device):
        check_batch_size(batch_size, n)
        self.n, self.batch_size, self.seed, self.rows, self.device = n, batch_size, seed, rows, device

    def _draw(self, seed: int, step: int) -> torch.Tensor:
        g = generator(seed, step, torch.device("cpu"), salt=BATCH_SALT)
        idx = torch.randperm(self.n, generator=g)[:self.batch_size]
        return idx[(idx >= self.rows.start) & (idx < self.rows.stop)] - self.rows.start

    def __call__(self, step: int) -> tuple[torch.Tensor, int]:
        if isinstance(self.seed, int):
            return self._draw(self.seed, step).to(self.device), self.batch_size
        return torch.stack([self._draw(s, step) for s in self.seed]).to(self.device), self.batch_size
