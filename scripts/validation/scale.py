"""Converged GD on real Gaussian inputs against the long-time theory, at growing d: a resumable measurement.

    python scripts/validation/scale.py --out docs/results/scale --regimes A,B,C,D --sizes 64,128,256 --seeds 6
    python scripts/validation/scale.py --out docs/results/scale --report          # points.csv, summary.json only

A point is (regime, kappa, kappa_star, alpha, lam, Delta, d, seed, h, precision, device and the
convergence settings). Its result is cached as ``<out>/points/<hash>.json`` (the first 16 hex
digits of the sha256 of its sorted JSON config, written atomically; :mod:`quadflow.analysis.points`, the
regimes in :mod:`quadflow.analysis.regimes`): a rerun skips cached points,
and the point in progress is checkpointed after every chunk (``<out>/partial/<hash>.pt``), so a
killed run loses at most one chunk. Points run smallest d first (every regime and
seed at one d before the next d), one progress line each; ``--max-minutes`` stops between points.

**Converged GD.** ``quadflow.Simulation`` (Gaussian design, or GOE with ``--design goe``; full-batch GD, step
``h``) is stepped in
chunks of ``chunk_t`` time units until, over the last chunk, the relative change of both the mse
and the train loss is at most ``rtol`` and the relative speed ``|dW/dt|_F / |W|_F`` (the gradient
norm of the scaled loss over the weight norm, at the final point) is at most ``gtol``; ``t_max``
caps the time. The speed test catches a period-2 oscillation (the chunk ends see the same phase,
so their change is 0): regime B at h = 0.05, d = 24 keeps ``|dW/dt|/|W|`` at 2.9 while its chunk
changes are below 1e-6. Defaults (h = 0.025, chunk_t = 10, rtol = 1e-5, gtol = 1e-4, t_max = 600):
at d = 24 in fp32 (seed 0) A, B, C, D meet them at t = 90, 100, 40, 70; the fp32 floor is near
1e-7 (change) and 5e-7 (speed).

**Theory.** ``solve_longtime`` at the regime's ratios (the d -> infinity target of the
extrapolation) and at the ratios the finite problem realises (``m/d, m*/d, n/d^2``, as in
docs/validation.md); gaps are ``sim / theory - 1``.

**Report** (``<out>/points.csv``, ``<out>/summary.json``, ``<out>/table.md``): per regime and metric,
per d the mean, seed std, s.e.m. and the gaps of the mean, over converged points, and
``quadflow.analysis.extrapolate`` of the converged seeds to d -> infinity (``model="auto"``, else
``"1/d"``, with the reasons for each refusal). ``table.md`` is the docs/validation.md table of the
mse and the train loss, generated from the summary.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from quadflow import Simulation
from quadflow.analysis import extrapolate_or_explain, per_size
from quadflow.analysis.points import load_points, parse_sizes, parser, point_hash, run_points
from quadflow.analysis.regimes import PARAMS, REGIMES, Regime, parse_regimes, problem
from quadflow.io import atomic_write_text, dumps
from quadflow.runtime import cpu_threads, resolve_device, resolve_precision
from quadflow.theory import solve_longtime
from quadflow.train.callbacks import DivergenceError, load_checkpoint, save_checkpoint

METRICS = ("mse", "test_error", "train_loss", "in_sample_error", "rank_fraction")


@dataclass(frozen=True)
class Settings:
    """How a point is run: step, precision, device and the convergence criterion (module docstring)."""

    h: float = 0.025
    precision: str = "fp32"
    device: str = "cpu"
    chunk_t: float = 10.0
    rtol: float = 1e-5
    gtol: float = 1e-4
    t_max: float = 600.0


def point_config(regime: Regime, d: int, seed: int, settings: Settings, design: str = "gaussian") -> dict:
    """The point's full config: what its hash is taken of."""
    return {**regime.config(), "d": int(d), "seed": int(seed), "design": design, **asdict(settings)}


def plan(regimes: list[Regime], sizes: list[int], seeds: int, settings: Settings,
         design: str = "gaussian") -> list[dict]:
    """Point configs, smallest d first: every seed of every regime at one d, then the next d."""
    return [point_config(r, d, s, settings, design) for d in sorted(sizes) for s in range(seeds) for r in regimes]


@functools.lru_cache(maxsize=None)
def theory(alpha: float, kappa: float, kappa_star: float, lam: float, Delta: float) -> dict:
    """``solve_longtime`` values of the metrics, with ``converged`` (cached: each costs about a second)."""
    sol = solve_longtime(alpha=alpha, kappa=kappa, kappa_star=kappa_star, lam=lam, Delta=Delta)
    return {**{m: float(getattr(sol, m)) for m in METRICS}, "converged": bool(sol.converged)}


def theory_columns(cfg: dict, rec: dict) -> dict:
    """``theory_<m>``, ``theory_realised_<m>``, ``gap_<m>`` and ``gap_realised_<m>`` of a point's record."""
    p = problem(cfg)
    r = p.realised()
    out = {}
    for suffix, q in (("", p), ("_realised", r)):
        th = theory(q.alpha, q.kappa, q.kappa_star, q.lam, q.Delta)
        out[f"theory{suffix}_converged"] = th["converged"]
        for m in METRICS:
            out[f"theory{suffix}_{m}"] = th[m]
            if m in rec:
                out[f"gap{suffix}_{m}"] = rec[m] / th[m] - 1 if th[m] else None
    return out


def speed(model: torch.nn.Module) -> float:
    """``|grad|_F / |params|_F`` of the gradient left by the last evaluation: ``|dW/dt| / |W|`` for GD."""
    grad = sum(float(q.grad.detach().double().pow(2).sum()) for q in model.parameters() if q.grad is not None)
    norm = sum(float(q.detach().double().pow(2).sum()) for q in model.parameters())
    return (grad / norm) ** 0.5 if norm > 0 else float("inf")


def converge(sim: Simulation, s: Settings, checkpoint: Path | None = None, key: str | None = None) -> dict:
    """Step ``sim`` in chunks until the criterion of the module docstring holds or ``t_max``.

    With ``checkpoint``, the simulation and its chunk records are saved there after every chunk and a
    run finds them on its next start (``key``, the point's hash, must match): a killed point resumes at
    its last chunk, which matters at d >= 512 where one point takes hours on a CPU. The caller removes
    the file once the result is cached.

    Returns the last record's metrics with ``t``, ``steps``, ``converged``, ``rel_change`` (of the
    last chunk), ``grad_rel``, ``ascent_fraction`` (steps where the objective rose by > 10 %) and
    ``resumed_wall_s`` (the wall time of the runs before a resume, 0 without one).
    """
    chunk, last_step = max(1, round(s.chunk_t / s.h)), max(1, round(s.t_max / s.h))
    state = load_checkpoint(checkpoint, key) if checkpoint is not None else None
    t0 = time.perf_counter()
    if state is None:
        records, before = [], 0.0
        sim.run(0, record_steps=[0], on_record=records.append)
    else:
        sim.load_state_dict(state["sim"])
        records, before = state["records"], state["wall_s"]
    while True:
        target = min(sim.step + chunk, last_step)
        sim.run(target, record_steps=[target], on_record=records.append)
        prev, rec = records[-2], records[-1]
        change = max(abs(rec[m] - prev[m]) / abs(rec[m]) if rec[m] else abs(prev[m]) for m in ("mse", "train_loss"))
        grad_rel = speed(sim.student)
        done = change <= s.rtol and grad_rel <= s.gtol
        if done or target >= last_step:
            return {**{m: float(rec[m]) for m in METRICS if m in rec}, "t": float(rec["t"]), "steps": int(rec["step"]),
                    "converged": bool(done), "rel_change": float(change), "grad_rel": float(grad_rel),
                    "ascent_fraction": sim.guard.ascents / max(1, sim.step), "resumed_wall_s": before}
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"key": key, "sim": sim.state_dict(), "records": records,
                                         "wall_s": before + time.perf_counter() - t0})


def measure(cfg: dict, threads: int | None = None, checkpoint: Path | None = None) -> dict:
    """Run one point to convergence (resuming from ``checkpoint``, see :func:`converge`); the result
    columns of its cache file. ``wall_s`` counts the runs before a resume too."""
    p = problem(cfg)
    s = Settings(**{k: cfg[k] for k in Settings.__dataclass_fields__})
    device = resolve_device(s.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(threads, p.d))
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the oscillation warning is recorded as ascent_fraction instead
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            sim = Simulation(p, h=s.h, seed=cfg["seed"], device=s.device, precision=s.precision, design=cfg["design"])
            rec = converge(sim, s, checkpoint, point_hash(cfg))
            status = "converged" if rec["converged"] else "not_converged"
        except DivergenceError as err:
            rec, status = {"converged": False, "error": str(err), "t": err.step * s.h, "steps": err.step}, "diverged"
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"status": status, **rec, "wall_s": rec.get("resumed_wall_s", 0.0) + time.perf_counter() - t0, "threads": torch.get_num_threads(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "torch": torch.__version__, **theory_columns(cfg, rec)}


def label(cfg: dict) -> str:
    return f"{cfg['regime']} d={cfg['d']} seed={cfg['seed']}"


def progress(r: dict) -> str:
    if r["status"] == "diverged":
        return f"diverged at t={r['t']:g} ({r['wall_s']:.1f} s)"
    gaps = ", ".join(f"{m} {r[m]:.4g} ({100 * r[f'gap_{m}']:+.1f} %)" for m in ("mse", "train_loss"))
    return (f"{r['status']} at t={r['t']:g}: {gaps} vs theory; change {r['rel_change']:.1e}, "
            f"|dW/dt|/|W| {r['grad_rel']:.1e}, {r['wall_s']:.1f} s")


def group_key(cfg: dict) -> str:
    """A point's series: its config without d and seed (one extrapolation each)."""
    return json.dumps({k: v for k, v in cfg.items() if k not in ("d", "seed")}, sort_keys=True)


def metric_summary(points: list[dict], m: str) -> dict:
    """Per-d statistics of metric ``m`` over converged points and their extrapolation to d -> infinity."""
    ok = [pt for pt in points if pt["result"]["status"] == "converged" and pt["result"].get(m) is not None]
    th = points[0]["result"][f"theory_{m}"]
    out = {"theory": th, "per_d": [], "extrapolation": None, "refused": {}}
    if not ok:
        out["refused"] = {"all": "no converged point"}
        return out
    d = [pt["config"]["d"] for pt in ok]
    values = [pt["result"][m] for pt in ok]
    stats = per_size(d, values)
    for k, size in enumerate(stats["sizes"]):
        realised = next(pt["result"][f"theory_realised_{m}"] for pt, dd in zip(ok, d) if dd == size)
        mean = stats["mean"][k]
        out["per_d"].append({"d": int(size), "seeds": int(stats["n_seeds"][k]), "mean": mean, "std": stats["std"][k],
                             "sem": stats["sem"][k], "gap": mean / th - 1 if th else None,
                             "theory_realised": realised, "gap_realised": mean / realised - 1 if realised else None})
    ex, out["refused"] = extrapolate_or_explain(d, values, theory=th if th else None)
    out["extrapolation"] = None if ex is None else ex.to_dict()
    return out


def summarise(points: list[dict]) -> dict:
    """The summary of every series of cached points (keyed by regime name; ``name#k`` if a name has several)."""
    groups: dict[str, list[dict]] = {}
    for pt in points:
        groups.setdefault(group_key(pt["config"]), []).append(pt)
    summary, names = {}, {}
    for key, pts in sorted(groups.items(), key=lambda kv: (kv[1][0]["config"]["regime"], kv[0])):
        cfg = {k: v for k, v in pts[0]["config"].items() if k not in ("d", "seed")}
        name = cfg["regime"]
        names[name] = names.get(name, 0) + 1
        label = name if names[name] == 1 else f"{name}#{names[name]}"
        summary[label] = {"config": cfg, "points": len(pts),
                          "converged": sum(p["result"]["status"] == "converged" for p in pts),
                          "wall_s": sum(p["result"]["wall_s"] for p in pts),
                          "metrics": {m: metric_summary(pts, m) for m in METRICS}}
    return summary


def _pm(value: float | None, error: float | None, scale: float = 1.0, fmt: str = ".1f", sign: str = "+") -> str:
    if value is None:
        return "-"
    return f"{scale * value:{sign}{fmt}}" + ("" if error is None else f" +- {scale * error:{fmt}}")


def markdown_table(summary: dict, metrics: tuple[str, ...] = ("mse", "train_loss")) -> str:
    """The gap table of docs/validation.md from :func:`summarise`'s output, one row per regime and metric.

    Columns: the theory; per d the gap of the seed mean in % with the seed std relative to the mean and
    the number of seeds (``-`` where a regime has no point at that d); the extrapolated value with its
    model; its gap to the theory in %; the exponent p of the gap law ``|gap| = b d^-p``; and the d at
    which that law predicts a 5 % and a 2 % gap (``never`` where the gap does not shrink with d).
    """
    sizes = sorted({r["d"] for g in summary.values() for m in metrics for r in g["metrics"][m]["per_d"]})
    head = (["regime", "(kappa, kappa*, alpha, lam, Delta)", "metric", "theory"]
            + [f"d={d}: gap (seed s.d., n)" for d in sizes]
            + ["extrapolated (model)", "gap of extrapolation", "p of gap law", "d for 5 % / 2 %"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, g in summary.items():
        params = "(" + ", ".join(f"{g['config'][k]:g}" for k in PARAMS) + ")"
        for m in metrics:
            ms = g["metrics"][m]
            by_d = {r["d"]: r for r in ms["per_d"]}
            cells = [label, params, m, f"{ms['theory']:.4g}"]
            for d in sizes:
                r = by_d.get(d)
                if r is None or r["gap"] is None:
                    cells.append("-")
                    continue
                std = r["std"]
                spread = f"{100 * std / r['mean']:.1f} %, " if std is not None and math.isfinite(std) else ""
                cells.append(f"{100 * r['gap']:+.1f} % ({spread}{r['seeds']})")
            ex = ms["extrapolation"]
            if ex is None:
                cells += ["refused", "-", "-", "-"]
            else:
                law, at = ex.get("gap_law") or {}, (ex.get("gap_sizes") or {}).get("gap", {})
                reach = [("never" if at.get(q) is None else f"{at[q]:.0f}") for q in ("0.05", "0.02")]
                cells += [f"{ex['value']:.4g} +- {ex['error']:.2g} ({ex['model']})",
                          _pm(ex.get("gap"), ex.get("gap_err"), 100) + " %",
                          _pm(law.get("p"), law.get("p_err"), fmt=".2f", sign=""), " / ".join(reach)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(out: Path, log=print) -> dict:
    """Write ``out/points.csv``, ``out/summary.json`` and ``out/table.md`` from the cache alone; return
    the summary."""
    if not (Path(out) / "points").is_dir():
        raise SystemExit(f"error: no cached points under {Path(out) / 'points'}: run the measurement first")
    points = load_points(out)
    rows = [{**pt["config"], **pt["result"], "hash": point_hash(pt["config"])} for pt in points]
    rows.sort(key=lambda r: (r["regime"], r["d"], r["seed"], r["hash"]))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(out) / "points.csv", buf.getvalue())
    summary = {"points": len(points), "regimes": summarise(points)}
    atomic_write_text(Path(out) / "summary.json", dumps(summary, indent=1))
    atomic_write_text(Path(out) / "table.md", markdown_table(summary["regimes"]))
    for label, g in summary["regimes"].items():
        mse = g["metrics"]["mse"]
        ex = mse["extrapolation"]
        fit = "refused" if ex is None else f"{ex['value']:.4g} +- {ex['error']:.2g} ({ex['model']})"
        log(f"{label}: {g['converged']}/{g['points']} converged; mse at d -> inf {fit}, theory {mse['theory']:.4g}")
    return summary


def check(configs: list[dict], s: Settings, seeds: int) -> None:
    """Every value in range before the first point starts (ValueError naming the first bad one)."""
    if seeds < 1:
        raise ValueError(f"--seeds must be an integer >= 1, got {seeds}")
    for name in ("h", "chunk_t", "rtol", "gtol", "t_max"):
        value = getattr(s, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value!r}")
    resolve_precision(s.precision)
    for cfg in configs:
        problem(cfg)


def parse_args(argv):
    ap = parser(__doc__, out_help="results folder (points/, points.csv, summary.json)",
                report_help="only write points.csv and summary.json from the cache")
    ap.add_argument("--regimes", default="A,B,C,D", help=f"comma-separated regime names (built in: {','.join(REGIMES)})")
    ap.add_argument("--regime", action="append", default=[], metavar="NAME:key=value,...",
                    help="override a regime's kappa, kappa_star, alpha, lam, Delta (or define a new one)")
    ap.add_argument("--sizes", default="64,128,256", help="comma-separated d")
    ap.add_argument("--seeds", type=int, default=6, help="seeds 0..N-1 per regime and d")
    ap.add_argument("--design", default="gaussian", choices=("gaussian", "goe"),
                    help="real Gaussian inputs (default) or the GOE design")
    defaults = Settings()
    for name, kind in (("h", float), ("precision", str), ("device", str), ("chunk_t", float), ("rtol", float),
                       ("gtol", float), ("t_max", float)):
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind, default=getattr(defaults, name),
                        help=f"default {getattr(defaults, name)}")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: about one per 128 of d)")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    """The command line; returns the counts of the run (``computed``, ``cached``, ``failed``, ``left``)."""
    args = parse_args(argv)
    counts = {"computed": 0, "cached": 0, "failed": 0, "left": 0}
    if not args.report:
        settings = Settings(h=args.h, precision=args.precision, device=resolve_device(args.device).type,
                            chunk_t=args.chunk_t, rtol=args.rtol, gtol=args.gtol, t_max=args.t_max)
        configs = plan(parse_regimes(args.regimes, args.regime), parse_sizes(args.sizes), args.seeds, settings,
                       args.design)
        check(configs, settings, args.seeds)
        counts = run_points(configs, args.out, max_minutes=args.max_minutes, label=label, line=progress,
                            checkpoints=True, measure=lambda cfg, partial: measure(cfg, args.threads, partial))
        print(f"computed {counts['computed']}, cached {counts['cached']}, failed {counts['failed']}, "
              f"left {counts['left']}", flush=True)
    report(args.out)
    return counts


if __name__ == "__main__":
    try:
        sys.exit(1 if main()["failed"] else 0)
    except ValueError as err:  # bad input: one line, exit code 2 (as scripts/run.py)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
