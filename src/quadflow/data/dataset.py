"""Teacher, training inputs and labels (theory.md sections 1 and 3).

Randomness is split into four independent streams (teacher, inputs, noise,
initialisation) derived from one master seed, any of which can be pinned.
Samples are generated in blocks of ``BLOCK`` rows, block ``b`` from its own
counter-based generator, so a dataset is the same whatever the compute chunk
size, the number of ranks it is sharded over, or whether it is stored
(``storage="materialized"``) or recomputed at every pass
(``storage="regenerate"``, bounded memory).

Designs:
- ``gaussian``: inputs ``x ~ N(0, I_d)``, sensing matrix ``Z(x) = (x x^T - I)/sqrt(d)``.
  A chunk is the ``(rows, d)`` input matrix.
- ``goe``: independent GOE sensing matrices ``G`` (off-diagonal variance 1/d,
  diagonal 2/d), the design the DMFT describes exactly. A chunk is ``(rows, d, d)``;
  memory ``n d^2`` numbers, so small d only.

Labels ``y = <S*, Z> + sqrt(Delta) xi`` with ``S* = W*^T W* / m_star``.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from quadflow.data.seeds import Seeds, generator
from quadflow.problem import Problem
from quadflow.runtime.distributed import shard_blocks

BLOCK = 4096
# Random draws are made in float32 whatever the precision, so that fp64, fp32, tf32 and
# bf16 runs see the same dataset (fp64 runs get float32-representable Gaussian draws).
GENERATION_DTYPE = torch.float32
DESIGNS = ("gaussian", "goe")
STORAGES = ("materialized", "regenerate")


def quadratic_form(a: torch.Tensor, s: torch.Tensor, design: str) -> torch.Tensor:
    """``<S, Z_mu>`` for a chunk: (rows,) from inputs (rows, d) or GOE matrices (rows, d, d).

    Gaussian design: ``(x^T S x - Tr S) / sqrt(d)``, computed as a row-wise dot with ``x S``.
    The result is in ``s.dtype`` (matmul inputs cast to ``a.dtype``).
    """
    d = s.shape[0]
    if design == "goe":
        return (a.reshape(a.shape[0], -1) @ s.to(a.dtype).reshape(-1)).to(s.dtype)
    xs = (a @ s.to(a.dtype)).to(s.dtype)
    return ((xs * a.to(s.dtype)).sum(1) - torch.diagonal(s).sum()) / math.sqrt(d)


def check_data_options(design: str, storage: str) -> None:
    """Raise ``ValueError`` naming ``data.design`` / ``data.storage`` when they are unknown or incompatible."""
    if design not in DESIGNS:
        raise ValueError(f"data.design must be one of {DESIGNS}, got {design!r}")
    if storage not in STORAGES:
        raise ValueError(f"data.storage must be one of {STORAGES}, got {storage!r}")
    if design == "goe" and storage == "regenerate":
        raise ValueError("data.storage=regenerate is implemented for data.design=gaussian only")


class Dataset:
    """The training set of one rank: sensing data in blocks, clean labels and noisy labels.

    Args:
        p: the problem (n, d, Delta).
        s_star: teacher matrix (d, d), any dtype/device (cast to the compute dtype).
        seeds: the random streams (``inputs`` and ``noise`` are used here).
        design: ``gaussian`` or ``goe``.
        storage: ``materialized`` keeps the inputs in memory; ``regenerate``
            recomputes each block from its seed at every pass (gaussian only).
        dtype: storage dtype of the inputs; labels are kept in ``compute_dtype``.
        rank, world_size: this rank's share of the blocks.

    Attributes:
        y: noisy labels of this rank's samples, shape (n_local,).
        y_clean: teacher outputs ``<S*, Z_mu>``, shape (n_local,).
        n: total number of samples over all ranks (normalisations use it).
    """

    def __init__(self, p: Problem, s_star: torch.Tensor, seeds: Seeds, *, design: str = "gaussian",
                 storage: str = "materialized", dtype: torch.dtype = torch.float32,
                 compute_dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1):
        check_data_options(design, storage)
        self.p, self.design, self.storage = p, design, storage
        self.dtype, self.compute_dtype, self.device = dtype, compute_dtype, torch.device(device)
        self.seeds, self.n = seeds, p.n
        n_blocks = -(-p.n // BLOCK)
        self.blocks = shard_blocks(n_blocks, rank, world_size)
        self.rows = range(self.blocks.start * BLOCK, min(p.n, self.blocks.stop * BLOCK))
        s = s_star.to(device=self.device, dtype=compute_dtype)
        shape = (self.n_local, p.d, p.d) if design == "goe" else (self.n_local, p.d)
        # preallocated and filled block by block: peak memory is the dataset plus one block
        self.inputs = torch.empty(shape, device=self.device, dtype=dtype) if storage == "materialized" else None
        self.y_clean = torch.empty(self.n_local, device=self.device, dtype=compute_dtype)
        self.y = torch.empty_like(self.y_clean)
        for b in self.blocks:
            a = self._make_block(b)
            sl = slice((b - self.blocks.start) * BLOCK, (b - self.blocks.start) * BLOCK + a.shape[0])
            self.y_clean[sl] = quadratic_form(a, s, design)
            noise = torch.randn(a.shape[0], generator=generator(seeds.noise, b, self.device), device=self.device,
                                dtype=GENERATION_DTYPE).to(compute_dtype)
            self.y[sl] = self.y_clean[sl] + math.sqrt(p.Delta) * noise
            if self.inputs is not None:
                self.inputs[sl] = a

    @property
    def n_local(self) -> int:
        """Samples held by this rank."""
        return len(self.rows)

    def _make_block(self, b: int) -> torch.Tensor:
        rows = min(BLOCK, self.p.n - b * BLOCK)
        g = generator(self.seeds.inputs, b, self.device)
        d = self.p.d
        if self.design == "gaussian":
            return torch.randn(rows, d, generator=g, device=self.device, dtype=GENERATION_DTYPE).to(self.dtype)
        a = torch.randn(rows, d, d, generator=g, device=self.device, dtype=GENERATION_DTYPE).to(self.compute_dtype)
        return ((a + a.transpose(1, 2)) / math.sqrt(2 * d)).to(self.dtype)

    def chunks(self, chunk_rows: int) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield ``(local_slice, data)`` over this rank's samples, ``chunk_rows`` rows at a time.

        With ``regenerate`` storage the chunk size is rounded up to a whole number of blocks.
        """
        if self.inputs is not None:
            for lo in range(0, self.n_local, chunk_rows):
                sl = slice(lo, min(lo + chunk_rows, self.n_local))
                yield sl, self.inputs[sl]
            return
        per = max(1, chunk_rows // BLOCK)
        blocks = list(self.blocks)
        for i in range(0, len(blocks), per):
            group = blocks[i:i + per]
            a = torch.cat([self._make_block(b) for b in group])
            lo = (group[0] - self.blocks.start) * BLOCK
            yield slice(lo, lo + a.shape[0]), a
