"""The run configuration schema (plain dataclasses, registered in Hydra's ConfigStore as ``run_schema``).

Field names are the command-line keys of docs/architecture.md, e.g.
``problem.d=512 trainer.h=0.02 optim=adam theory=[dmft,longtime] device=cuda``.
Types are checked by OmegaConf when the YAML is merged into this schema. The
component groups (``trainer``, ``optim``, ``student``, ``teacher``, ``data``,
``theory.*``, ``tracking.wandb``, ``callbacks.*``, ``checkpoint``) carry a
``_target_`` and are built by ``hydra.utils.instantiate``; each component
checks its own ranges when it is built, with messages naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from quadflow.problem import H_MAX
from quadflow.observables import RANK_TOL


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
class RecordConfig:
    points: int = 100           # log-spaced observation times
    every: Optional[int] = None  # record every k steps instead (plus the last step)
    spectrum_points: int = 4    # log-spaced times at which the spectrum of S is saved (last step included)
    rank_tol: float = RANK_TOL  # eigenvalues of S above it count towards rank_fraction


@dataclass
class TrainerConfig:
    _target_: str = "quadflow.train.Trainer"
    h: float = 0.05                  # step in the paper's time (t = step * h)
    steps: int = 600
    batch_size: Optional[int] = None  # None: full batch


@dataclass
class RunConfig:
    problem: ProblemConfig = field(default_factory=ProblemConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: Any = None            # any torch.optim.Optimizer (partial), lr: ${trainer.h} for the flows
    student: Any = None          # any nn.Module (partial), built with d= and m=
    teacher: Any = None
    data: Any = None             # quadflow.data.DataSpec
    theory: Dict[str, Any] = field(default_factory=dict)
    tracking: Any = None         # wandb: quadflow.logging.WandbSink.start (partial); plots: bool
    callbacks: Dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None       # quadflow.train.Checkpointer: every
    device: str = "auto"        # auto | cpu | cuda
    precision: str = "fp32"     # fp64 | fp32 | tf32 | bf16
    seed: int = 0
    replicas: int = 1           # seeds seed ... seed + replicas - 1 trained at once on a tensor axis
    cpu_threads: Optional[int] = None  # torch CPU threads (None: about one per 128 of d)
    resume: Any = "auto"        # auto | true | false (see quadflow.cli.job.Job.restore)
    progress: bool = True       # progress bars (shown on terminals only)
    experiment: Optional[Any] = None
    figure: Optional[str] = None  # figure maker run at the end (quadflow.viz.figures), set by experiment presets
    objective: str = "sim/mse"   # value main returns to a sweeper: a summary key or steps_to:<metric>:<target>


STEPS_TO = "steps_to:"  # objective prefix: steps_to:<metrics.jsonl column>:<target>


def _require(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is out of range: allowed {allowed}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_config(cfg) -> None:
    """Range checks of the plain (non-component) keys, naming key, value and allowed range.

    Model parameters are checked by :class:`quadflow.Problem`, components by their constructors; the step
    ``trainer.h`` here too, for its upper bound (:data:`quadflow.problem.H_MAX`).
    """
    h = cfg.trainer.h
    _require(isinstance(h, (int, float)) and 0 < h <= H_MAX, "trainer.h", h,
             f"(0, {H_MAX:g}] (GD is stable only below about h = 1/(2 lambda_max(S)), under 1 here)")
    _require(cfg.record.points >= 2, "record.points", cfg.record.points, ">= 2")
    if cfg.record.every is not None:
        _require(cfg.record.every >= 1, "record.every", cfg.record.every, ">= 1 or null")
    _require(cfg.record.spectrum_points >= 0, "record.spectrum_points", cfg.record.spectrum_points, ">= 0")
    _require(cfg.record.rank_tol > 0, "record.rank_tol", cfg.record.rank_tol, "> 0")
    _require(cfg.get("replicas", 1) >= 1, "replicas", cfg.get("replicas", 1), "an integer >= 1")
    if cfg.cpu_threads is not None:
        _require(cfg.cpu_threads >= 1, "cpu_threads", cfg.cpu_threads, ">= 1 or null")
    mode = cfg.tracking.wandb.mode if cfg.tracking.get("wandb") else "disabled"
    _require(mode in (None, "offline", "online", "disabled"), "tracking.wandb.mode", mode,
             "offline | online | disabled | null (W&B's WANDB_MODE, else offline)")
    _require(str(cfg.resume).lower() in ("auto", "true", "false"), "resume", cfg.resume, "auto | true | false")
    objective = str(cfg.get("objective") or "sim/mse")
    if objective.startswith(STEPS_TO):
        metric, _, target = objective[len(STEPS_TO):].rpartition(":")
        _require(bool(metric) and _is_number(target), "objective", objective,
                 "a summary.json key (sim/mse, theory/longtime/mse, ...) or steps_to:<metric>:<target>")
