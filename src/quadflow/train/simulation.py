"""Finite-size training of a student: :class:`Simulation` (assembled components) and the one-call :func:`simulate`."""
from __future__ import annotations

import inspect
import logging
from typing import Callable

import numpy as np
import torch
from torch import nn

from quadflow.data import DataSpec, Dataset, HeldOut, ReplicaDataset
from quadflow.models import (EmpiricalObjective, QuadraticNetwork, check_student, choose_route, teacher_network,
                             uses_analytic_gradient)
from quadflow.models.replicated import Replicated
from quadflow.optim import optimizer_factory
from quadflow.problem import Problem, check_domain
from quadflow.runtime import check_fits, estimate_bytes, resolve_device, resolve_precision, world
from quadflow.train.batches import MinibatchSampler, check_batch_size
from quadflow.train.callbacks import Callback, DivergenceGuard
from quadflow.train.loop import Trainer
from quadflow.observables import RANK_TOL, Evaluator, collect
from quadflow.schedules import log_schedule

log = logging.getLogger("quadflow")


def accepts(factory: Callable, name: str) -> bool:
    """Whether ``factory`` takes a keyword argument ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build_network(factory: Callable | None, p: Problem, m: int, seed: int, *, device, dtype) -> nn.Module:
    """``factory(d=p.d, m=m, ...)`` on ``device`` in ``dtype``, drawn reproducibly from stream ``seed``.

    A factory that takes ``seed`` (and ``sigma0``, ``dtype``) gets them; any other is built
    under ``torch.manual_seed(seed)`` so that every rank holds the same initialisation.
    """
    factory = factory or QuadraticNetwork
    kwargs = {"d": p.d, "m": m}
    for name, value in (("seed", seed), ("sigma0", p.sigma0), ("dtype", dtype)):
        if accepts(factory, name):
            kwargs[name] = value
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"student: {factory!r} built a {type(model).__name__}, not a torch.nn.Module")
    return model.to(device=device, dtype=dtype)


def build_student(factory: Callable | None, p: Problem, seeds: list[int], *, device, dtype) -> nn.Module:
    """The student of each replica's init stream ``seeds[r]`` on one leading axis: the built-in
    :class:`QuadraticNetwork` with ``replicas=R`` (batched GEMMs), any other module as a :class:`Replicated`
    of its R copies (``torch.func`` stacking and ``vmap``)."""
    if getattr(factory, "func", factory) in (None, QuadraticNetwork):
        kwargs = dict(getattr(factory, "keywords", {}))
        model = QuadraticNetwork(**{**kwargs, "d": p.d, "m": p.m, "sigma0": p.sigma0, "seed": seeds,
                                    "replicas": len(seeds), "dtype": dtype})
        return model.to(device=device)
    return Replicated([build_network(factory, p, p.m, s, device=device, dtype=dtype) for s in seeds])


def check_replicas(replicas, optimizer: torch.optim.Optimizer, batch_size: int | None, world_size: int) -> None:
    """Raise ``ValueError`` naming ``replicas`` when it is not an integer >= 1, or when replicas > 1 meet an
    optimiser that couples the parameters' entries (L-BFGS) or minibatches sharded over ranks."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"replicas={replicas!r} is out of range: allowed an integer >= 1")
    if replicas == 1:
        return
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ValueError(f"replicas={replicas} needs an optimiser that updates each entry on its own (SGD, Adam, "
                         "RMSprop, RK4, ...): L-BFGS would couple the replicas; use replicas=1")
    if batch_size is not None and world_size > 1:
        raise ValueError(f"replicas={replicas} with trainer.batch_size needs one rank (each replica draws its own "
                         "minibatch); use replicas=1 or full batches under torchrun")


class StepLimit(Callback):
    """Every ``every`` steps, lower the loss scale of a student trained by autograd so that
    ``h * loss_scale * lambda_max <= STEP_MARGIN`` at its current parameters
    (:meth:`quadflow.models.EmpiricalObjective.limit_step`), with ``iterations`` steps of power iteration
    from the previous estimate's ``vector``; the scale and the vector are kept in the checkpoint."""

    def __init__(self, objective: EmpiricalObjective, vector, every: int = 10, iterations: int = 3):
        self.objective, self.vector, self.every, self.iterations = objective, vector, every, iterations

    def on_step_end(self, trainer) -> bool:
        if trainer.step % self.every == 0:
            top, self.vector = self.objective.limit_step(trainer.model, trainer.h, self.vector, self.iterations)
            log.debug(f"step {trainer.step}: top Hessian eigenvalue {np.max(top):.4g}, loss scale "
                      f"{np.min(self.objective.loss_scale):.4g}")
        return False

    def state_dict(self) -> dict:
        scale = self.objective.loss_scale  # a float, or one per replica (as a tensor: weights-only checkpoints)
        return {"loss_scale": scale if isinstance(scale, float) else torch.from_numpy(scale), "vector": self.vector}

    def load_state_dict(self, state: dict) -> None:
        scale = state["loss_scale"]
        self.objective.loss_scale = scale.numpy() if torch.is_tensor(scale) else scale
        self.vector = state["vector"]


def build_optimizer(factory: Callable, params) -> torch.optim.Optimizer:
    """``factory(params)``; an argument the optimiser refuses raises ``ValueError`` naming the optimiser, and so
    does a ``momentum`` outside [0, 1) (torch accepts momentum >= 1, whose iterates do not settle)."""
    target = getattr(factory, "func", factory)
    name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(target))}"
    try:
        optimizer = factory(params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"optim ({name}): {err}") from None
    for group in optimizer.param_groups:
        momentum = group.get("momentum", 0.0)
        if not 0 <= momentum < 1:
            raise ValueError(f"optim.momentum={momentum!r} is out of range: allowed [0, 1)")
    return optimizer


class Simulation:
    """A teacher, a dataset and a student trained by a ``torch.optim`` optimiser.

    Everything is validated (and the memory need checked) before the dataset is allocated.
    Under ``torchrun`` each rank holds a share of the samples and the same teacher and
    initialisation.

    Args:
        p: the problem.
        h: step size in the paper's time (``t = step * h``).
        seed: master seed; ``seeds`` (a :class:`quadflow.data.Seeds`, a list of R with replicas) overrides it
            stream by stream.
        replicas: R > 1 trains the runs of seeds ``seed, ..., seed + R - 1`` at once, each with its own teacher,
            data and initialisation, on a leading tensor axis (records then hold arrays (R,) per metric);
            replica r equals the run ``seed=seed + r``.
        device: ``auto|cpu|cuda``; precision: ``fp64|fp32|tf32|bf16``.
        data: a :class:`quadflow.data.DataSpec`, or its fields as keyword arguments
            (``design``, ``storage``, ``route``, ``chunk_rows``, ``noisy_test``, ...).
        optim: ``gd|momentum|adam|rk4`` (with ``optim_params``, the optimiser's own arguments), or a
            callable ``params -> torch.optim.Optimizer``.
        student: a callable ``(d=, m=, ...) -> nn.Module`` (None: :class:`QuadraticNetwork`); a student
            trained by autograd gets its loss scaled for the step ``h``
            (:meth:`quadflow.models.EmpiricalObjective.limit_step`);
            teacher: the same for the teacher (None: a frozen float64 quadratic network).
        batch_size: samples per step (None: full batch).
        rank_tol: eigenvalue threshold of ``rank_fraction``; callbacks: extra training callbacks.
        trainer: a configured :class:`quadflow.train.Trainer` (its ``h``, ``batch_size`` and callbacks
            replace the arguments above); a :class:`DivergenceGuard` is added when it has none.
    """

    def __init__(self, p: Problem, *, h: float = 0.05, seed: int = 0, seeds=None, device: str = "cpu",
                 precision: str = "fp32", data: DataSpec | None = None, optim: str | Callable = "gd",
                 optim_params: dict | None = None, student: Callable | None = None, teacher: Callable | None = None,
                 batch_size: int | None = None, rank_tol: float = RANK_TOL, callbacks: list[Callback] = (),
                 progress: bool = False, trainer: Trainer | None = None, check_memory: bool = True,
                 replicas: int = 1, **data_options):
        check_domain(h=trainer.h if trainer is not None else h)
        check_replicas(replicas, None, None, 1)
        self.replicas = replicas if replicas > 1 else None
        if trainer is None:
            trainer = Trainer(h, batch_size=batch_size, callbacks=callbacks, progress=progress)
        h, batch_size = trainer.h, trainer.batch_size
        spec = data if data is not None else DataSpec(**data_options)
        self.make_optimizer = optimizer_factory(optim, h, optim_params)
        self.p, self.h, self.spec = p, h, spec
        self.device, self.precision = resolve_device(device), resolve_precision(precision)
        self.route = choose_route(spec.route, spec.design, p.m, p.d)
        check_batch_size(batch_size, p.n)
        if batch_size is not None and spec.storage != "materialized":
            raise ValueError("trainer.batch_size needs data.storage=materialized (minibatches index stored inputs)")
        reps = list(range(self.replicas or 1))
        self.seeds = seeds if seeds is not None else \
            (spec.seeds(seed) if self.replicas is None else [spec.seeds(seed + r) for r in reps])
        each = [self.seeds] if self.replicas is None else list(self.seeds)
        if len(each) != len(reps):
            raise ValueError(f"replicas={replicas} needs {len(reps)} seed sets, got {len(each)}")
        self.memory = self._check_memory(check_memory)  # before the teacher's and student's d x d matrices
        ct = self.precision.compute
        s_stars = [build_network(teacher or teacher_network, p, p.m_star, sd.teacher, device="cpu",
                                 dtype=torch.float64).S().to(self.device, ct) for sd in each]
        self.s_star = s_stars[0] if self.replicas is None else torch.stack(s_stars)
        self.student = build_network(student, p, p.m, self.seeds.init, device=self.device, dtype=ct) \
            if self.replicas is None else build_student(student, p, [sd.init for sd in each], device=self.device,
                                                        dtype=ct)
        check_student(self.student, p.d, ct, spec.design, self.replicas)
        self.optimizer = build_optimizer(self.make_optimizer, self.student.parameters())
        rank, world_size = world()
        check_replicas(replicas, self.optimizer, batch_size, world_size)
        options = dict(design=spec.design, storage=spec.storage, dtype=self.precision.storage, compute_dtype=ct,
                       device=self.device, rank=rank, world_size=world_size)
        self.data = Dataset(p, self.s_star, self.seeds, **options) if self.replicas is None else \
            ReplicaDataset(p, s_stars, each, **options)
        self.objective = EmpiricalObjective(self.data, lam=p.lam, m=p.m, route=self.route, replicas=self.replicas,
                                            chunk_rows=spec.rows_per_chunk(p, self.device.type, len(reps)))
        if not uses_analytic_gradient(self.student):
            top, vector = self.objective.limit_step(self.student, h)
            trainer.callbacks.insert(0, StepLimit(self.objective, vector))  # before a checkpointer, which saves it
            if np.min(self.objective.loss_scale) < 1:
                log.info(f"student {type(self.student).__name__}: loss scaled by {np.min(self.objective.loss_scale):.3g} "
                         f"(top Hessian eigenvalue {np.max(top):.4g} at initialisation, h={h:g}), and lowered further if it "
                         "sharpens; t = step * h is the time of the flow of the scaled loss (docs/theory.md section 2)")
        heldout = None if callable(getattr(self.student, "S", None)) else \
            HeldOut(self.s_star, self.seeds.inputs if self.replicas is None else [sd.inputs for sd in each],
                    spec.test_samples, device=self.device, dtype=ct)
        self.evaluator = Evaluator(self.s_star, lam=p.lam, Delta=p.Delta, noisy_test=spec.noisy_test,
                                   rank_tol=rank_tol, heldout=heldout)
        batches = None if batch_size is None else MinibatchSampler(
            p.n, batch_size, self.seeds.inputs if self.replicas is None else [sd.inputs for sd in each],
            self.data.rows, self.device)
        guards = [cb for cb in trainer.callbacks if isinstance(cb, DivergenceGuard)]
        if not guards:
            guards = [DivergenceGuard()]
            trainer.callbacks.insert(0, guards[0])
        self.guard, self.trainer = guards[0], trainer.setup(self.student, self.objective, self.optimizer, batches)
        self.guard.precision = self.precision.name

    def _check_memory(self, check: bool) -> dict:
        st, ct = self.precision.storage, self.precision.compute
        need = estimate_bytes(self.p, design=self.spec.design, storage=self.spec.storage,
                              storage_bytes=st.itemsize, compute_bytes=ct.itemsize,
                              chunk_rows=self.spec.rows_per_chunk(self.p, self.device.type, self.replicas or 1),
                              world_size=world()[1], replicas=self.replicas or 1)
        if check:
            check_fits(need, self.device, design=self.spec.design)
        return need

    @property
    def step(self) -> int:
        return self.trainer.step

    def run(self, steps: int, record_steps=None, spectrum_steps=(), on_record=None) -> None:
        """Train up to ``steps`` (see :meth:`quadflow.train.Trainer.fit`); default schedule log-spaced."""
        record_steps = log_schedule(steps) if record_steps is None else record_steps
        with self.precision.matmul_context():
            self.trainer.fit(self.evaluator, record_steps, spectrum_steps, on_record, steps=steps)

    def _seed_values(self):
        return self.seeds.__dict__ if self.replicas is None else [sd.__dict__ for sd in self.seeds]

    def state_dict(self) -> dict:
        """What a checkpoint needs: data and teacher are regenerated from the seeds."""
        return {"trainer": self.trainer.state_dict(), "seeds": self._seed_values()}

    def load_state_dict(self, state: dict) -> None:
        if state["seeds"] != self._seed_values():
            raise ValueError("checkpoint was written with other seeds; resume with the same seed settings")
        self.trainer.load_state_dict(state["trainer"])


def simulate(p: Problem, h: float = 0.05, steps: int = 400, seed: int = 0, device: str = "cpu", *,
             record_steps=None, spectrum_steps=(), progress: bool = False, **options) -> dict:
    """Train a student on a fresh teacher and dataset; return the observables.

    Returns a dict of numpy arrays over the recorded steps: ``t`` (= step * h),
    ``step``, ``mse``, ``test_error``, ``train_loss``, ``in_sample_error``,
    ``rank_fraction``, ``trace`` (Tr S / d) and ``loss_reg`` (``train_loss + lam trace``);
    ``spectrum`` is a list of eigenvalue arrays of S at
    ``spectrum_steps`` (times in ``spectrum_t``). ``record_steps=None`` gives
    about 100 log-spaced steps including 0 and ``steps``. Other keyword
    arguments go to :class:`Simulation` (``precision``, ``design``, ``optim``, ``student``, ...).
    """
    sim = Simulation(p, h=h, seed=seed, device=device, progress=progress, **options)
    records: list[dict] = []
    sim.run(steps, record_steps, spectrum_steps, on_record=records.append)
    return collect(records)
