"""A run's status and exit code: students without S() end ok at the default step; a run that did not descend
as a smaller step would ends unstable (exit code 3), not ok."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config

from quadflow.cli.job import EXIT_CODES, run_job

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["device=cpu", "theory=[]", "tracking.wandb.mode=disabled", "tracking.plots=false", "progress=false"]


@pytest.mark.parametrize("student", ["student=quadratic", "student=second_layer", "student._target_=students.TanhMLP"])
def test_students_end_ok_at_the_default_step(student, tmp_path):
    """trainer.h = 0.05 and 600 steps (the defaults) at d = 24, where both autograd students diverged at
    step 3-4 on the unscaled loss; only they get a loss scale below 1."""
    summary = run_job(compose_config("problem.d=24", *SMALL, student), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "ok", summary["error"]
    assert summary["steps_done"] == 600 and rows[-1]["sim/train_loss"] < 0.1 * rows[0]["sim/train_loss"]
    assert (summary["loss_scale"] == 1.0) == (student == "student=quadratic")


def test_unstable_run_has_its_own_status_and_exit_code(tmp_path):
    """optim=rk4 trainer.h=0.2 on the default problem oscillates (mse 0.47 against 0.0026 at h <= 0.11)."""
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), "optim=rk4", "trainer.h=0.2", *SMALL,
                           f"hydra.run.dir={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_CODES["unstable"] == 3, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "unstable" and summary["steps_done"] == 600
    assert summary["error"].startswith("the objective rose by over 10%") and "RK4 oscillates" in summary["error"]
    assert f"run unstable: {summary['error']}" in proc.stderr
