"""One Hydra job: build the components, fit the student, compute the theory, finish the files.

Files in the job's output folder (docs/architecture.md): ``config.yaml``,
``metrics.jsonl``, ``summary.json``, ``plots/*.png``, plus ``spectra.npz``,
``checkpoint.pt`` (resume state) and ``wandb/`` (offline W&B run).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import quadflow
from quadflow.cli.build import ConfigError, build, build_callbacks, build_problem, build_simulation, build_theories
from quadflow.cli.console import WARNINGS_LOGGER
from quadflow.cli.schema import check_config
from quadflow.cli.sweeps import objective_value
from quadflow.cli.theories import Prediction, RunInfo
from quadflow.io import atomic_write_text, dumps, stable_hash
from quadflow.logging import JsonlSink, Tracker
from quadflow.models import uses_analytic_gradient
from quadflow.observables import metric_row, static_excess
from quadflow.runtime import cpu_threads, init_from_env, resolve_device, world
from quadflow.runtime.distributed import shared_path
from quadflow.train import METRICS, DivergenceError, SignalStop, load_checkpoint, record_schedule, spectrum_schedule
from quadflow.train.callbacks import CheckpointError

EXIT_CODES = {"ok": 0, "diverged": 1, "failed": 1, "unstable": 3, "interrupted": 143}
SIM_KEYS = ("problem", "trainer", "optim", "student", "teacher", "data", "seed", "precision", "record")


def sim_keys(cfg) -> tuple[str, ...]:
    """The config keys that determine a run's trajectory: :data:`SIM_KEYS`, and ``replicas`` when above 1 (so
    that a one-replica run keeps the hash it always had)."""
    return SIM_KEYS + (("replicas",) if cfg.get("replicas", 1) != 1 else ())
log = logging.getLogger("quadflow")


def config_values(cfg, *keys: str) -> dict:
    """The resolved subtrees ``keys`` of ``cfg`` as plain containers."""
    out = {}
    for k in keys:
        node = OmegaConf.select(cfg, k)
        out[k] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return out


def config_hash(cfg, *keys: str) -> str:
    """Hash of the resolved config subtrees that determine a result (cache keys): :func:`quadflow.io.stable_hash`,
    the hash of the validation scripts' points too."""
    return stable_hash(config_values(cfg, *keys))


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


def map_leaves(value, convert):
    """``value`` with ``convert`` applied to everything in it that is not a dict, list or tuple (nested too)."""
    if isinstance(value, dict):
        return {k: map_leaves(v, convert) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_leaves(v, convert) for v in value)
    return convert(value)


def as_plain(value):
    """A numpy array as a tensor, a numpy scalar as a Python number (what a weights-only checkpoint holds)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value.item() if isinstance(value, np.generic) else value


def as_numpy(value):
    """A tensor as a numpy array (the inverse of :func:`as_plain` for arrays)."""
    return value.numpy() if isinstance(value, torch.Tensor) else value


def resume_hint(out: Path, world_size: int) -> str:
    """How to continue the run in ``out``: the shell command with its Hydra overrides (``.hydra/overrides.yaml``;
    any ``resume=`` left out, so that the default ``auto`` applies) and ``hydra.run.dir=<out>``."""
    file = out / ".hydra" / "overrides.yaml"
    if not file.exists():  # not started by the Hydra app
        return f"continue it by running the same overrides with hydra.run.dir={out}"
    overrides = [o for o in OmegaConf.to_container(OmegaConf.load(file))
                 if o.lstrip("+~").split("=", 1)[0] != "resume"]
    launcher = f"torchrun --nproc_per_node={world_size}" if world_size > 1 else "python"
    return "continue it with: " + " ".join([launcher, shlex.quote(sys.argv[0]), *map(shlex.quote, overrides),
                                           shlex.quote(f"hydra.run.dir={out}")])


class Job:
    """A configured run in ``out_dir``: :meth:`run` fits, computes the theories and writes every file.

    Configuration errors raise :class:`ConfigError` in the constructor, before any allocation;
    failures during the run (divergence, a crash, a signal) are recorded in the summary.
    """

    def __init__(self, cfg: DictConfig, out_dir: Path, *, wandb_group: str | None = None, job_name: str | None = None,
                 failed_objective: float = math.nan):
        self.start, self.cfg, self.out = time.time(), cfg, Path(out_dir)
        self.failed_objective = failed_objective  # the objective of a job that did not finish ok
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
        if not self.is_main:  # rank 0 logs and warns for the run (the ranks compute the same things)
            log.setLevel(logging.WARNING)
            logging.getLogger(WARNINGS_LOGGER).setLevel(logging.ERROR)
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
        self.sim_key = config_hash(cfg, *sim_keys(cfg))
        self.spectra: dict[int, np.ndarray] = {}
        self.theory_cache: dict = {}
        self.predictions: dict[str, Prediction] = {}
        self.tracker: Tracker | None = None
        self.earlier_wall_time = 0.0  # seconds of the runs this one resumes, up to their last checkpoint

    def _shared_folder(self, own: Path) -> Path:
        """Rank 0's folder for every rank; the folder Hydra made for another rank is removed when it holds
        nothing but Hydra's own files (``.hydra/``, the log)."""
        shared = Path(shared_path(str(own)))
        if shared != own and own.exists() and all(p.name in (".hydra", "run.log", "run.py.log") for p in own.iterdir()):
            shutil.rmtree(own, ignore_errors=True)
        return shared

    # -- state ------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resume needs, as tensors and plain Python values (a weights-only checkpoint, written by
        the checkpointer on rank 0): the simulation, the spectra (step -> eigenvalues), the theory cache
        (name -> (config hash, the Prediction's fields)), the W&B run id and the wall time so far (s)."""
        wb = self.tracker.wandb if self.tracker else None
        return {"key": self.sim_key, "config": config_values(self.cfg, *sim_keys(self.cfg)),
                "simulation": self.sim.state_dict(), "spectra": map_leaves(self.spectra, as_plain),
                "theory": {name: (key, map_leaves(dataclasses.asdict(prediction), as_plain))
                           for name, (key, prediction) in self.theory_cache.items()},
                "wandb_id": wb.run_id if wb else None, "wall_time_s": self.wall_time()}

    def wall_time(self) -> float:
        """Seconds of this run and of the runs it resumes (each up to its last checkpoint)."""
        return self.earlier_wall_time + time.time() - self.start

    def save(self) -> None:
        self.checkpointer.save()

    def restore(self) -> dict | None:
        """Load the checkpoint in the run's folder (None when starting afresh).

        ``auto`` (the default) and ``true`` continue a checkpoint written with the same values of the keys
        that determine the trajectory, however its run ended: stopped by a signal, killed (SIGKILL from the
        OOM killer, a failed node or SLURM's hard kill), crashed or finished. A checkpoint written with other
        values is refused, naming them, and so is one that holds more than tensors and plain values: the
        folder is left as it is. ``false`` starts over and replaces the folder's files. Theories that failed
        are computed again.
        """
        mode = str(self.cfg.resume).lower()
        path = self.out / "checkpoint.pt"
        if mode == "false":
            return None
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            raise ConfigError(str(err)) from None
        if state is None:
            if mode == "true":
                warnings.warn(f"resume=true but no checkpoint in {self.out}: starting from step 0", RuntimeWarning)
            elif (self.out / "metrics.jsonl").exists():
                warnings.warn(f"no checkpoint in {self.out}: starting from step 0 and replacing its metrics.jsonl",
                              RuntimeWarning)
            return None
        if state.get("key") != self.sim_key:
            diff = changed_keys(state.get("config", {}), config_values(self.cfg, *sim_keys(self.cfg)))
            raise ConfigError(f"{path} was written by a run with a different configuration ("
                              + (", ".join(diff) or "older format") + "); continue it with its own overrides, "
                              "start over in this folder with resume=false, or use a new hydra.run.dir")
        log.info(f"resuming from {path} at step {state['simulation']['trainer']['step']}")
        self.sim.load_state_dict(state["simulation"])
        self.spectra = map_leaves(state["spectra"], as_numpy)
        self.theory_cache = {name: (key, Prediction(**map_leaves(fields, as_numpy)))
                             for name, (key, fields) in state["theory"].items() if "error" not in fields["summary"]}
        self.earlier_wall_time = state.get("wall_time_s", 0.0)
        return state

    def completed(self, state: dict | None) -> dict | None:
        """The summary of the finished run (status ok, every step done) that ``state`` continues; else None."""
        file, steps = self.out / "summary.json", self.cfg.trainer.steps
        if state is None or self.sim.step < steps or not file.exists():
            return None
        summary = json.loads(file.read_text())
        return summary if summary.get("status") == "ok" and summary.get("steps_done") == steps else None

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
        if wb is not None and state is not None and wb.offline:
            self.replay_offline(wb)

    def replay_offline(self, wb) -> None:
        """Log the kept rows and spectra again into a resumed offline W&B run, in the order they were first
        logged, then remove the run's earlier offline segments: the new segment holds the whole history, with
        ``_step`` numbered as before and continuing, so that syncing cannot replace it with a shorter one. A
        failure is one warning (the local files are unaffected)."""
        rows = {r["step"]: r for r in self.tracker.rows}
        try:
            for step in sorted(set(rows) | {s for s in self.spectra if s < self.sim.step}):
                if step in self.spectra:
                    wb.log_spectrum("sim/spectrum", step * self.sim.h, self.spectra[step])
                if step in rows:
                    wb.log(rows[step])
            for folder in wb.remove_earlier_segments():
                log.info(f"W&B: {folder} is replaced by {wb.segment}, which holds its history")
        except Exception as err:
            warnings.warn(f"W&B could not log the history before step {self.sim.step} again ({type(err).__name__}: "
                          f"{err}); its earlier offline folders are kept beside {wb.segment}", RuntimeWarning)

    def on_record(self, rec: dict) -> None:
        if "spectrum" in rec:  # the replicas' eigenvalues pooled
            self.spectra[rec["step"]] = np.ravel(rec["spectrum"])
            self.tracker.log_spectrum("sim/spectrum", rec["t"], self.spectra[rec["step"]])
        if rec["step"] not in self.scheduled:
            return
        row = {"t": rec["t"], "step": rec["step"], **metric_row(rec)}
        for prediction in self.predictions.values():
            row.update(prediction.row(rec["step"]))
        longtime = self.predictions.get("longtime")
        if longtime is not None and longtime.constants:  # the distance to the static solution
            row.update(static_excess(row, longtime.constants))
        self.tracker.log(row)

    # -- the run ----------------------------------------------------------------------------------------
    def run_info(self) -> RunInfo:
        sim, cfg = self.sim, self.cfg
        replicated = sim.replicas is not None  # the theories see replica 0's teacher and seeds
        return RunInfo(problem=self.problem, h=sim.h, steps=cfg.trainer.steps, schedule=self.schedule,
                       spectrum_steps=self.spectrum_steps, seeds=sim.seeds[0] if replicated else sim.seeds,
                       s_star=sim.s_star[0] if replicated else sim.s_star,
                       make_optimizer=sim.make_optimizer, optimizer_name=type(sim.optimizer).__name__,
                       batch_size=cfg.trainer.batch_size,
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
                with warnings.catch_warnings():  # an unstable run says so in its status and error instead
                    warnings.filterwarnings("ignore", message="training unstable", category=RuntimeWarning)
                    self.sim.run(self.cfg.trainer.steps, self.schedule, self.spectrum_steps, on_record=self.on_record)
            if self.interrupted():
                return "interrupted", (f"received signal {self.signals.received} at step {self.sim.step}; "
                                       f"checkpointed in {self.out}; {resume_hint(self.out, world()[1])}")
            failed = [f"theory {n} failed: {p.summary['error']}" for n, p in self.predictions.items()
                      if "error" in p.summary]
            unstable = self.sim.guard.unstable
            if failed:
                return "failed", "; ".join(failed + ([f"training unstable: {unstable}"] if unstable else []))
            return ("unstable", unstable) if unstable else ("ok", None)
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
        done = self.completed(state)
        if done is not None:
            log.info(f"the run in {self.out} is complete (status ok, {done['steps_done']} steps): nothing to do")
            return done
        self.open_tracker(state)
        route = f" route={self.sim.route}" if uses_analytic_gradient(self.sim.student) else ""
        log.info(f"{self.problem} | {type(self.sim.student).__name__} | {type(self.sim.optimizer).__name__} "
                 f"h={self.sim.h:g} steps={self.cfg.trainer.steps} | {self.sim.device} {self.cfg.precision}"
                 f"{route} | theories: {', '.join(self.theories) or 'none'} | {self.out}")
        log.info(f"if this run is killed, {resume_hint(self.out, world()[1])}")
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
        summary.update(objective=objective_value(summary, self.cfg.objective, self.tracker.rows, self.failed_objective),
                       objective_key=self.cfg.objective)  # before summary.json goes into the W&B artifact
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
            "objective_increases": sim.guard.ascents, "loss_scale": np.asarray(sim.objective.loss_scale).tolist(),
            "replicas": sim.replicas or 1, "t": sim.step * sim.h,
            **{k: v for k, v in last.items() if k not in ("t", "step")}, **final_gaps(last),
            **{f"theory/{n}/{k}": v for n, p in self.predictions.items() for k, v in p.summary.items()},
            "problem": self.problem.to_dict(), "student": type(sim.student).__name__,
            "optimizer": type(sim.optimizer).__name__, "device": str(sim.device), "world_size": world()[1],
            "precision": self.cfg.precision, "route": sim.route if uses_analytic_gradient(sim.student) else None, "memory_bytes": sim.memory,
            "wall_time_s": self.wall_time(), "versions": _versions(),
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
                paths.append(plot_curves(self.tracker.rows, plot_dir / "curves.png", title,
                                         [n for n, pr in self.predictions.items() if pr.summary.get("valid") is False]))
            if self.spectra:
                step = max(self.spectra)
                lt = self.predictions.get("longtime")
                paths.append(plot_spectrum(self.spectra[step], plot_dir / "spectrum.png", step * sim.h,
                                           lt.density if lt is not None else None,
                                           lt.summary.get("atom") if lt is not None else None, title,
                                           zero_tol=self.cfg.record.rank_tol,
                                           flagged=lt is not None and lt.summary.get("valid") is False))
        except Exception as err:  # a plot must not lose the run's results
            warnings.warn(f"plotting failed: {err}", RuntimeWarning)
        return paths


def _versions() -> dict:
    return {"quadflow": quadflow.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def run_job(cfg: DictConfig, out_dir: Path, *, wandb_group: str | None = None, job_name: str | None = None,
            failed_objective: float = math.nan) -> dict:
    """Build, fit, finish one configured job in ``out_dir``; returns the summary (also in summary.json), with
    ``objective`` (the value of ``cfg.objective``, ``failed_objective`` when the job did not finish ok)."""
    return Job(cfg, out_dir, wandb_group=wandb_group, job_name=job_name, failed_objective=failed_objective).run()


def one_line_report(summary: dict, out_dir) -> str:
    """``status | final sim mse vs each theory | where the files are`` for the console."""
    parts = [f"[{summary['status']}] t={summary['t']:g}"]
    if summary.get("sim/mse") is not None:
        parts.append(f"sim mse={summary['sim/mse']:.4g}")
    for key, value in summary.items():
        if key.startswith("theory/") and key.endswith("/mse") and isinstance(value, float):
            parts.append(f"{key.split('/')[1]} mse={value:.4g}")
    return " | ".join(parts) + f" | results in {out_dir} (plots/curves.png, metrics.jsonl, summary.json)"
