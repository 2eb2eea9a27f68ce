"""What a run gives W&B besides its charts: its name, and its files as an artifact holding the final summary.json."""
import json
import os
import subprocess
import sys
from pathlib import Path

from quadflow.cli.app import run_name

ROOT = Path(__file__).resolve().parents[2]
WANDB_CLI = Path(sys.executable).with_name("wandb")


def test_runs_are_named_by_their_overrides_and_default_without_any():
    assert run_name("") == "default"  # a run of the default config: no timestamp
    assert run_name("problem.alpha=2,trainer.h=0.1") == "problem.alpha=2,trainer.h=0.1"
    assert run_name("problem.alpha=2", 3) == "3:problem.alpha=2" and run_name("", 0) == "0:default"


def test_the_artifact_holds_the_final_summary_and_the_run_its_overrides_as_name(tmp_path):
    out, data = tmp_path / "run", tmp_path / "wandb-data"  # W&B's folders out of the user's home
    overrides = ["problem.d=8", "trainer.steps=20", "theory=[longtime]", "record.points=8",
                 "record.spectrum_points=1", "tracking.wandb.mode=offline", "tracking.plots=false"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DATA_DIR": str(data), "WANDB_CACHE_DIR": str(data),
           "WANDB_CONFIG_DIR": str(data), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), *overrides, f"hydra.run.dir={out}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    inspect = subprocess.run([str(WANDB_CLI), "leet", "inspect", "--json", str(run_file)], capture_output=True,
                             text=True, timeout=120)
    records = [json.loads(line) for line in inspect.stdout.splitlines() if line.startswith("{")]
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert run["display_name"] == ",".join(sorted(overrides))  # Hydra's override_dirname: sorted
    (files,) = [r["artifact"] for r in records if r["type"] == "artifact" and r["artifact"]["type"] == "run-files"]
    staged = {c["path"]: Path(c["local_path"]) for c in files["manifest"]["contents"]}
    final = json.loads((out / "summary.json").read_text())
    assert "objective" in final and json.loads(staged["summary.json"].read_text()) == final
