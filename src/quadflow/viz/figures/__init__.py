"""Figures of the paper's main findings, theory next to simulation (an edge module: matplotlib, W&B).

Each experiment has a maker with two steps:

- ``collect(jobs, quick) -> FigureData``: read the job folders of its preset
  (``conf/experiment/<name>.yaml``), compute the theory curves, and return tables
  and agreement numbers;
- ``draw(data) -> matplotlib Figure``: draw from those tables alone, so that saved
  results (``docs/results/<name>/``) are redrawn without rerunning anything.

:func:`make_figure` does both, writes ``<name>.csv``, ``<name>_<table>.csv``,
``<name>.json`` and ``<name>.png`` and logs them to one W&B run. It is called at the
end of a multirun by the Hydra app's ``SweepSummary`` callback (when the preset sets
``figure: <name>``) and by ``scripts/figures.py``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from quadflow.viz.figures.data import FigureData
from quadflow.viz.figures.jobs import load_jobs


@dataclass(frozen=True)
class Maker:
    module: str          # module under quadflow.viz.figures with collect(jobs, quick, **options) and draw(data)
    needs_jobs: bool = True
    options: tuple = ()  # keyword arguments of collect, as (key, value) pairs

    def collect(self, jobs, quick: bool, **options) -> FigureData:
        module = importlib.import_module(f"quadflow.viz.figures.{self.module}")
        return module.collect(jobs, quick, **{**dict(self.options), **options})

    def draw(self, data: FigureData):
        return importlib.import_module(f"quadflow.viz.figures.{self.module}").draw(data)


FIGURES = {
    "learning_curves": Maker("learning_curves"),
    "double_descent": Maker("generalisation", options=(("vary", "alpha"),)),
    "overparam": Maker("generalisation", options=(("vary", "kappa"),)),
    # the paper's figures of the long-time values against alpha: experiment=paper/figN(_quick)
    **{f"paper_fig{n}": Maker("generalisation", options=(("vary", "alpha"),))
       for n in (2, 4, 6, 7, 9, 10, 16, 17, 18, 19, 20)},
    # the paper's figures against t: experiment=paper/figN(_quick)
    **{f"paper_fig{n}": Maker("learning_curves") for n in (1, 5, 12)},
    "paper_fig14": Maker("objective_gap"),
    # the paper's theory-only figures: scripts/figures.py paper_figN --out DIR (no jobs)
    "paper_fig3": Maker("phase_diagram", needs_jobs=False),
    **{f"paper_fig{n}": Maker("paper_theory", needs_jobs=False, options=(("figure", n),)) for n in (8, 11, 13, 15, 21)},
    "phase_diagram": Maker("phase_diagram", needs_jobs=False),
    "spectrum": Maker("spectrum"),
    "finite_size": Maker("finite_size"),
    "universality": Maker("universality"),
    "agreement_map": Maker("agreement_map"),
    "sweep": Maker("sweep"),  # any sweep: options x (config key), y (summary key)
}


def maker(name: str) -> Maker:
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}: one of {sorted(FIGURES)}")
    return FIGURES[name]


def collect(name: str, folder: Path | None = None, quick: bool = False, **options) -> FigureData:
    """Tables and agreement numbers of figure ``name`` from the jobs in ``folder``; ``options`` go to the
    maker's ``collect`` (``x=``, ``y=`` of the ``sweep`` figure)."""
    m = maker(name)
    if m.needs_jobs and folder is None:
        raise ValueError(f"figure {name!r} reads simulation results: give the sweep folder")
    jobs = load_jobs(folder) if m.needs_jobs else []
    if m.needs_jobs and not any(j.ok for j in jobs):
        raise ValueError(f"no finished job (status ok) under {folder}")
    data = m.collect(jobs, quick, **options)
    data.name = name
    return data


def draw(data: FigureData, path: Path | None = None):
    """The figure of ``data`` (saved as PNG to ``path`` when given)."""
    fig = maker(data.name).draw(data)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def make_figure(name: str, folder: Path | None = None, out: Path | None = None, *, quick: bool = False,
                wandb: dict | None = None, options: dict | None = None) -> dict:
    """Collect, save (CSV/JSON/PNG into ``out``, default ``folder``) and log one figure.

    ``options``: keyword arguments of the maker's ``collect`` (``{"x": "problem.alpha", "y": "sim/mse"}``).

    ``wandb``: keyword arguments of :func:`quadflow.viz.figures.wb.log_figure` (``mode, project,
    entity, group``); None logs nothing. Returns ``{"files": [...], "wandb_id": ...}``.
    """
    from quadflow.viz.figures.style import close

    out = Path(out if out is not None else folder)
    data = collect(name, folder, quick, **(options or {}))
    files = data.save(out)
    png = out / f"{name}.png"
    fig = draw(data, png)
    close(fig)
    run_id = None
    if wandb is not None:
        from quadflow.viz.figures.wb import log_figure

        run_id = log_figure(data, png, out_dir=out, **wandb)
    return {"files": [str(p) for p in files + [png]], "wandb_id": run_id}
