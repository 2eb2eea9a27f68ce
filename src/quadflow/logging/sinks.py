"""Where a run's observables go: ``metrics.jsonl`` (always) and Weights & Biases (optional).

Rows are dicts with ``t``, ``step`` and keys ``sim/<metric>`` and
``theory/<name>/<metric>`` (docs/architecture.md). W&B is imported lazily; if it
is missing or cannot start, the run goes on with its local files and one
warning. Local writes that fail (disk full) are reported once and the rows
kept in memory, so the summary and plots are still written where possible.
At the end of a run the W&B run also gets charts with theory on the simulation's axes
(``charts/<metric>``, log10 axes where a metric spans decades; ``charts/spectrum``; data in
:mod:`quadflow.logging.charts`) and the run's files as one artifact; a failure there is one warning.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np

from quadflow.io import atomic_write_text, jsonable, read_jsonl
from quadflow.logging.charts import SERIES, SPECTRUM_COLUMNS, num_bins, overlay_series, overlay_table, row_metrics, \
    spectrum_rows

DEFAULT_PROJECT = "quadflow"  # when neither the config nor WANDB_PROJECT names one
DATA_DIR_VAR = "WANDB_DATA_DIR"  # W&B stages artifact files under it


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

    def __init__(self, run, wandb_module, data_dir_set: bool = False):
        self.run, self.wandb, self.data_dir_set = run, wandb_module, data_dir_set

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
        """A W&B run in ``out_dir/wandb/``, continuing ``run_id`` when given (``resume="allow"``).

        Unless ``WANDB_DATA_DIR`` is set, it points at ``out_dir/wandb/data/`` until :meth:`finish`: W&B stages
        the files of an artifact there, inside the run folder, so that a copy of the folder can still be synced.
        """
        kwargs = cls.init_kwargs(mode=mode, project=project, entity=entity, group=group, name=name, tags=tags,
                                 run_id=run_id, job_type=job_type)
        if kwargs is None:
            return None
        data_dir_set = DATA_DIR_VAR not in os.environ
        if data_dir_set:
            os.environ[DATA_DIR_VAR] = str(Path(out_dir).resolve() / "wandb" / "data")
        try:
            import wandb

            run = wandb.init(**kwargs, config=config, dir=str(out_dir), reinit="finish_previous")
            run.define_metric("t")
            for prefix in ("sim/*", "theory/*"):
                run.define_metric(prefix, step_metric="t")
            return cls(run, wandb, data_dir_set)
        except Exception as err:  # no network, no login, not installed, bad settings: local files go on
            if data_dir_set:
                del os.environ[DATA_DIR_VAR]
            warnings.warn(f"W&B could not start ({type(err).__name__}: {err}); results are in {out_dir} only",
                          RuntimeWarning)
            return None

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def offline(self) -> bool:
        return bool(self.run.offline)

    @property
    def segment(self) -> Path:
        """This process's folder of the run (``<out>/wandb/offline-run-<time>-<id>`` offline)."""
        return Path(self.run.dir).parent

    def remove_earlier_segments(self) -> list[Path]:
        """Remove the folders that earlier processes wrote for this run id offline (``offline-run-*-<id>`` beside
        :attr:`segment`); returns them. Call once this segment has logged their history again."""
        here = self.segment.resolve()
        earlier = sorted(p for p in here.parent.glob(f"offline-run-*-{self.run.id}") if p.resolve() != here)
        for folder in earlier:
            shutil.rmtree(folder)
        return earlier

    def log(self, row: dict) -> None:
        self.run.log({k: v for k, v in row.items() if k != "step" and v is not None})

    def log_spectrum(self, key: str, t: float, eigenvalues: np.ndarray) -> None:
        self.run.log({key: self.wandb.Histogram(np.asarray(eigenvalues), num_bins=num_bins(len(eigenvalues))),
                      "t": t})

    def line_chart(self, series: dict, xname: str, yname: str, title: str | None = None):
        """``wandb.plot.line`` of ``{label: [(x, y), ...]}``, one line per label, axes named by the table's columns
        (``"log10 <name>"`` on an axis spanning decades: :func:`quadflow.logging.charts.overlay_table`); None when no
        series has a point. The default title names the axes (``"log10 mse against log10 t"``)."""
        table = overlay_table(series, xname, yname)
        if table is None:
            return None
        return self.wandb.plot.line(self.wandb.Table(columns=table["columns"], data=table["data"]), table["x"],
                                    table["y"], stroke=SERIES, title=title or f"{table['y']} against {table['x']}")

    def log_charts(self, charts: dict) -> None:
        """Log ``{key: chart or None}`` in one step (the Nones left out)."""
        charts = {k: v for k, v in charts.items() if v is not None}
        if charts:
            self.run.log(charts)

    def log_overlays(self, rows: list[dict], metrics=None) -> None:
        """``charts/<metric>``: the simulation and every theory of ``rows`` on one chart against t, per metric (log10
        axes where the values span decades)."""
        self.log_charts({f"charts/{m}": self.line_chart(overlay_series(rows, m), xname="t", yname=m)
                         for m in (metrics or row_metrics(rows))})

    def log_spectrum_overlay(self, spectra: dict, h: float, density=None, label: str = "theory") -> None:
        """``spectrum/table`` (``series, t, x, density``) and ``charts/spectrum``: the normalised histogram of S at
        each logged step and the theory density on one chart."""
        rows = spectrum_rows(spectra, h, density, label)
        if not rows:
            return
        table = self.wandb.Table(columns=SPECTRUM_COLUMNS, data=rows)
        self.run.log({"spectrum/table": table,
                      "charts/spectrum": self.wandb.plot.line(table, "x", "density", stroke=SERIES,
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
        try:
            self.run.finish(exit_code=exit_code)
        finally:
            if self.data_dir_set:
                os.environ.pop(DATA_DIR_VAR, None)


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
