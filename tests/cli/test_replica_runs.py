"""``replicas=R`` through the app: the logged mean, standard error and replicas equal R separate runs; a killed
run of replicas resumes to the uninterrupted one; the sweep check refuses what a run would; the W&B band."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from test_reliability import kill_after_checkpoint

from quadflow.cli.build import ConfigError
from quadflow.cli.validate import validate_config
from quadflow.io import read_jsonl
from quadflow.logging.charts import BAND, overlay_series

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ARGS = ["problem.d=12", "problem.alpha=2", "problem.lam=0.05", "problem.Delta=0.1", "precision=fp64",
        "theory=[longtime]", "tracking.wandb.mode=disabled", "tracking.plots=false", "progress=false", "device=cpu"]
METRICS = ("mse", "train_loss", "in_sample_error", "trace", "loss_reg")


def _run(args, out):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/run.py"), *args, f"hydra.run.dir={out}"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_jsonl(out / "metrics.jsonl")


def test_the_logged_mean_error_and_replicas_equal_separate_runs(tmp_path):
    """fp64, 3 replicas against the runs seed=4, 5, 6: ``replicas/<r>/<m>`` equals run r within 1e-9 (batched GEMMs
    sum in another order), ``sim/<m>`` is their mean and ``sim/<m>_se`` their sample std over sqrt 3."""
    args = [*ARGS, "trainer.steps=40", "record.points=10", "seed=4"]
    joint = _run([*args, "replicas=3"], tmp_path / "joint")
    single = [_run([*args[:-1], f"seed={4 + r}"], tmp_path / f"seed{r}") for r in range(3)]
    for row, *ones in zip(joint, *single):
        for m in METRICS:
            values = np.array([one[f"sim/{m}"] for one in ones])
            np.testing.assert_allclose([row[f"replicas/{r}/{m}"] for r in range(3)], values, rtol=1e-9, err_msg=m)
            assert row[f"sim/{m}"] == pytest.approx(values.mean(), rel=1e-9)
            assert row[f"sim/{m}_se"] == pytest.approx(values.std(ddof=1) / np.sqrt(3), rel=1e-6, abs=1e-15)
        assert row["theory/longtime/mse"] == ones[0]["theory/longtime/mse"]
    summary = json.loads((tmp_path / "joint" / "summary.json").read_text())
    assert summary["replicas"] == 3 and summary["status"] == "ok" and len(summary["loss_scale"]) == 3


def test_a_killed_run_of_replicas_continues_to_the_uninterrupted_one(tmp_path):
    """SIGKILL after a checkpoint, then the same command: the metrics equal the uninterrupted run's bitwise."""
    args = [*ARGS, "replicas=2", "trainer.steps=6000", "record.points=60", "checkpoint.every=500"]
    ref = _run(args, tmp_path / "ref")
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts/run.py"), *args, f"hydra.run.dir={out}"], cwd=ROOT,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    kill_after_checkpoint(proc, out / "checkpoint.pt", 1000, lambda pid: os.killpg(pid, signal.SIGKILL),
                          out / "run.log")
    assert not (out / "summary.json").exists()
    assert _run(args, out) == ref


@pytest.mark.parametrize("overrides, needle", [
    (["replicas=0"], "replicas=0 is out of range: allowed an integer >= 1"),
    (["replicas=2", "~optim", "+optim._target_=torch.optim.LBFGS", "+optim._partial_=true", "+optim.lr=0.05"],
     "L-BFGS would couple the replicas"),
])
def test_the_sweep_check_refuses_what_a_run_of_replicas_would(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate_config(compose_config(*overrides), local=False)


def test_the_memory_check_of_a_sweep_counts_every_replica():
    """A point whose replicas do not fit is a sweep warning (that job fails at build, the others run)."""
    notes = validate_config(compose_config("problem.d=160", "problem.alpha=0.5", "replicas=200000"))
    assert notes and "fewer replicas (now 200000" in notes[0]


def test_the_wandb_chart_of_replicas_has_the_band_of_their_mean():
    rows = [{"t": t, "sim/mse": 1.0 / (1 + t), "sim/mse_se": 0.1 / (1 + t), "theory/dmft/mse": 1.0 / (1 + t)}
            for t in (0.0, 1.0, 2.0)]
    series = overlay_series(rows, "mse")
    assert set(series) == {"simulation", *BAND, "theory: dmft"}
    assert [y for _, y in series[BAND[0]]] == pytest.approx([0.9, 0.45, 0.3])
    assert [y for _, y in series[BAND[1]]] == pytest.approx([1.1, 0.55, 0.3 + 0.1 / 3 * 2])
