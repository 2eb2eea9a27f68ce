"""The run configuration schema (plain dataclasses; Hydra's ConfigStore registers them in ``app``).

Field names are the command-line keys of architecture.md, e.g.
``problem.d=512 optim.h=0.02 theory=[dmft,longtime] device=cuda``.
Types are checked by OmegaConf when the YAML is merged into this schema;
ranges are checked by :func:`check_config` with messages naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional


@dataclass
class ProblemConfig:
    d: int = 32
    kappa: float = 1.5
    kappa_star: float = 0.5
    alpha: float = 2.0
    Delta: float = 0.0
    lam: float = 0.05
    sigma0: float = 1.0


@dataclass
class OptimConfig:
    name: str = "gd"        # gd | rk4 | momentum | adam (the last two: non-gradient-flow baselines)
    h: float = 0.05         # step, in the paper's time (t = step * h); the learning rate for adam
    steps: int = 600
    beta: float = 0.9       # momentum
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adam
    eps: float = 1e-8       # adam


@dataclass
class DataConfig:
    design: str = "gaussian"         # gaussian | goe
    storage: str = "materialized"    # materialized | regenerate
    chunk_rows: Optional[int] = None  # rows per chunk (None: automatic)
    route: str = "auto"              # auto | S | W
    noisy_test: bool = False         # add Delta to test_error
    teacher_seed: Optional[int] = None  # pin one random stream (None: derived from seed)
    inputs_seed: Optional[int] = None
    noise_seed: Optional[int] = None
    init_seed: Optional[int] = None


@dataclass
class RecordConfig:
    points: int = 100           # log-spaced observation times
    every: Optional[int] = None  # record every k steps instead (plus the last step)
    spectrum_points: int = 4    # log-spaced times at which the spectrum of S is saved (last step included)
    rank_tol: float = 1e-2      # eigenvalues of S above it count towards rank_fraction


@dataclass
class PopulationTheoryConfig:
    d_eff: Optional[int] = None  # instance size (None: the run's d, with its own S* and W0)


@dataclass
class LongtimeTheoryConfig:
    density_points: int = 400    # grid of the limiting spectral density in plots


@dataclass
class DMFTTheoryConfig:
    d_eff: int = 64
    samples: int = 4
    tol: float = 1e-4
    max_iter: int = 60
    seed: int = 0


@dataclass
class TheoryConfig:
    population: Optional[PopulationTheoryConfig] = None
    longtime: Optional[LongtimeTheoryConfig] = None
    dmft: Optional[DMFTTheoryConfig] = None


@dataclass
class WandbConfig:
    mode: str = "offline"       # offline | online | disabled
    project: str = "quadflow"
    entity: Optional[str] = None
    group: Optional[str] = None  # default: the experiment name, or the sweep folder under -m
    tags: List[str] = field(default_factory=list)


@dataclass
class TrackingConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    plots: bool = True


@dataclass
class CheckpointConfig:
    every: int = 200            # steps between checkpoints (0: only at exit)


@dataclass
class RunConfig:
    problem: ProblemConfig = field(default_factory=ProblemConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    theory: TheoryConfig = field(default_factory=TheoryConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    device: str = "auto"        # auto | cpu | cuda
    precision: str = "fp32"     # fp64 | fp32 | tf32 | bf16
    seed: int = 0
    cpu_threads: Optional[int] = None  # torch CPU threads (None: about one per 128 of d, small matrices gain nothing)
    resume: bool = False
    progress: bool = True       # progress bars (shown on terminals only)
    experiment: Optional[Any] = None
    figure: Optional[str] = None  # figure maker run at the end (quadflow.figures), set by experiment presets


def optim_params(cfg) -> dict:
    """Settings of the stateful baselines (``beta``; ``betas``, ``eps``) from ``cfg.optim``."""
    return {"beta": cfg.optim.beta, "betas": tuple(cfg.optim.betas), "eps": cfg.optim.eps}


def _require(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is out of range: allowed {allowed}")


def check_config(cfg) -> None:
    """Range checks that the types alone do not give, naming field, value and allowed range.

    ``cfg`` is a :class:`RunConfig` or an OmegaConf node with the same fields.
    Model parameters are checked again by :class:`quadflow.Problem`.
    """
    _require(cfg.optim.steps >= 0, "optim.steps", cfg.optim.steps, ">= 0")
    _require(cfg.optim.h > 0, "optim.h", cfg.optim.h, "> 0")
    _require(cfg.record.points >= 2, "record.points", cfg.record.points, ">= 2")
    if cfg.record.every is not None:
        _require(cfg.record.every >= 1, "record.every", cfg.record.every, ">= 1 or null")
    _require(cfg.record.spectrum_points >= 0, "record.spectrum_points", cfg.record.spectrum_points, ">= 0")
    _require(cfg.record.rank_tol > 0, "record.rank_tol", cfg.record.rank_tol, "> 0")
    _require(cfg.checkpoint.every >= 0, "checkpoint.every", cfg.checkpoint.every, ">= 0 (0: only at exit)")
    _require(cfg.tracking.wandb.mode in ("offline", "online", "disabled"), "tracking.wandb.mode",
             cfg.tracking.wandb.mode, "offline | online | disabled")
    if cfg.cpu_threads is not None:
        _require(cfg.cpu_threads >= 1, "cpu_threads", cfg.cpu_threads, ">= 1 or null")
    if cfg.data.chunk_rows is not None:
        _require(cfg.data.chunk_rows >= 1, "data.chunk_rows", cfg.data.chunk_rows, ">= 1 or null")
    dmft = cfg.theory.dmft
    if dmft is not None:
        _require(dmft.d_eff >= 8, "theory.dmft.d_eff", dmft.d_eff, ">= 8")
        _require(dmft.samples >= 1, "theory.dmft.samples", dmft.samples, ">= 1")
        _require(dmft.tol > 0, "theory.dmft.tol", dmft.tol, "> 0")
        _require(dmft.max_iter >= 1, "theory.dmft.max_iter", dmft.max_iter, ">= 1")
    pop = cfg.theory.population
    if pop is not None and pop.d_eff is not None:
        _require(pop.d_eff >= 2, "theory.population.d_eff", pop.d_eff, ">= 2 or null")
