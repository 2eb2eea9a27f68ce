"""Where a run's observables go: ``metrics.jsonl`` (always) and Weights & Biases (optional).

Rows are dicts with ``t``, ``step`` and keys ``sim/<metric>`` and
``theory/<name>/<metric>`` (docs/architecture.md). W&B is imported lazily; if it
is missing or cannot start, the run goes on with its local files and one
warning. Local writes that fail (disk full) are reported once and the rows
kept in memory, so the summary and plots are still written where possible.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from quadflow.io import atomic_write_text, jsonable, read_jsonl


class JsonlSink:
    """Append-only ``metrics.jsonl``, one JSON object per logged time, flushed per row.

    ``path=None`` keeps rows in memory only. ``truncate_from_step`` (resume) drops rows at or after that step, since the
    resumed run records them again.
    """

    def __init__(self, path: Path | None, truncate_from_step: int | None = None):
        self.path, self.failed = (Path(path) if path is not None else None), None
        self.rows: list[dict] = []
        if self.path is None:  # rows in memory only (non-zero ranks)
            return
        if truncate_from_step is not None and self.path.exists():
            self.rows = [r for r in read_jsonl(self.path) if r.get("step", -1) < truncate_from_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
        elif self.path.exists():
            self.path.unlink()

    def log(self, row: dict) -> None:
        row = {k: jsonable(v) for k, v in row.items()}
        self.rows.append(row)
        if self.failed or self.path is None:
            return
        try:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        except OSError as err:
            self.failed = f"could not write {self.path}: {err}"
            warnings.warn(self.failed + "; further rows are kept in memory only", RuntimeWarning)


class WandbSink:
    """One W&B run per job: offline by default, shared ``t`` axis for ``sim/*`` and ``theory/*``.

    Use :meth:`start`, which returns None (after one warning) when W&B cannot start.
    """

    def __init__(self, run, wandb_module):
        self.run, self.wandb = run, wandb_module

    @classmethod
    def start(cls, *, mode: str, project: str, entity: str | None, group: str | None, name: str | None,
              tags: list, config: dict, out_dir: Path, run_id: str | None = None) -> "WandbSink | None":
        if mode == "disabled" or os.environ.get("WANDB_MODE") == "disabled":
            return None
        try:
            import wandb

            run = wandb.init(mode=mode, project=project, entity=entity, group=group, name=name, tags=list(tags),
                             config=config, dir=str(out_dir), id=run_id, resume="allow" if run_id else None,
                             reinit="finish_previous")
            run.define_metric("t")
            for prefix in ("sim/*", "theory/*"):
                run.define_metric(prefix, step_metric="t")
            return cls(run, wandb)
        except Exception as err:  # no network, no login, not installed, bad settings: local files go on
            warnings.warn(f"W&B could not start ({type(err).__name__}: {err}); results are in {out_dir} only",
                          RuntimeWarning)
            return None

    @property
    def run_id(self) -> str:
        return self.run.id

    def log(self, row: dict) -> None:
        self.run.log({k: v for k, v in row.items() if k != "step" and v is not None})

    def log_spectrum(self, key: str, t: float, eigenvalues: np.ndarray) -> None:
        self.run.log({key: self.wandb.Histogram(np.asarray(eigenvalues), num_bins=min(128, max(8, len(eigenvalues) // 4))),
                      "t": t})

    def log_images(self, paths: list[Path]) -> None:
        self.run.log({f"plots/{p.stem}": self.wandb.Image(str(p)) for p in paths})

    def finish(self, summary: dict, exit_code: int) -> None:
        for k, v in summary.items():
            if isinstance(v, (int, float, str, bool)):
                self.run.summary[k] = v
        self.run.finish(exit_code=exit_code)


class Tracker:
    """Fan-out of rows to the JSONL file and W&B (when it started)."""

    def __init__(self, jsonl: JsonlSink, wandb_sink: WandbSink | None):
        self.jsonl, self.wandb = jsonl, wandb_sink

    @property
    def rows(self) -> list[dict]:
        return self.jsonl.rows

    def log(self, row: dict) -> None:
        self.jsonl.log(row)
        if self.wandb is not None:
            self.wandb.log(row)

    def log_spectrum(self, key: str, t: float, eigenvalues) -> None:
        if self.wandb is not None:
            self.wandb.log_spectrum(key, t, eigenvalues)

    def log_images(self, paths) -> None:
        if self.wandb is not None and paths:
            self.wandb.log_images(paths)

    def finish(self, summary: dict, exit_code: int) -> None:
        if self.wandb is not None:
            self.wandb.finish(summary, exit_code)
