"""What data a run trains on: design, storage, chunking, test labels and seed pins (the ``data`` config group)."""
from __future__ import annotations

from dataclasses import dataclass

from quadflow.data.dataset import BLOCK, check_data_options
from quadflow.data.seeds import Seeds
from quadflow.problem import Problem


CHUNK_NUMBERS = {"cpu": 2**20, "cuda": 2**24}  # default numbers per chunk of the gradient pass

@dataclass
class DataSpec:
    """The data options of a run, validated on construction.

    Attributes:
        design: ``gaussian`` (real inputs) or ``goe`` (the design the DMFT describes exactly).
        storage: ``materialized`` (inputs in memory) or ``regenerate`` (recomputed from their seeds each pass).
        chunk_rows: rows per chunk of the gradient pass (None: about 2^20 numbers per chunk on a CPU, 2^24 on
            a GPU; see :meth:`rows_per_chunk`).
        route: ``auto|S|W`` for the analytic gradient of the quadratic network.
        noisy_test: add Delta to ``test_error``.
        test_samples: held-out inputs for students without ``S()``.
        teacher_seed, inputs_seed, noise_seed, init_seed: pin one random stream (None: derived from the seed).
    """

    design: str = "gaussian"
    storage: str = "materialized"
    chunk_rows: int | None = None
    route: str = "auto"
    noisy_test: bool = False
    test_samples: int = 10000
    teacher_seed: int | None = None
    inputs_seed: int | None = None
    noise_seed: int | None = None
    init_seed: int | None = None

    def __post_init__(self) -> None:
        check_data_options(self.design, self.storage)
        if self.chunk_rows is not None and (isinstance(self.chunk_rows, bool) or self.chunk_rows < 1):
            raise ValueError(f"data.chunk_rows={self.chunk_rows!r} is out of range: allowed an integer >= 1 or null")
        if isinstance(self.test_samples, bool) or self.test_samples < 2:
            raise ValueError(f"data.test_samples={self.test_samples!r} is out of range: allowed an integer >= 2")

    def seeds(self, seed: int) -> Seeds:
        """The four streams from the master ``seed``, with this spec's pins."""
        return Seeds.from_master(seed, teacher=self.teacher_seed, inputs=self.inputs_seed, noise=self.noise_seed,
                                 init=self.init_seed)

    def rows_per_chunk(self, p: Problem, device_type: str = "cpu", replicas: int = 1) -> int:
        """``chunk_rows``, or rows holding about ``CHUNK_NUMBERS[device_type]`` numbers over the ``replicas``
        (a multiple of the generation block): on a CPU a chunk and its scratch buffer stay in the last-level
        cache between the two products of the step (docs/benchmarks.md), on a GPU large chunks keep the GEMMs
        large."""
        if self.chunk_rows is not None:
            return int(self.chunk_rows)
        per_row = (p.d * p.d if self.design == "goe" else max(p.d, p.m)) * replicas
        numbers = CHUNK_NUMBERS.get(device_type, CHUNK_NUMBERS["cuda"])
        return max(BLOCK, (numbers // per_row) // BLOCK * BLOCK)
