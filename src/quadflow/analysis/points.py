"""Resumable measurements: a list of point configs, each measured once and cached under its hash.

    from quadflow.analysis.points import load_points, run_points
    counts = run_points(configs, out, measure=measure, max_minutes=60)   # {"computed", "cached", "failed", "left"}
    points = load_points(out)                                            # [{"config": ..., "result": ...}, ...]

A point is a plain-JSON config dict. Its result is cached as ``<out>/points/<hash>.json``, holding
``{"config": cfg, "result": measure(cfg)}`` and written atomically, with ``hash = point_hash(cfg)``: the
digest :func:`quadflow.io.stable_hash` that the app's caches use too (:func:`quadflow.cli.job.config_hash`).
A rerun skips cached points; a point whose measure raises is logged and not cached, so the next run tries
it again; ``max_minutes`` stops between points. The scripts of ``scripts/validation/`` are built on this
module (scripts/README.md); each brings its plan (the configs), its measure and its report.
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Callable

from quadflow.io import atomic_write_text, dumps, stable_hash

COUNTS = ("computed", "cached", "failed", "left")
flushed_print = functools.partial(print, flush=True)  # progress lines reach a log file as they happen


def point_hash(config: dict) -> str:
    """The name of a point's cache file: :func:`quadflow.io.stable_hash` of its config (16 hex digits)."""
    return stable_hash(config)


def run_points(configs: list[dict], out: Path, *, measure: Callable, label: Callable[[dict], str] | None = None,
               line: Callable[[dict], str] | None = None, max_minutes: float | None = None,
               log: Callable[[str], None] = flushed_print, checkpoints: bool = False) -> dict:
    """Measure every config not yet cached under ``out/points``, in order; counts of ``computed``, ``cached``,
    ``failed`` and ``left`` (not started for the budget) points.

    ``measure(cfg) -> dict`` gives a point's result (a ``wall_s`` in it is the point's time for the budget,
    else the call's). ``label(cfg)`` names the point in its progress line (default: its hash) and
    ``line(result)`` says its result (default: its wall time). With ``checkpoints``, ``measure`` is called
    as ``measure(cfg, path)`` with ``path = out/partial/<hash>.pt``: a file where it may checkpoint the point
    in progress and find it again after a kill; it is removed once the point is cached. ``max_minutes``
    starts no point once the time spent plus the last wall time of a point of the same ``(regime, d, kind)``
    would pass the budget.
    """
    out = Path(out)
    folder, partial = out / "points", out / "partial"
    folder.mkdir(parents=True, exist_ok=True)
    if checkpoints:
        partial.mkdir(parents=True, exist_ok=True)
    label = label or point_hash
    line = line or (lambda result: f"done ({result.get('wall_s', float('nan')):.1f} s)")
    counts = dict.fromkeys(COUNTS, 0)
    start, last_wall = time.perf_counter(), {}
    for i, cfg in enumerate(configs, 1):
        key = point_hash(cfg)
        path = folder / f"{key}.json"
        tag, kind = f"[{i}/{len(configs)}] {label(cfg)}", (cfg.get("regime"), cfg.get("d"), cfg.get("kind"))
        if path.exists():
            counts["cached"] += 1
            log(f"{tag}: cached ({path.name})")
            continue
        elapsed = time.perf_counter() - start
        if max_minutes is not None and elapsed + last_wall.get(kind, 0.0) > 60 * max_minutes:
            counts["left"] = sum(not (folder / f"{point_hash(c)}.json").exists() for c in configs[i - 1:])
            log(f"budget of {max_minutes:g} min reached after {elapsed / 60:.1f} min: {counts['left']} points left")
            break
        t0 = time.perf_counter()
        try:
            result = measure(cfg, partial / f"{key}.pt") if checkpoints else measure(cfg)
        except Exception as err:  # not cached: a rerun tries again
            counts["failed"] += 1
            log(f"{tag}: FAILED {type(err).__name__}: {err}")
            continue
        atomic_write_text(path, dumps({"config": cfg, "result": result}, indent=1))
        if checkpoints:
            (partial / f"{key}.pt").unlink(missing_ok=True)
        counts["computed"] += 1
        last_wall[kind] = result.get("wall_s", time.perf_counter() - t0)
        log(f"{tag}: {line(result)}")
    return counts


def load_points(out: Path) -> list[dict]:
    """Every cached point under ``out/points`` as ``{"config", "result"}``, in the order of their file names."""
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "points").glob("*.json"))]


def parser(doc: str, *, budget: bool = True, figure: bool = False, out_help: str | None = None,
           report_help: str | None = None) -> argparse.ArgumentParser:
    """The options every measurement script shares: ``--out`` (its results folder, required), ``--report``
    (only the report, from the cached points), with ``budget`` ``--max-minutes`` and with ``figure``
    ``--figure``. The description is the first line of ``doc`` (the script's docstring)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help=out_help)
    if budget:
        ap.add_argument("--max-minutes", type=float, default=None, help="start no point after this budget")
    ap.add_argument("--report", action="store_true", help=report_help or "only summarise the cached points")
    if figure:
        ap.add_argument("--figure", type=Path, default=None, help="also draw the figure here (png)")
    return ap


def run_measurement(args: argparse.Namespace, *, plan: Callable[[argparse.Namespace], list[dict]],
                    report: Callable[[argparse.Namespace], dict], **options) -> tuple[dict, dict]:
    """A measurement script's main after its arguments (:func:`parser`): unless ``args.report``,
    :func:`run_points` of ``plan(args)`` into ``args.out`` (within ``args.max_minutes`` where the script has
    that option; ``options``: its ``measure``, ``label``, ...); then ``report(args)``. Returns the counts
    (all 0 with ``--report``) and the report."""
    counts = dict.fromkeys(COUNTS, 0)
    if not args.report:
        counts = run_points(plan(args), args.out, max_minutes=getattr(args, "max_minutes", None), **options)
    return counts, report(args)


def parse_names(text: str, known, option: str) -> list[str]:
    """The comma-separated names of ``text``, each one of ``known``; else a one-line ValueError naming ``option``."""
    chosen = [n for n in text.split(",") if n]
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        raise ValueError(f"{option}: unknown {', '.join(unknown) or 'none given'}; known {', '.join(sorted(known))}")
    return chosen


def parse_numbers(text: str, key: str, kind: type = int, low: float = 2, strict: bool = False) -> list:
    """Comma-separated values of ``kind`` for option ``key``, each ``>= low`` (``> low`` if ``strict``);
    ValueError naming the key, the rule and the text otherwise."""
    rule = f"{'>' if strict else '>='} {low:g}"
    why = f"{key}: each must be {rule}, as comma-separated {'integers' if kind is int else 'numbers'}; got {text!r}"
    try:
        values = [kind(s) for s in text.split(",") if s]
    except ValueError:
        raise ValueError(why) from None
    if not values or any(v <= low if strict else v < low for v in values):
        raise ValueError(why)
    return values


def parse_sizes(text: str) -> list[int]:
    """``--sizes``: comma-separated integers d >= 2."""
    return parse_numbers(text, "--sizes")
