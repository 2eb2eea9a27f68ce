"""A W&B workspace whose panels put the simulation and every theory on the same log axes.

    python scripts/wandb_workspace.py --entity ENTITY --project quadflow          # show the panels, save nothing
    python scripts/wandb_workspace.py --entity ENTITY --project quadflow --save   # save it as a view of the project

One panel per metric of docs/architecture.md, against the run history's ``t``: ``sim/<metric>`` and
``theory/<name>/<metric>`` of every theory (default: those of conf/theory/, i.e. dmft, longtime, population).
x is logarithmic (the record times are log-spaced), and so is y except for ``rank_fraction`` (a fraction that
stays within a decade). Runs synced from offline mode (``wandb sync``) show in it as well.

Needs the ``wandb-workspaces`` package (``pip install wandb-workspaces``) and, for ``--save``, ``wandb login``.
Exit codes: 0 done; 1 saving failed (one ``error:`` line); 2 bad arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quadflow.train import METRICS

LINEAR_Y = ("rank_fraction",)
CONF_THEORIES = Path(__file__).resolve().parents[1] / "conf" / "theory"
WORKSPACE_NAME = "quadflow: simulation and theory"


def default_theories() -> list[str]:
    """The theory names of the config group ``theory`` (its files ``conf/theory/<name>.yaml``)."""
    return sorted(p.stem for p in CONF_THEORIES.glob("*.yaml"))


def build_workspace(entity: str, project: str, theories=None, metrics=METRICS):
    """The ``wandb_workspaces`` Workspace (not saved): one section, one line plot per metric with ``x = "t"``,
    ``y = ["sim/<metric>", "theory/<name>/<metric>", ...]``, ``log_x`` True, ``log_y`` True but for
    :data:`LINEAR_Y`; the simulation drawn solid and labelled ``simulation``, each theory dashed and labelled
    ``theory: <name>``."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    theories = default_theories() if theories is None else list(theories)
    panels = []
    for m in metrics:
        keys = {f"sim/{m}": "simulation", **{f"theory/{name}/{m}": f"theory: {name}" for name in theories}}
        panels.append(wr.LinePlot(title=f"{m}: simulation and theory", x="t", y=list(keys), log_x=True,
                                  log_y=m not in LINEAR_Y, title_x="t", title_y=m, line_titles=keys,
                                  line_marks={k: "solid" if k.startswith("sim/") else "dashed" for k in keys}))
    return ws.Workspace(entity=entity, project=project, name=WORKSPACE_NAME,
                        settings=ws.WorkspaceSettings(x_axis="t"),
                        sections=[ws.Section(name="simulation and theory", panels=panels, is_open=True)])


def describe(workspace) -> str:
    """One line per panel: its title, y keys and axis scales."""
    lines = [f"workspace {workspace.name!r} of {workspace.entity}/{workspace.project}:"]
    for section in workspace.sections:
        for p in section.panels:
            scales = f"x={'log' if p.log_x else 'linear'} y={'log' if p.log_y else 'linear'}"
            lines.append(f"  {p.title}: {', '.join(p.y)} against {p.x} ({scales})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entity", required=True, help="W&B entity (user or team) that owns the project")
    parser.add_argument("--project", required=True, help="W&B project of the runs, e.g. quadflow")
    parser.add_argument("--theories", help="comma-separated theory names (default: conf/theory/*.yaml)")
    parser.add_argument("--save", action="store_true", help="save the workspace to W&B (needs a login)")
    args = parser.parse_args(argv)
    theories = None
    if args.theories is not None:
        theories = [t for t in args.theories.split(",") if t]
        if not theories:
            parser.error(f"--theories {args.theories!r}: give at least one name, e.g. dmft,longtime")
    try:
        workspace = build_workspace(args.entity, args.project, theories)
    except ImportError:
        print("error: this script needs the wandb-workspaces package: pip install wandb-workspaces", file=sys.stderr)
        return 2
    print(describe(workspace))
    if not args.save:
        print("not saved (add --save to save it to W&B)")
        return 0
    try:
        workspace.save()
    except Exception as err:  # no login, no network, no such entity or project
        print(f"error: could not save the workspace to {args.entity}/{args.project} ({type(err).__name__}: {err})",
              file=sys.stderr)
        return 1
    print(f"saved: {workspace.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
