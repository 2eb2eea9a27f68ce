"""Several processes of one run agree on one folder (torchrun, srun without submitit); a job pre-empted by
its time-limit signal checkpoints, is requeued by submitit and continues where it stopped; an interrupted run
says which command continues it."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = str(ROOT / "scripts" / "run.py")
ARGS = ["problem.d=16", "problem.alpha=40", "problem.lam=0.05", "trainer.steps=30", "precision=fp64", "theory=[]",
        "tracking.wandb.mode=disabled", "tracking.plots=false", "progress=false", "device=cpu", "record.points=10"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run_folders(base: Path) -> list[Path]:
    return sorted(p for p in (base / "outputs").glob("*/*") if p.is_dir())


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_srun_tasks_without_submitit_share_one_folder(tmp_path):
    """`srun -n 2 python scripts/run.py ...`: RANK etc. come from SLURM's variables (no submitit), the ranks
    meet at rank 0's address and port, rank 0 picks the folder, and the result equals one process's."""
    single = tmp_path / "single"
    subprocess.run([sys.executable, RUN, *ARGS, f"hydra.run.dir={single}"], cwd=ROOT, env=ENV, check=True,
                   capture_output=True, timeout=300)
    slurm = {"SLURM_NTASKS": "2", "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "localhost"}
    procs = [subprocess.Popen([sys.executable, RUN, *ARGS], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**ENV, **slurm, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)})
             for r in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = _run_folders(tmp_path)
    assert len(folders) == 1, folders  # the folder Hydra made for rank 1 was removed
    assert json.loads((folders[0] / "summary.json").read_text())["world_size"] == 2
    a, b = _metrics(single), _metrics(folders[0])
    np.testing.assert_allclose([r["sim/mse"] for r in b], [r["sim/mse"] for r in a], rtol=1e-9)


def test_torchrun_without_run_dir_makes_one_folder(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29533", RUN, *ARGS], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = _run_folders(tmp_path)
    assert len(folders) == 1 and (folders[0] / "metrics.jsonl").exists(), folders


def test_sigterm_names_the_folder_and_the_command_that_continues_the_run(tmp_path):
    """The interrupted run's message names its folder and the command (its overrides, ``resume=false`` left out,
    ``hydra.run.dir``) that continues it; that command, run as printed, resumes at the step where it stopped."""
    out = tmp_path / "run"
    args = ["problem.d=12", "problem.alpha=2", "trainer.steps=5000", "theory=[]", "tracking.wandb.mode=disabled",
            "tracking.plots=false", "progress=false", "device=cpu", "record.points=10", "checkpoint.every=0",
            "resume=false"]
    proc = subprocess.Popen([sys.executable, RUN, *args, f"hydra.run.dir={out}"], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stdout[-2000:] + stderr[-2000:]
    step = json.loads((out / "summary.json").read_text())["steps_done"]
    (message,) = [x for x in stderr.splitlines() if x.startswith("run interrupted:")]
    assert f"received signal {int(signal.SIGTERM)} at step {step}; checkpointed in {out}; continue it with: " in message
    command = shlex.split(message.split("continue it with: ", 1)[1])
    assert command == ["python", RUN, *[a for a in args if a != "resume=false"], f"hydra.run.dir={out}"]
    done = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"resuming from {out / 'checkpoint.pt'} at step {step}" in done.stdout
    assert json.loads((out / "summary.json").read_text())["steps_done"] == 5000
    steps = [r["step"] for r in _metrics(out)]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 5000


@pytest.mark.slow
def test_submitit_timeout_requeues_and_resumes(tmp_path):
    """submitit's local executor, a 1-minute limit (USR2 30 s before it), a job needing about 2.5 minutes: the
    job checkpoints on the signal, is requeued with the same overrides, resumes in its folder and finishes
    all its steps on one unbroken time axis. Measured wall time: see docs/reliability.md."""
    sweep = tmp_path / "sweep"
    steps = 6000
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1", "+hydra.launcher.max_num_timeout=6",
            "problem.d=24", "problem.alpha=60", f"trainer.steps={steps}", "theory=[]", "tracking=local",
            "tracking.plots=false", "checkpoint.every=500", "record.points=80", "precision=fp64", "device=cpu",
            f"hydra.sweep.dir={sweep}"]
    t0 = time.time()
    proc = subprocess.run([sys.executable, RUN, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=900)
    wall = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps_done"] == steps, summary
    rows = _metrics(sweep / "0")
    steps_seen = [r["step"] for r in rows]
    assert steps_seen == sorted(set(steps_seen)) and steps_seen[0] == 0 and steps_seen[-1] == steps
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))  # stdout and stderr of each try
    resumed = logs.count("resuming from")
    print(f"requeue test wall time {wall:.0f} s; resumed {resumed} times")
    assert wall > 60 and resumed >= 1  # it really outlived one allocation and continued from its checkpoint
