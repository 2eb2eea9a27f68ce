"""Multirun bookkeeping: which jobs of a sweep failed and why (read from their summary.json)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def sweep_failures(sweep_dir: Path) -> list[dict]:
    """Status of every job of a multirun folder (from its summary.json), failed ones first."""
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/summary.json")):
        try:
            s = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            s = {"status": "failed", "error": f"unreadable summary: {err}"}
        rows.append({"job": path.parent.name, "status": s.get("status"), "error": s.get("error")})
    job_dirs = {p.name for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").exists()}
    for missing in sorted(job_dirs - {r["job"] for r in rows}):
        rows.append({"job": missing, "status": "failed", "error": "no summary.json (crashed before the end)"})
    return sorted(rows, key=lambda r: (r["status"] == "ok", r["job"]))


def print_sweep_table(rows: list[dict], file=sys.stdout) -> None:
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"sweep: {len(rows) - len(failed)}/{len(rows)} jobs ok", file=file)
    for r in failed:
        print(f"  job {r['job']}: {r['status']}: {r['error']}", file=file)
