"""Multirun bookkeeping: every point of a sweep checked before the first job, the summary of a job that
raised, which jobs failed and why (read from their summary.json), and the value a sweeper optimises."""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from quadflow.cli.schema import STEPS_TO
from quadflow.io import atomic_write_text, dumps

LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher")  # jobs run on this machine: its device and memory count
SEARCH_RESULTS = ("diverged", "unstable")  # statuses that are results of a search's trial, not failures


# -- the sweep's points, checked up front -------------------------------------------------------------------
@dataclass
class Point:
    """One job of a sweep: its override list (as the sweeper hands it to the launcher) and the swept ones."""

    num: int | None   # hydra.job.num (basic sweeper); None for the bounds of a search space (Optuna, ...)
    overrides: list[str]
    swept: list[str]  # the overrides of the keys that take several values

    def label(self) -> str:
        what = f"job {self.num}" if self.num is not None else "search bound"
        return f"{what} ({', '.join(self.swept)})" if self.swept else what


def sweep_points(config) -> list[Point]:
    """The jobs of a multirun as the sweeper expands them: ``hydra.sweeper.params`` then the command line,
    the later override of a key winning, the product of the values in order (BasicSweeper.split_arguments).

    A search interval (``interval(a, b)``, Optuna's ``tag(log, interval(a, b))``) contributes its two
    bounds: the sweeper samples between them, so a bound out of range can be drawn (or approached).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    values: dict[str, list[str]] = {}
    searched = False
    for o in OverridesParser.create().parse_overrides(lines):
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        elif o.is_interval_sweep():
            searched = True
            values[key] = [f"{key}={v}" for v in (o.value().start, o.value().end)]
        else:
            raise ValueError(f"sweep {o.input_line!r} is neither a list, a range nor an interval")
    basic = not searches(config.hydra.sweeper) and not searched
    swept = {k for k, v in values.items() if len(v) > 1}
    keys = list(values)
    return [Point(i if basic else None, list(job), [o for k, o in zip(keys, job) if k in swept])
            for i, job in enumerate(itertools.product(*values.values()))]


def one_line(err: BaseException) -> str:
    """An error's message on one line, with the first line of its cause (OmegaConf's type errors)."""
    text = str(err)
    cause = err.__cause__
    if cause is not None and str(cause).strip() and str(cause).split("\n")[0] not in text:
        text += f": {str(cause).splitlines()[0]}"
    return " ".join(text.split())


def compose_job(config, overrides: list[str], loader, cache: dict):
    """The config of the job with ``overrides``, as the launcher composes it; configs are composed once per set
    of config-group choices (``experiment=``, ``optim=``, ...) and the value overrides applied to a copy, so a
    22-job sweep composes once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    repo = getattr(loader, "repository", None)
    apply = getattr(type(loader), "_apply_overrides_to_config", None)
    if repo is None or apply is None:  # another config loader: the launcher's own route
        return job_config(loader.load_sweep_config(config, overrides))
    groups, values = [], []
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.key_or_group.startswith("hydra.") or o.key_or_group == "hydra":
            continue  # Hydra's own settings: not part of the job's config
        is_group = repo.group_exists(o.key_or_group) and not isinstance(o.value(), dict)
        (groups if is_group else values).append(o)
    key = tuple(o.input_line for o in groups)
    if key not in cache:
        cache[key] = job_config(loader.load_sweep_config(config, list(key)))
    cfg = copy.deepcopy(cache[key])
    apply(values, cfg)
    return cfg


def job_config(cfg):
    """``cfg`` without its ``hydra`` node, as the task function receives it."""
    from omegaconf import open_dict, read_write

    with read_write(cfg), open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def check_sweep(config, loader=None) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` of every point of the multirun ``config``, one line each, before any job runs.

    Errors are the values a job would refuse (:func:`quadflow.cli.validate.validate_config`); warnings are
    the memory refusals of this machine (those jobs will be recorded as failed, the others run) and points
    that could not be checked (a sweep syntax this expansion does not know).
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from quadflow.cli.validate import validate_config

    try:
        points = sweep_points(config)
    except Exception as err:
        return [], [f"the sweep's points are not checked up front ({one_line(err)})"]
    if loader is None:
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().config_loader()
    local = str(config.hydra.launcher.get("_target_", "")).endswith(LOCAL_LAUNCHERS)
    errors, warnings, cache = [], [], {}
    for p in points:
        try:
            notes = validate_config(compose_job(config, p.overrides, loader, cache), local=local)
        except (ValueError, HydraException, OmegaConfBaseException) as err:  # ConfigError is a ValueError
            errors.append(f"{p.label()}: {one_line(err)}")
            continue
        except Exception as err:  # a bug of the check must not refuse a sweep
            warnings.append(f"{p.label()}: not checked up front ({type(err).__name__}: {one_line(err)})")
            continue
        warnings += [f"{p.label()}: {n} It will be recorded as failed (stage build); the other jobs run."
                     for n in notes]
    return errors, warnings


# -- a job that raised ----------------------------------------------------------------------------------------
def failure_stage(out_dir: Path, since: float) -> str:
    """Where a job that raised had got to, from the files it wrote after ``since`` (its start):
    ``build`` (no config.yaml yet: building, restoring), ``train`` (config.yaml but no summary.json),
    ``finish`` (summary.json written, then something failed)."""
    def written(name: str) -> bool:
        path = Path(out_dir) / name
        return path.exists() and path.stat().st_mtime >= since - 1
    return "finish" if written("summary.json") else "train" if written("config.yaml") else "build"


def record_failure(out_dir: Path, err: BaseException, since: float) -> dict:
    """Write ``<out_dir>/summary.json`` of a job that raised: ``status: failed``, its ``stage`` and the error on
    one line (what a finished summary already holds is kept); returns it."""
    out_dir = Path(out_dir)
    stage = failure_stage(out_dir, since)
    summary = {}
    if stage == "finish":
        try:
            summary = json.loads((out_dir / "summary.json").read_text())
        except (OSError, json.JSONDecodeError):
            pass
    summary.update(status="failed", stage=stage, error=f"{type(err).__name__}: {one_line(err)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "summary.json", dumps(summary, indent=2))
    return summary


# -- the value a sweeper optimises ----------------------------------------------------------------------------
def steps_to(rows, metric: str, target: float) -> float:
    """The first recorded step at which ``metric`` is at most ``target`` (inf when it never is)."""
    return next((float(r["step"]) for r in rows
                 if isinstance(r.get(metric), (int, float)) and r[metric] <= target), math.inf)


def objective_value(summary: dict, key: str, rows=(), failed: float = math.nan) -> float:
    """The float a job returns to the sweeper (config key ``objective``).

    ``key`` is a key of summary.json (``sim/mse``, ``sim/test_error``, ``theory/longtime/mse``, ...), or
    ``steps_to:<metric>:<target>``: the first recorded step at which the metrics.jsonl column ``<metric>`` is
    at most ``<target>`` (``steps_to:sim/mse:0.05``: the step size reaching the target fastest), inf when the
    run never got there or GD oscillated (the objective rose by over 10 % at some step, summary key
    ``objective_increases``). ``failed`` (NaN, or the worst value for an Optuna study) when the job did not
    finish ok or the key is absent or not a number.
    """
    if summary.get("status") != "ok":
        return failed
    if key.startswith(STEPS_TO):
        metric, _, target = key[len(STEPS_TO):].rpartition(":")
        if summary.get("objective_increases"):
            return math.inf
        return steps_to(rows, metric, float(target))
    value = summary.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return failed
    return float(value)


def failed_value(sweeper) -> float:
    """The objective of a failed job: NaN, except for an Optuna study, which would stop on NaN (the plugin
    tells a failed trial with its value, which optuna 2 refuses): there the worst value of its direction."""
    if sweeper is None or "optuna" not in str(sweeper.get("_target_", "")).lower():
        return math.nan
    direction = sweeper.get("direction")
    return -math.inf if str(direction).lower().endswith("maximize") else math.inf


# -- the sweep's report ---------------------------------------------------------------------------------------
def sweep_failures(sweep_dir: Path) -> list[dict]:
    """Status of every job of a multirun folder (from its summary.json), failed ones first."""
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/summary.json")):
        try:
            s = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            s = {"status": "failed", "error": f"unreadable summary: {err}"}
        rows.append({"job": path.parent.name, "status": s.get("status"), "stage": s.get("stage"),
                     "error": s.get("error"), "objective": s.get("objective")})
    job_dirs = {p.name for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").exists()}
    for missing in sorted(job_dirs - {r["job"] for r in rows}):
        rows.append({"job": missing, "status": "failed", "stage": None,
                     "error": "no summary.json (crashed before the end)", "objective": None})
    return sorted(rows, key=lambda r: (r["status"] == "ok", int(r["job"]) if r["job"].isdigit() else 0, r["job"]))


def searches(sweeper) -> bool:
    """Whether ``sweeper`` (``hydra.sweeper``) optimises an objective (Optuna, ...) rather than listing its jobs."""
    return not str(sweeper.get("_target_", "")).endswith("BasicSweeper")


def sweep_failed(rows: list[dict], search: bool) -> int:
    """The jobs that failed: every job not ok, except, in a ``search``, those that diverged or were unstable (a
    step size the search tried is too large: a result of the search, told to it as the worst objective)."""
    return sum(r["status"] != "ok" and not (search and r["status"] in SEARCH_RESULTS) for r in rows)


def print_sweep_table(rows: list[dict], search: bool = False, file=None) -> None:
    """``sweep: 13/16 jobs ok``, the diverged or unstable trials of a ``search`` counted on that line, then one
    line per failed job (a search's diverged and unstable trials included, as results)."""
    failed = [r for r in rows if r["status"] != "ok"]
    results = len(failed) - sweep_failed(rows, search)
    note = f", {results} diverged or unstable (results of the search, not failures)" if results else ""
    print(f"sweep: {len(rows) - len(failed)}/{len(rows)} jobs ok{note}", file=file)
    for r in failed:
        stage = f" ({r['stage']})" if r.get("stage") else ""
        print(f"  job {r['job']}: {r['status']}{stage}: {r['error']}", file=file)
