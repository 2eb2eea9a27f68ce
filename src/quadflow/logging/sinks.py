"""Where a run's observables go: ``metrics.jsonl`` (always) and Weights & Biases (optional).

Rows are dicts with ``t``, ``step`` and keys ``sim/<metric>`` and
``theory/<name>/<metric>`` (docs/architecture.md). W&B is imported lazily; if it
is missing or cannot start, the run goes on with its local files and one
warning. Local writes that fail (disk full) are reported once and the rows
kept in memory, so the summary and plots are still written where possible.
At the end of a run the W&B run also gets charts with theory on the simulation's axes
(``charts/<metric>``, ``charts/spectrum``; data in :mod:`quadflow.logging.charts`) and the run's
files as one artifact; a failure there is one warning.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from quadflow.io import atomic_write_text, jsonable, read_jsonl
from quadflow.logging.charts import SPECTRUM_COLUMNS, line_series_args, num_bins, overlay_series, row_metrics, \
    spectrum_rows

DEFAULT_PROJECT = "quadflow"  # when neither the config nor WANDB_PROJECT names one


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

    @staticmethod
    def init_kwargs(*, mode: str | None, project: str | None, entity: str | None, group: str | None,
                    name: str | None, tags, run_id: str | None, job_type: str | None) -> dict | None:
        """The arguments for ``wandb.init`` (None: disabled). A value of None is unset: W&B's own environment
        (``WANDB_MODE``, ``WANDB_PROJECT``, ``WANDB_ENTITY``) decides, read at this call and passed explicitly
        (W&B's settings singleton may have read the environment earlier in the process); unset mode without
        ``WANDB_MODE`` is "offline", unset project without ``WANDB_PROJECT`` is "quadflow". "disabled" from the
        config or the environment disables."""
        env = os.environ
        if "disabled" in (mode, env.get("WANDB_MODE")):
            return None
        mode = mode or env.get("WANDB_MODE") or "offline"
        given = {"mode": mode, "project": project or env.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                 "entity": entity or env.get("WANDB_ENTITY") or None, "group": group, "name": name, "id": run_id,
                 "job_type": job_type, "tags": list(tags) if tags else None, "resume": "allow" if run_id else None}
        return {k: v for k, v in given.items() if v is not None}

    @classmethod
    def start(cls, *, mode: str | None = None, project: str | None = None, entity: str | None = None,
              group: str | None = None, name: str | None = None, tags=(), config: dict | None = None,
              out_dir: Path, run_id: str | None = None, job_type: str = "train") -> "WandbSink | None":
        kwargs = cls.init_kwargs(mode=mode, project=project, entity=entity, group=group, name=name, tags=tags,
                                 run_id=run_id, job_type=job_type)
        if kwargs is None:
            return None
        try:
            import wandb

            run = wandb.init(**kwargs, config=config, dir=str(out_dir), reinit="finish_previous")
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
        self.run.log({key: self.wandb.Histogram(np.asarray(eigenvalues), num_bins=num_bins(len(eigenvalues))),
                      "t": t})

    def line_chart(self, series: dict, title: str, xname: str):
        """``wandb.plot.line_series`` of ``{label: [(x, y), ...]}`` (None when no series has a point)."""
        args = line_series_args(series)
        return None if args is None else self.wandb.plot.line_series(**args, title=title, xname=xname)

    def log_charts(self, charts: dict) -> None:
        """Log ``{key: chart or None}`` in one step (the Nones left out)."""
        charts = {k: v for k, v in charts.items() if v is not None}
        if charts:
            self.run.log(charts)

    def log_overlays(self, rows: list[dict], metrics=None) -> None:
        """``charts/<metric>``: the simulation and every theory of ``rows`` on one chart against t, per metric."""
        self.log_charts({f"charts/{m}": self.line_chart(overlay_series(rows, m), title=m, xname="t")
                         for m in (metrics or row_metrics(rows))})

    def log_spectrum_overlay(self, spectra: dict, h: float, density=None, label: str = "theory") -> None:
        """``spectrum/table`` (``series, t, x, density``) and ``charts/spectrum``: the normalised histogram of S at
        each logged step and the theory density on one chart."""
        rows = spectrum_rows(spectra, h, density, label)
        if not rows:
            return
        table = self.wandb.Table(columns=SPECTRUM_COLUMNS, data=rows)
        self.run.log({"spectrum/table": table,
                      "charts/spectrum": self.wandb.plot.line(table, "x", "density", stroke="series",
                                                              title="spectrum of S: empirical and theory")})

    def log_artifact(self, name: str | None, type: str, paths) -> str | None:
        """The files of ``paths`` that exist, as one artifact (name None: ``run-<id>-files``); returns its name."""
        paths = [Path(p) for p in paths if Path(p).is_file()]
        if not paths:
            return None
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", name or f"run-{self.run.id}-files")
        artifact = self.wandb.Artifact(name, type=type, metadata={"files": [p.name for p in paths]})
        for p in paths:
            artifact.add_file(str(p), name=p.name)
        self.run.log_artifact(artifact)
        return name

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

    def _try(self, what: str, method: str, *args, **kwargs):
        """``self.wandb.<method>(...)``; a failure is one warning (the run's local files are unaffected)."""
        if self.wandb is None:
            return None
        try:
            return getattr(self.wandb, method)(*args, **kwargs)
        except Exception as err:
            warnings.warn(f"W&B could not log {what} ({type(err).__name__}: {err}); local files are unaffected",
                          RuntimeWarning)
            return None

    def log_overlays(self, rows: list[dict] | None = None, metrics=None) -> None:
        """Charts ``charts/<metric>`` of the simulation and every theory (default: this run's rows). Call at the
        end of a run (also a resumed one: its rows then hold the whole history)."""
        self._try("the overlay charts", "log_overlays", self.rows if rows is None else rows, metrics)

    def log_spectrum_overlay(self, spectra: dict, h: float, density=None, label: str = "theory") -> None:
        """``spectrum/table`` and ``charts/spectrum``: histograms of ``{step: eigenvalues}`` (t = step h) and the
        theory density ``(x, rho)`` (None: none) on one chart."""
        if spectra:
            self._try("the spectrum chart", "log_spectrum_overlay", spectra, h, density, label)

    def log_artifact(self, name: str | None, type: str, paths) -> str | None:
        """The run's raw files (those of ``paths`` that exist) as one ``wandb.Artifact``; returns its name."""
        return self._try(f"the artifact {name}", "log_artifact", name, type, paths)

    def finish(self, summary: dict, exit_code: int) -> None:
        if self.wandb is not None:
            self.wandb.finish(summary, exit_code)
