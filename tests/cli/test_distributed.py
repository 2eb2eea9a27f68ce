"""One run sharded over 2 gloo processes (torchrun) equals the single-process run; rank 0 alone checkpoints and
logs, and a killed sharded run continues from its checkpoint."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_reliability import kill_after_checkpoint

import quadflow.train.callbacks as callbacks
from quadflow.io import read_jsonl
from quadflow.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["problem.d=16", "problem.alpha=40", "problem.lam=0.05", "problem.Delta=0.1", "trainer.steps=40",
        "precision=fp64", "theory=[]", "tracking.wandb.mode=disabled", "tracking.plots=false", "progress=false",
        "device=cpu", "record.points=20"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("student, replicas", [("quadratic", 1), ("second_layer", 1), ("quadratic", 2)])
def test_two_gloo_ranks_match_single_process(tmp_path, student, replicas):
    """n = 10240 samples = 3 generation blocks, split 2 + 1 over the ranks; sums are all-reduced.

    ``second_layer`` trains by chunked autograd: its gradients are summed over ranks the same way. With
    ``replicas=2`` each rank holds its share of both replicas' samples, and the replica axis is all-reduced too.

    The trajectories differ only by the order of floating-point additions: fp64 gives ~1e-13
    relative differences after 40 steps; tolerance 1e-9.
    """
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    args = [*ARGS, f"student={student}", f"replicas={replicas}"]
    subprocess.run([sys.executable, str(ROOT / "scripts/run.py"), *args, f"hydra.run.dir={single}"],
                   cwd=ROOT, env=ENV, check=True, capture_output=True, timeout=300)
    proc = subprocess.run([str(TORCHRUN), "--nproc_per_node=2", "--master_port=29517", str(ROOT / "scripts/run.py"),
                           *args, f"hydra.run.dir={sharded}"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _metrics(single), _metrics(sharded)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    keys = ("sim/mse", "sim/train_loss", "sim/in_sample_error") + (("sim/rank_fraction",) if student == "quadratic" else ())
    for key in keys + tuple(f"replicas/{r}/mse" for r in range(replicas if replicas > 1 else 0)):
        np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=1e-9, err_msg=key)
    assert json.loads((sharded / "summary.json").read_text())["world_size"] == 2


def _kill_with_workers(pid: int) -> None:
    """SIGKILL to torchrun's process group and to its workers', which it starts in sessions of their own (Linux)."""
    groups = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                groups.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    for group in groups:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(group, signal.SIGKILL)


def test_checkpointer_writes_on_rank_0_only(tmp_path, monkeypatch):
    """Every rank has a Checkpointer; the others neither build the state nor touch the file."""
    built = []
    checkpointer = callbacks.Checkpointer(every=1, path=tmp_path / "checkpoint.pt",
                                          state=lambda: built.append(1) or {"step": 1})
    monkeypatch.setattr(callbacks, "world", lambda: (1, 2))
    checkpointer.save()
    assert built == [] and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(callbacks, "world", lambda: (0, 2))
    checkpointer.save()
    assert built == [1] and load_checkpoint(tmp_path / "checkpoint.pt") == {"step": 1}


def test_torchrun_passes_its_checkpoints_and_continues_after_a_kill(tmp_path):
    """Checkpoints every 50 steps: the sharded run passes two, is killed (SIGKILL to every process), and the same
    command (resume=auto) continues in its folder from the last checkpoint on both ranks. The rows recorded after
    that checkpoint before the kill come out the same, and each log line is printed once (by rank 0)."""
    out, steps = tmp_path / "run", 1000
    args = [*(a for a in ARGS if not a.startswith(("trainer.steps", "record.points"))), f"trainer.steps={steps}",
            "record.every=10", "checkpoint.every=50", f"hydra.run.dir={out}"]
    command = [str(TORCHRUN), "--nproc_per_node=2", "--master_port=29541", str(ROOT / "scripts/run.py"), *args]
    with open(tmp_path / "killed.log", "w") as log:
        first = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    kill_after_checkpoint(first, out / "checkpoint.pt", 100, _kill_with_workers, tmp_path / "killed.log")
    before = read_jsonl(out / "metrics.jsonl")
    proc = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    resumed = [int(s) for s in re.findall(r"resuming from \S+ at step (\d+)", proc.stdout)]
    assert len(resumed) == 1 and resumed[0] >= 100 and resumed[0] % 50 == 0, proc.stdout[-3000:]
    assert proc.stdout.count("| theories: none |") == 1, proc.stdout[-3000:]  # the start line
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(0, steps + 1, 10))
    assert rows[:len(before)] == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps_done"] == steps and summary["world_size"] == 2
    assert not (out / "checkpoint.pt.tmp").exists()
