"""One Hydra job: problem + simulation + theory + tracking, with checkpoints and failure records.

Called by ``scripts/run.py`` (the Hydra main). Imports OmegaConf/Hydra at the
top (this is an edge module); the library modules it composes do not.

Files in the job's output folder (architecture.md): ``config.yaml``,
``metrics.jsonl``, ``summary.json``, ``plots/*.png``, plus ``spectra.npz``,
``checkpoint.pt`` (resume state) and ``wandb/`` (offline W&B run).
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import signal
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import quadflow
from quadflow.checkpoint import load_checkpoint, save_checkpoint
from quadflow.config import check_config, optim_params
from quadflow.config import RunConfig
from quadflow.data import Seeds
from quadflow.runtime.distributed import init_from_env, world
from quadflow.flow import DivergenceError, log_schedule
from quadflow.problem import Problem
from quadflow.runtime.device import resolve_device
from quadflow.simulation import METRICS, Simulation
from quadflow.theory_runner import THEORIES, TheoryResult, compute_theory
from quadflow.io import atomic_write_text
from quadflow.logging import JsonlSink, Tracker, WandbSink

EXIT_CODES = {"ok": 0, "diverged": 1, "failed": 1, "interrupted": 143}


class ConfigError(ValueError):
    """A configuration value outside its allowed range (message names the field)."""


class _Signals:
    """SIGINT/SIGTERM set a flag that the training loop polls (final checkpoint, clean exit)."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): no handler
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def build_problem(cfg) -> Problem:
    """``Problem`` from ``cfg.problem``, errors prefixed with the config group."""
    try:
        return Problem(**OmegaConf.to_container(cfg.problem))
    except ValueError as err:
        raise ConfigError(f"problem.{err}") from None


def build_simulation(cfg, problem: Problem) -> Simulation:
    data = cfg.data
    seeds = Seeds.from_master(cfg.seed, teacher=data.teacher_seed, inputs=data.inputs_seed,
                              noise=data.noise_seed, init=data.init_seed)
    return Simulation(problem, h=cfg.optim.h, seeds=seeds, device=cfg.device, precision=cfg.precision,
                      design=data.design, storage=data.storage, optim=cfg.optim.name,
                      optim_params=optim_params(cfg), route=data.route,
                      chunk_rows=data.chunk_rows, noisy_test=data.noisy_test, rank_tol=cfg.record.rank_tol)


def cpu_threads(requested: int | None, d: int) -> int:
    """Threads for CPU work: ``requested``, else about one per 128 input dimensions.

    The matrices of a small run (and the DMFT's d_eff x d_eff process) are too
    small for threads to pay: measured 21 s with one thread against 160 s with
    two for the default config on a loaded 2-core machine.
    """
    if requested is not None:
        return requested
    return max(1, min(torch.get_num_threads(), d // 128))


def spectrum_schedule(steps: int, points: int) -> list[int]:
    """``points`` log-spaced steps ending at ``steps`` (none when points = 0)."""
    if points <= 0:
        return []
    return sorted({int(round(x)) for x in np.geomspace(max(1, steps / 100), max(steps, 1), points)} | {steps})


def config_hash(cfg, *keys: str) -> str:
    """Hash of the resolved config subtrees that determine a result (cache keys)."""
    sub = {}
    for k in keys:
        node = OmegaConf.select(cfg, k)
        sub[k] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return hashlib.sha256(json.dumps(sub, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _versions() -> dict:
    return {"quadflow": quadflow.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _final_gaps(last: dict) -> dict:
    """Relative gaps |sim - theory| / |theory| of the last row, per theory and metric."""
    gaps = {}
    for key, value in last.items():
        if key.startswith("theory/") and value:
            metric = key.rsplit("/", 1)[1]
            sim = last.get(f"sim/{metric}")
            if sim is not None and metric in METRICS:
                gaps[f"gap/{key[len('theory/'):]}"] = abs(sim - value) / abs(value)
    return gaps


def run_job(cfg: DictConfig, out_dir: Path, *, wandb_group: str | None = None, job_name: str | None = None) -> dict:
    """Run one configured job in ``out_dir``; returns the summary (also written to summary.json).

    Failures inside the run (divergence, a crash, a signal) are recorded in the
    summary with ``status`` ``diverged|failed|interrupted`` rather than raised,
    so that a multirun goes on; configuration errors raise :class:`ConfigError`
    before any allocation.
    """
    start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        check_config(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    problem = build_problem(cfg)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg.cpu_threads, problem.d))
    init_from_env(device)
    is_main = world()[0] == 0  # under torchrun only rank 0 writes files and logs
    sim = build_simulation(cfg, problem)
    steps = cfg.optim.steps
    if cfg.record.every:
        schedule = sorted(set(range(0, steps + 1, cfg.record.every)) | {steps})
    else:
        schedule = log_schedule(steps, cfg.record.points)
    scheduled = set(schedule)
    spec_steps = spectrum_schedule(steps, cfg.record.spectrum_points)
    ckpt_path = out_dir / "checkpoint.pt"
    sim_key = config_hash(cfg, "problem", "optim", "data", "seed", "precision", "record")

    state = None
    if cfg.resume:
        state = load_checkpoint(ckpt_path, expected_key=sim_key)
        if state is None:
            warnings.warn(f"resume=true but no checkpoint in {out_dir}: starting from step 0", RuntimeWarning)
    if state is not None:
        sim.load_state_dict(state["simulation"])
    spectra: dict[int, np.ndarray] = dict(state["spectra"]) if state else {}
    theory_cache: dict = dict(state["theory"]) if state else {}

    if is_main:
        atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    jsonl = JsonlSink(out_dir / "metrics.jsonl" if is_main else None, truncate_from_step=sim.step if state else None)
    wandb_cfg = cfg.tracking.wandb
    wb = WandbSink.start(mode=wandb_cfg.mode if is_main else "disabled", project=wandb_cfg.project, entity=wandb_cfg.entity,
                         group=wandb_cfg.group or wandb_group, name=job_name or out_dir.name,
                         tags=list(wandb_cfg.tags), config=OmegaConf.to_container(cfg, resolve=True),
                         out_dir=out_dir, run_id=state.get("wandb_id") if state else None)
    tracker = Tracker(jsonl, wb)

    status, error = "ok", None
    theories: dict[str, TheoryResult] = {}
    signals = _Signals()

    def checkpoint() -> None:
        if is_main:
                save_checkpoint(ckpt_path, {"key": sim_key, "simulation": sim.state_dict(), "spectra": spectra,
                                        "theory": theory_cache, "wandb_id": wb.run_id if wb else None})

    def on_record(rec: dict) -> None:
        if "spectrum" in rec:
            spectra[rec["step"]] = rec["spectrum"]
            tracker.log_spectrum("sim/spectrum", rec["t"], rec["spectrum"])
        if rec["step"] not in scheduled:
            return
        row = {"t": rec["t"], "step": rec["step"], **{f"sim/{k}": rec[k] for k in METRICS}}
        for name, result in theories.items():
            row.update(result.row(rec["step"]))
        tracker.log(row)

    every = cfg.checkpoint.every  # read once: OmegaConf attribute access is slow in a per-step hook

    def on_step(flow) -> bool:
        if every and flow.step % every == 0:
            checkpoint()
        return signals.received is not None

    with signals:
        try:
            for name in THEORIES:
                if OmegaConf.select(cfg, f"theory.{name}") is not None:
                    key = config_hash(cfg, "problem", "optim", f"theory.{name}", "seed", "data")
                    if theory_cache.get(name, (None,))[0] != key:
                        theory_cache[name] = (key, _safe_theory(name, cfg, problem, sim, schedule, spec_steps))
                    theories[name] = theory_cache[name][1]
                    if signals.received is not None:
                        break
            if signals.received is None:
                sim.run(steps, schedule, spec_steps, on_record=on_record, on_step=on_step, progress=cfg.progress)
            if signals.received is not None:
                status = "interrupted"
                error = f"received signal {signals.received} at step {sim.step}; resume with resume=true"
        except DivergenceError as err:
            status, error = "diverged", str(err)
        except Exception as err:  # recorded in the summary so that a sweep goes on
            status, error = "failed", f"{type(err).__name__}: {err}"
            traceback.print_exc()
        finally:
            try:
                checkpoint()
            except Exception as err:
                warnings.warn(f"could not write the final checkpoint: {err}", RuntimeWarning)
    plots = _write_plots(cfg, out_dir, tracker.rows, spectra, theories) if cfg.tracking.plots and is_main else []
    tracker.log_images(plots)
    if spectra and is_main:
        np.savez(out_dir / "spectra.npz", **{f"step_{k}": v for k, v in sorted(spectra.items())})
    last = tracker.rows[-1] if tracker.rows else {}
    summary = {
        "status": status, "error": error, "steps_done": sim.step, "steps": steps, "objective_increases": sim.flow.ascents, "t": sim.step * cfg.optim.h,
        **{k: v for k, v in last.items() if k not in ("t", "step")}, **_final_gaps(last),
        **{f"theory/{n}/{k}": v for n, r in theories.items() for k, v in r.summary.items()},
        "problem": problem.to_dict(), "device": str(sim.device), "world_size": world()[1], "precision": cfg.precision, "route": sim.route,
        "memory_bytes": sim.memory, "wall_time_s": time.time() - start, "versions": _versions(),
        "metrics_file_error": jsonl.failed, "wandb": {"id": wb.run_id, "dir": str(out_dir / "wandb")} if wb else None,
    }
    if is_main:
        atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, default=_json_default))
    tracker.finish({k: v for k, v in summary.items() if not isinstance(v, dict)}, EXIT_CODES[status])
    return summary


def _safe_theory(name, cfg, problem, sim, schedule, spec_steps) -> TheoryResult:
    """A theory's result; its failure is recorded (summary ``theory/<name>/error``), not fatal to the run."""
    try:
        return compute_theory(name, cfg, problem, sim, schedule, spec_steps)
    except Exception as err:
        warnings.warn(f"theory {name} failed ({type(err).__name__}: {err}); the simulation goes on", RuntimeWarning)
        return TheoryResult(name, summary={"error": f"{type(err).__name__}: {err}"})


def register_configs() -> None:
    """Register the structured schema (``run_schema``) that conf/config.yaml extends."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="run_schema", node=RunConfig)


def wandb_group(experiment: str | None, sweep_folder: str | None) -> str | None:
    """W&B group of a job: ``<experiment>-<sweep folder>`` under -m, the experiment or the sweep folder alone."""
    experiment = None if experiment in (None, "null") else experiment
    parts = [x for x in (experiment, sweep_folder) if x]
    return "-".join(parts) or None


def run_hydra_job(cfg: DictConfig, hydra_cfg) -> dict:
    """:func:`run_job` in the Hydra output folder; W&B group = experiment name or sweep folder."""
    from hydra.types import RunMode

    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    group = wandb_group(hydra_cfg.runtime.choices.get("experiment"), Path(hydra_cfg.sweep.dir).name if multirun else None)
    name = hydra_cfg.job.override_dirname or out_dir.name
    if hydra_cfg.mode == RunMode.MULTIRUN:
        name = f"{hydra_cfg.job.num}:{name}"
    return run_job(cfg, out_dir, wandb_group=group, job_name=name)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    return str(value)


def _write_plots(cfg, out_dir: Path, rows, spectra, theories) -> list[Path]:
    from quadflow.plots import plot_curves, plot_spectrum

    plot_dir = out_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    p = cfg.problem
    title = (f"d={p.d} kappa={p.kappa} kappa*={p.kappa_star} alpha={p.alpha} Delta={p.Delta} lam={p.lam} "
             f"h={cfg.optim.h} {cfg.optim.name} {cfg.precision}")
    paths = []
    try:
        if rows:
            paths.append(plot_curves(rows, plot_dir / "curves.png", title))
        if spectra:
            step = max(spectra)
            lt = theories.get("longtime")
            density = lt.density if lt is not None else None
            paths.append(plot_spectrum(spectra[step], plot_dir / "spectrum.png", step * cfg.optim.h, density,
                                       lt.summary.get("atom") if lt is not None else None, title))
    except Exception as err:  # a plot must not lose the run's results
        warnings.warn(f"plotting failed: {err}", RuntimeWarning)
    return paths


def one_line_report(summary: dict, out_dir) -> str:
    """``status | final sim mse vs each theory | where the files are`` for the console."""
    parts = [f"[{summary['status']}] t={summary['t']:g}"]
    if summary.get("sim/mse") is not None:
        parts.append(f"sim mse={summary['sim/mse']:.4g}")
    for key, value in summary.items():
        if key.startswith("theory/") and key.endswith("/mse") and isinstance(value, float):
            parts.append(f"{key.split('/')[1]} mse={value:.4g}")
    return " | ".join(parts) + f" | results in {out_dir} (plots/curves.png, metrics.jsonl, summary.json)"
