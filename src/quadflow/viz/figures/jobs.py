"""Reading the folders that ``scripts/run.py`` writes: one job, or every job of a multirun.

A job folder holds ``config.yaml`` (resolved config; else Hydra's ``.hydra/config.yaml``),
``summary.json`` (final values, ``status``), ``metrics.jsonl`` (rows ``t, step, sim/<metric>,
theory/<name>/<metric>``) and optionally ``spectra.npz`` (eigenvalues of S, keys ``step_<k>``).
The figures read the config keys ``problem.*``, ``trainer.h``, ``seed``, ``data.design``,
``record.rank_tol``, ``theory.*`` and ``tracking.wandb.*``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from quadflow.io import read_jsonl


@dataclass
class Job:
    """One finished job: its folder, resolved config (nested dict) and summary."""

    path: Path
    config: dict
    summary: dict = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.summary.get("status") == "ok"

    @property
    def problem(self) -> dict:
        """Model parameters ``d, kappa, kappa_star, alpha, Delta, lam, sigma0``."""
        return self.config["problem"]

    @property
    def h(self) -> float:
        """Step size (``trainer.h``): the paper's time is ``t = step * h``."""
        return float(self.config["trainer"]["h"])

    @cached_property
    def rows(self) -> list[dict]:
        """The rows of ``metrics.jsonl`` (empty when the file is missing)."""
        path = self.path / "metrics.jsonl"
        return read_jsonl(path) if path.exists() else []

    def final_spectrum(self) -> tuple[float, np.ndarray] | None:
        """``(t, eigenvalues of S)`` at the last saved step, or None without ``spectra.npz``."""
        path = self.path / "spectra.npz"
        if not path.exists():
            return None
        with np.load(path) as npz:
            step = max(int(k.split("_")[1]) for k in npz.files)
            return step * self.h, np.asarray(npz[f"step_{step}"], dtype=float)


def _load(path: Path) -> Job:
    from omegaconf import OmegaConf  # its YAML loader (``1e-8`` is a float); imported only to read jobs

    config_path = path / "config.yaml"
    if not config_path.exists():
        config_path = path / ".hydra" / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    return Job(path=path, config=config, summary=json.loads((path / "summary.json").read_text()))


def load_jobs(folder: Path) -> list[Job]:
    """Jobs of a run folder (itself a job) or of a multirun folder (its numbered sub-folders).

    Sub-folders are sorted by job number; folders without ``summary.json`` (a job that
    crashed before writing it) are skipped, failed jobs are returned with ``ok`` False.
    """
    folder = Path(folder)
    if (folder / "summary.json").exists():
        return [_load(folder)]
    subs = [p for p in folder.iterdir() if p.is_dir() and (p / "summary.json").exists()]
    subs.sort(key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    return [_load(p) for p in subs]
