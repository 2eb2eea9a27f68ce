"""Finite-size training of the student: :class:`Simulation` and the one-call :func:`simulate`."""
from __future__ import annotations

import numpy as np
import torch

from quadflow.data import BLOCK, Dataset, Seeds, check_data_options, initial_weights, teacher_matrix
from quadflow.runtime.distributed import world
from quadflow.flow import Flow, integrator, log_schedule
from quadflow.runtime.memory import check_fits, estimate_bytes
from quadflow.model import EmpiricalField, choose_route
from quadflow.problem import Problem, check_domain
from quadflow.runtime import resolve_device, resolve_precision

METRICS = ("mse", "test_error", "train_loss", "in_sample_error", "rank_fraction")


def default_chunk_rows(p: Problem, design: str) -> int:
    """Rows per chunk so that a chunk holds about 2^24 numbers (a multiple of the generation block)."""
    per_row = p.d * p.d if design == "goe" else max(p.d, p.m)
    return max(BLOCK, (2**24 // per_row) // BLOCK * BLOCK)


class Simulation:
    """A teacher, a dataset and a student trained by small-step gradient flow.

    Everything is validated (and the memory need checked) before any allocation.
    Under ``torchrun`` each rank holds a share of the samples and the same
    teacher and initialisation.

    Args:
        p: the problem.
        h: step size in the paper's time (``t = step * h``).
        seed: master seed; ``seeds`` (a :class:`Seeds`) overrides it stream by stream.
        device: ``auto|cpu|cuda``; precision: ``fp64|fp32|tf32|bf16``.
        design: ``gaussian|goe``; storage: ``materialized|regenerate``.
        optim: ``gd|rk4|momentum|adam`` with ``optim_params`` (beta; betas, eps).
        route: ``auto|S|W``; chunk_rows: rows per chunk (None: automatic).
        noisy_test: add Delta to ``test_error``; rank_tol: eigenvalue threshold of ``rank_fraction``.
    """

    def __init__(self, p: Problem, *, h: float = 0.05, seed: int = 0, seeds: Seeds | None = None,
                 device: str = "cpu", precision: str = "fp32", design: str = "gaussian",
                 storage: str = "materialized", optim: str = "gd", optim_params: dict | None = None,
                 route: str = "auto",
                 chunk_rows: int | None = None, noisy_test: bool = False, rank_tol: float = 1e-3,
                 check_memory: bool = True):
        check_domain(h=h)
        check_data_options(design, storage)
        if chunk_rows is not None and chunk_rows < 1:
            raise ValueError(f"data.chunk_rows must be >= 1, got {chunk_rows}")
        integrator(optim, **(optim_params or {}))
        choose_route(route, design, p.m, p.d)
        self.p, self.h = p, h
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision)
        self.seeds = seeds if seeds is not None else Seeds.from_master(seed)
        rank, world_size = world()
        chunk_rows = chunk_rows or default_chunk_rows(p, design)
        st, ct = self.precision.storage, self.precision.compute
        self.memory = estimate_bytes(p, design=design, storage=storage, storage_bytes=st.itemsize,
                                     compute_bytes=ct.itemsize, chunk_rows=chunk_rows, world_size=world_size)
        if check_memory:
            check_fits(self.memory, self.device, design=design)
        self.s_star = teacher_matrix(p, self.seeds.teacher).to(self.device, ct)
        self.data = Dataset(p, self.s_star, self.seeds, design=design, storage=storage, dtype=st,
                            compute_dtype=ct, device=self.device, rank=rank, world_size=world_size)
        field = EmpiricalField(self.data, route=route, chunk_rows=chunk_rows)
        self.route = field.route
        self.flow = Flow(field, self.s_star, initial_weights(p, self.seeds.init).to(self.device, ct),
                         h=h, lam=p.lam, optim=optim, optim_params=optim_params, Delta=p.Delta,
                         noisy_test=noisy_test, rank_tol=rank_tol)

    @property
    def step(self) -> int:
        return self.flow.step

    def run(self, steps: int, record_steps=None, spectrum_steps=(), on_record=None, on_step=None,
            progress: bool = False) -> None:
        """Train up to ``steps`` (see :meth:`quadflow.flow.Flow.run`); default schedule log-spaced."""
        record_steps = log_schedule(steps) if record_steps is None else record_steps
        with self.precision.matmul_context():
            self.flow.run(steps, record_steps, spectrum_steps, on_record, on_step, progress)

    def state_dict(self) -> dict:
        """What a checkpoint needs: data and teacher are regenerated from the seeds."""
        return {"w": self.flow.w.detach().cpu(), "step": self.flow.step, "initial_loss": self.flow.initial_loss, "ascents": self.flow.ascents,
                "last_objective": self.flow._last_objective,
                "integrator": {k: (v.detach().cpu() if torch.is_tensor(v) else v)
                               for k, v in self.flow.step_fn.state.items()},
                "seeds": self.seeds.__dict__}

    def load_state_dict(self, state: dict) -> None:
        if Seeds(**state["seeds"]) != self.seeds:
            raise ValueError("checkpoint was written with other seeds; resume with the same seed settings")
        self.flow.w = state["w"].to(self.device, self.precision.compute)
        self.flow.step = int(state["step"])
        self.flow.initial_loss = state["initial_loss"]
        self.flow.ascents = state.get("ascents", 0)
        self.flow._last_objective = state.get("last_objective")
        self.flow.step_fn.state = {k: (v.to(self.device, self.precision.compute) if torch.is_tensor(v) else v)
                                   for k, v in state.get("integrator", {}).items()}


def collect(records: list[dict]) -> dict:
    """Stack per-time records into ``{"t": array, "step": array, metric: array, "spectrum": [...]}``."""
    rows = [r for r in records if "mse" in r]
    out = {k: np.array([r[k] for r in rows]) for k in ("t", "step", *METRICS) if rows and k in rows[0]}
    out["spectrum"] = [r["spectrum"] for r in records if "spectrum" in r]
    out["spectrum_t"] = np.array([r["t"] for r in records if "spectrum" in r])
    return out


def simulate(p: Problem, h: float = 0.05, steps: int = 400, seed: int = 0, device: str = "cpu", *,
             record_steps=None, spectrum_steps=(), progress: bool = False, **options) -> dict:
    """Train a student on a fresh teacher and dataset; return the observables.

    Returns a dict of numpy arrays over the recorded steps: ``t`` (= step * h),
    ``step``, ``mse``, ``test_error``, ``train_loss``, ``in_sample_error``,
    ``rank_fraction``; ``spectrum`` is a list of eigenvalue arrays of S at
    ``spectrum_steps`` (times in ``spectrum_t``). ``record_steps=None`` gives
    about 100 log-spaced steps including 0 and ``steps``. Other keyword
    arguments go to :class:`Simulation` (``precision``, ``design``, ``optim``, ...).
    """
    sim = Simulation(p, h=h, seed=seed, device=device, **options)
    records: list[dict] = []
    sim.run(steps, record_steps, spectrum_steps, on_record=records.append, progress=progress)
    return collect(records)
