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

    @property
    def replicas(self) -> int:
        """Seeds the job ran on a tensor axis (``replicas=R``; 1 for a plain run)."""
        return int(self.summary.get("replicas", 1))

    def values(self, metric: str) -> list[float]:
        """The final ``metric`` of each run the job holds (:func:`run_values` of its summary)."""
        return run_values(self.summary, f"sim/{metric}")

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


def run_values(row: dict, key: str) -> list:
    """The values of ``key`` in a row of ``metrics.jsonl`` or a summary, one per run: for ``sim/<metric>`` in a
    run of replicas (whose ``sim/<metric>`` is their mean) each ``replicas/<r>/<metric>``, else ``[row[key]]``
    (``[]`` when the row lacks it)."""
    metric = key[len("sim/"):] if key.startswith("sim/") else None
    if metric is not None and f"replicas/0/{metric}" in row:
        r, out = 0, []
        while f"replicas/{r}/{metric}" in row:
            out.append(row[f"replicas/{r}/{metric}"])
            r += 1
        return out
    return [row[key]] if row.get(key) is not None else []


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


def flat_config(config: dict, prefix: str = "") -> dict:
    """A nested config as ``{"problem.alpha": 0.5, ...}`` (lists kept as tuples, so that they compare)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def config_value(job: Job, key: str):
    """The value of the dotted config ``key`` of ``job`` (None when absent)."""
    return flat_config(job.config).get(key)


def _determined(key: str, by: str, flats: list[dict]) -> bool:
    """Whether each value of ``by`` comes with one value of ``key`` (``optim.lr: ${trainer.h}`` follows trainer.h)."""
    seen: dict = {}
    return all(seen.setdefault(repr(f.get(by)), repr(f.get(key))) == repr(f.get(key)) for f in flats)


def varying_keys(jobs: list[Job], first: str | None = None) -> list[str]:
    """The config keys whose values differ between ``jobs``, in config order (``first`` leading), without the
    keys that follow from an earlier one (an interpolation like ``optim.lr: ${trainer.h}``)."""
    flats = [flat_config(j.config) for j in jobs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    varying = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
    if first is not None:
        varying = [first] + [k for k in varying if k != first]
    kept: list[str] = []
    for k in varying:
        if not any(_determined(k, earlier, flats) for earlier in kept):
            kept.append(k)
    return kept


def short_key(key: str) -> str:
    """``problem.kappa`` -> ``kappa`` (the model parameters' names), other keys dotted in full."""
    return key[len("problem."):] if key.startswith("problem.") else key


def series_label(job: Job, keys: list[str]) -> str:
    """``kappa=0.25, Delta=1.0``: the values of ``keys`` in ``job``."""
    flat = flat_config(job.config)
    return ", ".join(f"{short_key(k)}={flat.get(k)}" for k in keys)
