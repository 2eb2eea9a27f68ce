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
    """``<S, Z_mu>`` for a chunk: (rows,) from inputs (rows, d) or GOE matrices (rows, d, d) and S (d, d);
    with leading replica axes on both (S (R, d, d), inputs (R, rows, ...)), (R, rows).

    Gaussian design: ``(x^T S x - Tr S) / sqrt(d)``, computed as a row-wise dot with ``x S``.
    The result is in ``s.dtype`` (matmul inputs cast to ``a.dtype``).
    """
    d = s.shape[-1]
    if design == "goe":  # one matrix-vector product per replica: a batched one is slower (docs/benchmarks.md)
        flat = s.to(a.dtype).flatten(-2)
        if a.dim() == 3:
            return (a.flatten(-2) @ flat).to(s.dtype)
        return torch.stack([x.flatten(-2) @ v for x, v in zip(a, flat)]).to(s.dtype)
    xs = (a @ s.to(a.dtype)).to(s.dtype)
    trace = torch.diagonal(s, dim1=-2, dim2=-1).sum(-1)
    return ((xs * a.to(s.dtype)).sum(-1) - trace[..., None]) / math.sqrt(d)


def check_data_options(design: str, storage: str) -> None:
    """Raise ``ValueError`` naming ``data.design`` / ``data.storage`` when they are unknown or incompatible."""
    if design not in DESIGNS:
        raise ValueError(f"data.design must be one of {DESIGNS}, got {design!r}")
    if storage not in STORAGES:
        raise ValueError(f"data.storage must be one of {STORAGES}, got {storage!r}")
    if design == "goe" and storage == "regenerate":
        raise ValueError("data.storage=regenerate is implemented for data.design=gaussian only")


def local_blocks(n: int, rank: int, world_size: int) -> range:
    """The generation blocks of ``n`` samples that ``rank`` of ``world_size`` holds."""
    return shard_blocks(-(-n // BLOCK), rank, world_size)


def local_rows(n: int, blocks: range) -> range:
    """The global sample indices of ``blocks``."""
    return range(blocks.start * BLOCK, min(n, blocks.stop * BLOCK))


def allocate(p: Problem, design: str, storage: str, n_local: int, *, dtype, compute_dtype, device,
             lead: tuple = ()) -> tuple:
    """Empty ``(inputs, y_clean, y)`` for ``n_local`` samples, with leading axes ``lead`` (the replicas'):
    inputs ``lead + (n_local, d)`` or ``lead + (n_local, d, d)`` (None with ``regenerate`` storage), labels
    ``lead + (n_local,)``."""
    shape = (n_local, p.d, p.d) if design == "goe" else (n_local, p.d)
    inputs = torch.empty(lead + shape, device=device, dtype=dtype) if storage == "materialized" else None
    y_clean = torch.empty(lead + (n_local,), device=device, dtype=compute_dtype)
    return inputs, y_clean, torch.empty_like(y_clean)


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
        out: None (allocate) or ``(inputs, y_clean, y)`` tensors of this rank's shapes to fill (views into the
            stacked tensors of a :class:`ReplicaDataset`); ``inputs`` is None with ``regenerate`` storage.

    Attributes:
        y: noisy labels of this rank's samples, shape (n_local,).
        y_clean: teacher outputs ``<S*, Z_mu>``, shape (n_local,).
        n: total number of samples over all ranks (normalisations use it).
    """

    def __init__(self, p: Problem, s_star: torch.Tensor, seeds: Seeds, *, design: str = "gaussian",
                 storage: str = "materialized", dtype: torch.dtype = torch.float32,
                 compute_dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1, out: tuple | None = None):
        check_data_options(design, storage)
        self.p, self.design, self.storage = p, design, storage
        self.dtype, self.compute_dtype, self.device = dtype, compute_dtype, torch.device(device)
        self.seeds, self.n = seeds, p.n
        self.blocks = local_blocks(p.n, rank, world_size)
        self.rows = local_rows(p.n, self.blocks)
        s = s_star.to(device=self.device, dtype=compute_dtype)
        # preallocated and filled block by block: peak memory is the dataset plus one block
        self.inputs, self.y_clean, self.y = out if out is not None else allocate(
            p, design, storage, self.n_local, dtype=dtype, compute_dtype=compute_dtype, device=self.device)
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

    def take(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(y, y_clean, inputs)`` of the local samples ``rows`` (a minibatch; materialized storage)."""
        return self.y[rows], self.y_clean[rows], self.inputs[rows]

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


class ReplicaDataset:
    """The training sets of R replicas (their own teachers and seeds) on a leading axis.

    Replica r is the :class:`Dataset` of ``s_stars[r]`` and ``seeds[r]``, sample for sample, filled into the
    slice r of stacked tensors: ``inputs`` (R, n_local, d) or (R, n_local, d, d), ``y`` and ``y_clean``
    (R, n_local). Keyword arguments are :class:`Dataset`'s. ``chunks`` yields ``(slice, data)`` with data
    (R, rows, ...), ``take`` a minibatch with one row-index vector per replica (R, batch).
    """

    def __init__(self, p: Problem, s_stars, seeds, *, design: str, storage: str, dtype: torch.dtype,
                 compute_dtype: torch.dtype, device, rank: int = 0, world_size: int = 1):
        if len(s_stars) != len(seeds):
            raise ValueError(f"ReplicaDataset: {len(s_stars)} teachers for {len(seeds)} seed sets")
        check_data_options(design, storage)
        n_local = len(local_rows(p.n, local_blocks(p.n, rank, world_size)))
        self.inputs, self.y_clean, self.y = allocate(p, design, storage, n_local, dtype=dtype,
                                                     compute_dtype=compute_dtype, device=device, lead=(len(seeds),))
        options = dict(design=design, storage=storage, dtype=dtype, compute_dtype=compute_dtype, device=device,
                       rank=rank, world_size=world_size)
        self.members = [Dataset(p, s, sd, out=(None if self.inputs is None else self.inputs[r], self.y_clean[r],
                                               self.y[r]), **options)
                        for r, (s, sd) in enumerate(zip(s_stars, seeds))]
        one = self.members[0]
        self.p, self.design, self.storage, self.n, self.rows = one.p, one.design, one.storage, one.n, one.rows
        self.dtype, self.compute_dtype, self.device = one.dtype, one.compute_dtype, one.device

    @property
    def n_local(self) -> int:
        return len(self.rows)

    def take(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(y, y_clean, inputs)`` of the rows (R, batch), replica r taking its own rows ``rows[r]``."""
        r = torch.arange(rows.shape[0], device=rows.device)[:, None]
        return self.y[r, rows], self.y_clean[r, rows], self.inputs[r, rows]

    def chunks(self, chunk_rows: int) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield ``(local_slice, data)`` with data (R, rows, ...): views of the stored inputs, or each replica's
        regenerated chunk stacked."""
        if self.inputs is not None:
            for lo in range(0, self.n_local, chunk_rows):
                sl = slice(lo, min(lo + chunk_rows, self.n_local))
                yield sl, self.inputs[:, sl]
            return
        for parts in zip(*(m.chunks(chunk_rows) for m in self.members)):
            yield parts[0][0], torch.stack([a for _, a in parts])
