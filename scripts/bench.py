"""Benchmark dispatcher: run suites from ``scripts/benchmarks/`` and write one JSON document.

    python scripts/bench.py                           # every suite, full sizes, CPU
    python scripts/bench.py --suite sim --quick       # smoke run (seconds)
    python scripts/bench.py --device auto --out bench.json
    python scripts/bench.py --suite sim --sizes 256,512 --precisions fp32,fp64
    python scripts/bench.py --suite dmft --speed-only --sizes 128 --threads 2

Each suite is a module ``scripts/benchmarks/<name>.py`` exposing
``run(quick=False, device="cpu") -> dict``; it is imported only when asked
for, called with the keyword arguments its ``run`` accepts, and skipped with
a note when its module does not exist. A suite that raises is recorded with
its error and the others still run (exit status 1). ``--sizes``,
``--precisions``, ``--threads`` and ``--speed-only`` reach the suites whose ``run`` takes them. Progress goes to stderr;
stdout carries only the JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parent
SUITES = ("sim", "longtime", "dmft", "replicas")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default=",".join(SUITES),
                        help=f"comma-separated suites among {', '.join(SUITES)} (default: all that exist)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--sizes", type=_int_list, help="comma-separated sizes d, replacing the suite's own "
                        "(suites whose run takes sizes: sim, replicas; dmft: the d_eff of its speed sizes)")
    parser.add_argument("--precisions", type=_name_list, help="comma-separated precision modes among fp64, fp32, "
                        "tf32, bf16, replacing the suite's own (suites whose run takes precisions: sim)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (suites whose run takes threads: dmft)")
    parser.add_argument("--speed-only", action="store_true", help="the solver-speed comparison alone "
                        "(suites whose run takes speed_only: dmft)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    args.suite = _name_list(args.suite)
    unknown = sorted(set(args.suite) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose among {', '.join(SUITES)}")
    return args


def _name_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(s) for s in _name_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def load_suite(name: str):
    """The ``run`` function of ``benchmarks.<name>``, or None when that module does not exist."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    module_name = f"benchmarks.{name}"
    try:
        return importlib.import_module(module_name).run
    except ModuleNotFoundError as err:
        if err.name == module_name:
            return None
        raise


def call_suite(run, **options):
    """Call ``run`` with the options its signature accepts (suites differ, e.g. no ``device``)."""
    params = inspect.signature(run).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return run(**options)
    return run(**{k: v for k, v in options.items() if k in params})


def run_suite(name: str, quick: bool, device: str, **options) -> dict:
    """One suite's result with its wall time; ``skipped`` or ``error`` entries instead when it cannot run.

    ``options`` set to None are not passed (the suite keeps its default)."""
    t0 = time.perf_counter()
    try:
        run = load_suite(name)
        if run is None:
            return {"skipped": f"scripts/benchmarks/{name}.py does not exist (yet)"}
        with contextlib.redirect_stdout(sys.stderr):
            given = {k: v for k, v in options.items() if v is not None}
            result = call_suite(run, quick=quick, device=device, **given)
    except Exception as err:  # noqa: BLE001 - recorded, the other suites still run
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(err).__name__}: {err}", "wall_seconds": time.perf_counter() - t0}
    return {"wall_seconds": time.perf_counter() - t0, "result": result}


def machine_info(device: str) -> dict:
    """Versions, CPU, threads and accelerator of this run."""
    info = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device, "git_commit": git_commit(), "loadavg_start": load_average()}
    if device == "cuda":
        info.update(cuda=torch.version.cuda, device_name=torch.cuda.get_device_name(),
                    device_memory_bytes=torch.cuda.get_device_properties(0).total_memory)
    else:
        info["device_name"] = info["cpu"]
    return info


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (other processes sharing the CPU skew CPU timings)."""
    with contextlib.suppress(OSError, AttributeError):
        return list(os.getloadavg())
    return None


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """HEAD of the checkout the script runs from (None outside git)."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=SCRIPTS, capture_output=True, text=True,
                              check=True).stdout.strip()
    return None


def jsonable(obj):
    """Plain JSON types: numpy/torch scalars and arrays to numbers and lists, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from quadflow.runtime.device import resolve_device

    device = resolve_device(args.device).type
    report = {"command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
              "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "quick": args.quick, "machine": machine_info(device), "suites": {}}
    for name in args.suite:
        print(f"[bench] suite {name} ...", file=sys.stderr, flush=True)
        report["suites"][name] = run_suite(name, args.quick, device, sizes=args.sizes, precisions=args.precisions,
                                           threads=args.threads, speed_only=args.speed_only or None)
    report["machine"]["loadavg_end"] = load_average()
    text = json.dumps(jsonable(report), indent=2, allow_nan=False)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 1 if any("error" in r for r in report["suites"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
