"""One Hydra job: build the components, fit the student, compute the theory, finish the files.

Files in the job's output folder (docs/architecture.md): ``config.yaml``,
``metrics.jsonl``, ``summary.json``, ``plots/*.png``, plus ``spectra.npz``,
``checkpoint.pt`` (resume state) and ``wandb/`` (offline W&B run).
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import quadflow
from quadflow.cli.build import ConfigError, build, build_callbacks, build_problem, build_simulation, build_theories
from quadflow.cli.schema import check_config
from quadflow.io import atomic_write_text, dumps
from quadflow.logging import JsonlSink, Tracker
from quadflow.runtime import cpu_threads, init_from_env, resolve_device, world
from quadflow.runtime.distributed import shared_path
from quadflow.theory.predictions import Prediction, RunInfo
from quadflow.train import METRICS, DivergenceError, SignalStop, load_checkpoint, record_schedule, spectrum_schedule

EXIT_CODES = {"ok": 0, "diverged": 1, "failed": 1, "interrupted": 143}
SIM_KEYS = ("problem", "trainer", "optim", "student", "teacher", "data", "seed", "precision", "record")
log = logging.getLogger("quadflow")


def config_values(cfg, *keys: str) -> dict:
    """The resolved subtrees ``keys`` of ``cfg`` as plain containers."""
    out = {}
    for k in keys:
        node = OmegaConf.select(cfg, k)
        out[k] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return out


def config_hash(cfg, *keys: str) -> str:
    """Hash of the resolved config subtrees that determine a result (cache keys)."""
    return hashlib.sha256(json.dumps(config_values(cfg, *keys), sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts, as ``key (old -> new)``."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} ({a!r} -> {b!r})")
    return out


def final_gaps(last: dict) -> dict:
    """Relative gaps |sim - theory| / |theory| of the last row, per theory and metric."""
    gaps = {}
    for key, value in last.items():
        if key.startswith("theory/") and value:
            metric = key.rsplit("/", 1)[1]
            sim = last.get(f"sim/{metric}")
            if sim is not None and metric in METRICS:
                gaps[f"gap/{key[len('theory/'):]}"] = abs(sim - value) / abs(value)
    return gaps


class Job:
    """A configured run in ``out_dir``: :meth:`run` fits, computes the theories and writes every file.

    Configuration errors raise :class:`ConfigError` in the constructor, before any allocation;
    failures during the run (divergence, a crash, a signal) are recorded in the summary.
    """

    def __init__(self, cfg: DictConfig, out_dir: Path, *, wandb_group: str | None = None, job_name: str | None = None):
        self.start, self.cfg, self.out = time.time(), cfg, Path(out_dir)
        self.wandb_group, self.job_name = wandb_group, job_name or self.out.name
        try:
            check_config(cfg)
            device = resolve_device(cfg.device)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.problem = build_problem(cfg)
        if device.type == "cpu":
            torch.set_num_threads(cpu_threads(cfg.cpu_threads, self.problem.d))
        init_from_env(device)
        self.is_main = world()[0] == 0  # under torchrun only rank 0 writes files and logs
        self.out = self._shared_folder(self.out)
        callbacks = build_callbacks(cfg)
        self.signals = next((cb for cb in callbacks if isinstance(cb, SignalStop)), None)
        self.checkpointer = build(cfg.checkpoint, "checkpoint", path=self.out / "checkpoint.pt", state=self.state)
        self.sim = build_simulation(cfg, self.problem, [*callbacks, self.checkpointer])
        self.theories = build_theories(cfg)
        steps = cfg.trainer.steps
        self.schedule = record_schedule(steps, cfg.record.points, cfg.record.every)
        self.scheduled = set(self.schedule)
        self.spectrum_steps = spectrum_schedule(steps, cfg.record.spectrum_points)
        self.sim_key = config_hash(cfg, *SIM_KEYS)
        self.spectra: dict[int, np.ndarray] = {}
        self.theory_cache: dict = {}
        self.predictions: dict[str, Prediction] = {}
        self.tracker: Tracker | None = None

    def _shared_folder(self, own: Path) -> Path:
        """Rank 0's folder for every rank; the folder Hydra made for another rank is removed when it holds
        nothing but Hydra's own files (``.hydra/``, the log)."""
        shared = Path(shared_path(str(own)))
        if shared != own and own.exists() and all(p.name in (".hydra", "run.log", "run.py.log") for p in own.iterdir()):
            shutil.rmtree(own, ignore_errors=True)
        return shared

    # -- state ------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resume needs (written by the checkpointer on rank 0)."""
        wb = self.tracker.wandb if self.tracker else None
        return {"key": self.sim_key, "config": config_values(self.cfg, *SIM_KEYS),
                "simulation": self.sim.state_dict(), "spectra": self.spectra, "theory": self.theory_cache,
                "wandb_id": wb.run_id if wb else None, "interrupted": self.interrupted()}

    def save(self) -> None:
        if self.is_main:
            self.checkpointer.save()

    def restore(self) -> dict | None:
        """Load the checkpoint in the run's folder (None when starting afresh).

        ``resume=true`` continues whatever checkpoint is there; ``auto`` (the default) continues one
        whose run was stopped by a signal (a pre-emption, a SLURM time limit, Ctrl-C), so a requeued
        job goes on where it stopped; ``false`` starts over. A checkpoint written with other values of
        the keys that determine the trajectory is refused, naming them.
        """
        mode = str(self.cfg.resume).lower()
        path = self.out / "checkpoint.pt"
        state = load_checkpoint(path) if mode in ("true", "auto") else None
        if state is None:
            if mode == "true":
                warnings.warn(f"resume=true but no checkpoint in {self.out}: starting from step 0", RuntimeWarning)
            return None
        if mode == "auto" and not state.get("interrupted"):
            return None
        if state.get("key") != self.sim_key:
            diff = changed_keys(state.get("config", {}), config_values(self.cfg, *SIM_KEYS))
            raise ConfigError(f"{path} was written by a run with a different configuration ("
                              + (", ".join(diff) or "older format") + "); resume with the same overrides, "
                              "or use a new hydra.run.dir")
        log.info(f"resuming from {path} at step {state['simulation']['trainer']['step']}")
        self.sim.load_state_dict(state["simulation"])
        self.spectra, self.theory_cache = dict(state["spectra"]), dict(state["theory"])
        return state

    # -- tracking ---------------------------------------------------------------------------------------
    def open_tracker(self, state: dict | None) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            atomic_write_text(self.out / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=True))
        jsonl = JsonlSink(self.out / "metrics.jsonl" if self.is_main else None,
                          truncate_from_step=self.sim.step if state else None)
        wb_cfg = self.cfg.tracking.get("wandb")
        wb = None
        if wb_cfg is not None and self.is_main and wb_cfg.mode != "disabled":
            start = build(wb_cfg, "tracking.wandb")
            wb = start(group=wb_cfg.group or self.wandb_group, name=self.job_name,
                       config=OmegaConf.to_container(self.cfg, resolve=True), out_dir=self.out,
                       run_id=state.get("wandb_id") if state else None)
        self.tracker = Tracker(jsonl, wb)

    def on_record(self, rec: dict) -> None:
        if "spectrum" in rec:
            self.spectra[rec["step"]] = rec["spectrum"]
            self.tracker.log_spectrum("sim/spectrum", rec["t"], rec["spectrum"])
        if rec["step"] not in self.scheduled:
            return
        row = {"t": rec["t"], "step": rec["step"], **{f"sim/{k}": rec[k] for k in (*METRICS, "test_error_se")
                                                       if k in rec}}
        for prediction in self.predictions.values():
            row.update(prediction.row(rec["step"]))
        self.tracker.log(row)

    # -- the run ----------------------------------------------------------------------------------------
    def run_info(self) -> RunInfo:
        sim, cfg = self.sim, self.cfg
        return RunInfo(problem=self.problem, h=sim.h, steps=cfg.trainer.steps, schedule=self.schedule,
                       spectrum_steps=self.spectrum_steps, seeds=sim.seeds, s_star=sim.s_star,
                       make_optimizer=sim.make_optimizer, optimizer_name=type(sim.optimizer).__name__,
                       noisy_test=sim.spec.noisy_test, device=cfg.device, progress=cfg.progress)

    def compute_theories(self) -> None:
        """Each requested theory (cached in the checkpoint by config hash); a failure is recorded, not raised."""
        info = self.run_info()
        for name, theory in self.theories.items():
            key = config_hash(self.cfg, "problem", "trainer", "optim", f"theory.{name}", "seed", "data")
            if self.theory_cache.get(name, (None,))[0] != key:
                try:
                    prediction = theory.compute(info)
                except Exception as err:
                    warnings.warn(f"theory {name} failed ({type(err).__name__}: {err}); the simulation goes on",
                                  RuntimeWarning)
                    prediction = Prediction(name, summary={"error": f"{type(err).__name__}: {err}"})
                self.theory_cache[name] = (key, prediction)
            self.predictions[name] = self.theory_cache[name][1]
            if self.interrupted():
                return

    def interrupted(self) -> bool:
        return self.signals is not None and self.signals.received is not None

    def fit(self) -> tuple[str, str | None]:
        """Theories then training; returns ``(status, error)``."""
        try:
            if self.signals is not None:
                self.signals.on_fit_start(self.sim.trainer)  # a signal during the theory stops the run too
            self.compute_theories()
            if not self.interrupted():
                self.sim.run(self.cfg.trainer.steps, self.schedule, self.spectrum_steps, on_record=self.on_record)
            if self.interrupted():
                return "interrupted", (f"received signal {self.signals.received} at step {self.sim.step}; "
                                       "resume with resume=true")
            failed = [f"theory {n} failed: {p.summary['error']}" for n, p in self.predictions.items()
                      if "error" in p.summary]
            return ("failed", "; ".join(failed)) if failed else ("ok", None)
        except DivergenceError as err:
            return "diverged", str(err)
        except Exception as err:  # recorded in the summary so that a sweep goes on
            log.error(f"run failed: {type(err).__name__}: {err}", exc_info=True)
            return "failed", f"{type(err).__name__}: {err}"
        finally:
            if self.signals is not None:
                self.signals.on_fit_end(self.sim.trainer)
            try:
                self.save()
            except Exception as err:
                warnings.warn(f"could not write the final checkpoint: {err}", RuntimeWarning)

    def run(self) -> dict:
        """Restore, fit, finish; a pre-emption signal is then handed on (submitit requeues the job)."""
        state = self.restore()
        self.open_tracker(state)
        log.info(f"{self.problem} | {type(self.sim.student).__name__} | {type(self.sim.optimizer).__name__} "
                 f"h={self.sim.h:g} steps={self.cfg.trainer.steps} | {self.sim.device} {self.cfg.precision} "
                 f"route={self.sim.route} | theories: {', '.join(self.theories) or 'none'} | {self.out}")
        status, error = self.fit()
        summary = self.finish(status, error)
        log.info(one_line_report(summary, self.out))
        if status == "interrupted" and self.signals is not None:
            self.signals.forward()
        return summary

    # -- the end ----------------------------------------------------------------------------------------
    def finish(self, status: str, error: str | None) -> dict:
        """Plots, spectra, summary.json and the end of the W&B run; returns the summary."""
        plots = self.write_plots() if self.cfg.tracking.plots and self.is_main else []
        self.tracker.log_images(plots)
        if self.spectra and self.is_main:
            np.savez(self.out / "spectra.npz", **{f"step_{k}": v for k, v in sorted(self.spectra.items())})
        summary = self.summary(status, error)
        if self.is_main:
            atomic_write_text(self.out / "summary.json", dumps(summary, indent=2))
        self.tracker.log_overlays()
        dens = next((p for p in self.predictions.values() if p.density is not None), None)
        self.tracker.log_spectrum_overlay(self.spectra, self.sim.h, dens.density if dens else None,
                                          label=f"theory: {dens.name}" if dens else "theory")
        self.tracker.log_artifact(None, "run-files", [self.out / f for f in
                                  ("metrics.jsonl", "summary.json", "spectra.npz", "config.yaml")])
        self.tracker.finish({k: v for k, v in summary.items() if not isinstance(v, dict)}, EXIT_CODES[status])
        return summary

    def summary(self, status: str, error: str | None) -> dict:
        sim, last = self.sim, (self.tracker.rows[-1] if self.tracker.rows else {})
        wb = self.tracker.wandb
        return {
            "status": status, "error": error, "steps_done": sim.step, "steps": self.cfg.trainer.steps,
            "objective_increases": sim.guard.ascents, "t": sim.step * sim.h,
            **{k: v for k, v in last.items() if k not in ("t", "step")}, **final_gaps(last),
            **{f"theory/{n}/{k}": v for n, p in self.predictions.items() for k, v in p.summary.items()},
            "problem": self.problem.to_dict(), "student": type(sim.student).__name__,
            "optimizer": type(sim.optimizer).__name__, "device": str(sim.device), "world_size": world()[1],
            "precision": self.cfg.precision, "route": sim.route, "memory_bytes": sim.memory,
            "wall_time_s": time.time() - self.start, "versions": _versions(),
            "metrics_file_error": self.tracker.jsonl.failed,
            "wandb": {"id": wb.run_id, "dir": str(self.out / "wandb")} if wb else None,
        }

    def write_plots(self) -> list[Path]:
        from quadflow.viz.plots import plot_curves, plot_spectrum

        plot_dir = self.out / "plots"
        plot_dir.mkdir(exist_ok=True)
        p, sim = self.cfg.problem, self.sim
        title = (f"d={p.d} kappa={p.kappa} kappa*={p.kappa_star} alpha={p.alpha} Delta={p.Delta} lam={p.lam} "
                 f"h={sim.h} {type(sim.optimizer).__name__} {self.cfg.precision}")
        paths = []
        try:
            if self.tracker.rows:
                paths.append(plot_curves(self.tracker.rows, plot_dir / "curves.png", title))
            if self.spectra:
                step = max(self.spectra)
                lt = self.predictions.get("longtime")
                paths.append(plot_spectrum(self.spectra[step], plot_dir / "spectrum.png", step * sim.h,
                                           lt.density if lt is not None else None,
                                           lt.summary.get("atom") if lt is not None else None, title))
        except Exception as err:  # a plot must not lose the run's results
            warnings.warn(f"plotting failed: {err}", RuntimeWarning)
        return paths


def _versions() -> dict:
    return {"quadflow": quadflow.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def run_job(cfg: DictConfig, out_dir: Path, *, wandb_group: str | None = None, job_name: str | None = None) -> dict:
    """Build, fit, finish one configured job in ``out_dir``; returns the summary (also in summary.json)."""
    return Job(cfg, out_dir, wandb_group=wandb_group, job_name=job_name).run()


def one_line_report(summary: dict, out_dir) -> str:
    """``status | final sim mse vs each theory | where the files are`` for the console."""
    parts = [f"[{summary['status']}] t={summary['t']:g}"]
    if summary.get("sim/mse") is not None:
        parts.append(f"sim mse={summary['sim/mse']:.4g}")
    for key, value in summary.items():
        if key.startswith("theory/") and key.endswith("/mse") and isinstance(value, float):
            parts.append(f"{key.split('/')[1]} mse={value:.4g}")
    return " | ".join(parts) + f" | results in {out_dir} (plots/curves.png, metrics.jsonl, summary.json)"
