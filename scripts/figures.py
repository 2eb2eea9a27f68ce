"""Draw one experiment's figure from saved job folders (or from theory alone), write CSV/JSON/PNG, log to W&B.

    python scripts/figures.py double_descent --sweep-dir multirun/2026-11-30/02-28-34-123456
    python scripts/figures.py phase_diagram --out docs/results/phase_diagram        # theory only
    python scripts/figures.py spectrum --sweep-dir outputs/<run> --out /tmp/fig --quick --wandb-mode disabled
    python scripts/figures.py double_descent --redraw docs/results/double_descent   # PNG from saved CSV/JSON
    python scripts/figures.py sweep --sweep-dir multirun/<day>/<time> --x problem.alpha --y sim/mse   # any sweep
    python scripts/figures.py agreement_map --sweep-dir multirun/<new> --join docs/results/agreement_map \
        --out docs/results/agreement_map                                  # a map extended by a later sweep

Figures: learning_curves, double_descent, overparam, phase_diagram, spectrum, finite_size, universality,
agreement_map, the paper's paper_fig1 ... paper_fig21 (theory-only: 3, 8, 11, 13, 15, 21)
(the presets conf/experiment/<name>.yaml draw theirs at the end of their multirun), and sweep: the final
--y (a summary.json key, default sim/mse) against --x (a config key, default the first key the jobs differ
in), with the theories' values and the learning curves coloured by x.

Exit codes: 0 done; 2 bad input (an unknown figure or option, a missing folder, jobs that do not fit the figure);
1 an unexpected failure. Either is one ``error:`` line on stderr; --debug adds the traceback.
"""
import argparse
import sys
import traceback
from pathlib import Path

from quadflow.viz.figures import FIGURES, FigureData, draw, make_figure


def _wandb_settings(args) -> dict | None:
    """W&B settings: the command line, else the jobs' own tracking.wandb config, else offline."""
    settings = {"mode": "offline", "project": "quadflow", "entity": None, "group": args.group or args.name}
    if args.sweep_dir is not None:
        from quadflow.viz.figures.jobs import load_jobs

        jobs = load_jobs(args.sweep_dir)
        if jobs:
            wb = jobs[0].config["tracking"]["wandb"]
            settings.update(mode=wb["mode"], project=wb["project"], entity=wb["entity"])
    if args.wandb_mode is not None:
        settings["mode"] = args.wandb_mode
    return None if settings["mode"] == "disabled" else settings


class InputError(Exception):
    """Bad input: reported as one ``error:`` line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise InputError(f"{message} (see --help)")


def main(argv=None) -> int:
    """Run the command line; returns the exit code (0 done, 1 unexpected failure, 2 bad input)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except Exception as err:
        if debug:
            traceback.print_exc()
        if isinstance(err, (InputError, ValueError, FileNotFoundError)):  # what was given does not fit
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(err).__name__}: {err}" + ("" if debug else
              " (rerun with --debug for the traceback)"), file=sys.stderr)
        return 1


def _folder(option: str, path: Path | None) -> None:
    if path is not None and not path.is_dir():
        raise InputError(f"{option} {path}: no such folder")


def run(argv=None) -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(FIGURES))
    parser.add_argument("--sweep-dir", type=Path, help="multirun folder (or one run folder) of the preset")
    parser.add_argument("--out", type=Path, help="where to write the files (default: the sweep folder)")
    parser.add_argument("--quick", action="store_true", help="coarse theory grids (tests, notebooks)")
    parser.add_argument("--redraw", type=Path, metavar="DIR", help="only redraw <name>.png from saved data in DIR")
    parser.add_argument("--wandb-mode", choices=("offline", "online", "disabled"))
    parser.add_argument("--group", help="W&B group (default: the figure name)")
    parser.add_argument("--x", help="sweep: the swept config key, e.g. problem.alpha (default: the first that varies)")
    parser.add_argument("--y", help="sweep: the summary.json key drawn, e.g. sim/mse (default)")
    parser.add_argument("--join", type=Path, metavar="DIR", help="agreement_map: join the rows of the map saved in "
                        "DIR (a grid extended by this sweep)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected failure")
    args = parser.parse_args(argv)
    options = {k: v for k, v in (("x", args.x), ("y", args.y)) if v is not None}
    if options and args.name != "sweep":
        parser.error("--x and --y are options of the sweep figure")
    if args.join is not None:
        if args.name != "agreement_map":
            parser.error("--join is an option of the agreement_map figure")
        _folder("--join", args.join)
        options["join"] = args.join
    _folder("--sweep-dir", args.sweep_dir)
    _folder("--redraw", args.redraw)
    if args.redraw is not None:
        if not (args.redraw / f"{args.name}.json").exists():
            raise InputError(f"--redraw {args.redraw}: no saved {args.name} figure there ({args.name}.json)")
        out = Path(args.out or args.redraw)
        out.mkdir(parents=True, exist_ok=True)
        draw(FigureData.load(args.redraw, args.name), out / f"{args.name}.png")
        print(Path(out) / f"{args.name}.png")
        return 0
    if args.out is None and args.sweep_dir is None:
        parser.error("give --sweep-dir (where the jobs are) or --out (theory-only figures)")
    result = make_figure(args.name, args.sweep_dir, args.out, quick=args.quick, wandb=_wandb_settings(args),
                         options=options)
    print("\n".join(result["files"]))
    if result["wandb_id"]:
        print(f"W&B run {result['wandb_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
