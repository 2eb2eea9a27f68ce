"""Hydra launchers beyond the basic one: joblib (local parallel) and submitit's local executor."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["problem.d=10", "trainer.steps=30", "theory=[population]", "tracking.wandb.mode=disabled",
        "problem.alpha=1,2"]


@pytest.mark.parametrize("launcher", ["local_parallel", "submitit_local"])
def test_sweep_with_launcher(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/run.py"), "-m", f"hydra/launcher={launcher}", *ARGS,
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    alphas = sorted(json.loads((sweep / j / "summary.json").read_text())["problem"]["alpha"] for j in ("0", "1"))
    assert alphas == [1.0, 2.0]
    assert [r["status"] for r in json.loads((sweep / "sweep_summary.json").read_text())] == ["ok", "ok"]
