"""The Hydra app end to end: files, W&B offline run, multirun, bad input, divergence, resume."""
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
# one BLAS thread: these problems are tiny, and threads only add synchronisation cost
SUBPROCESS_ENV = {"WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
SMALL = ["problem.d=12", "problem.alpha=2", "trainer.steps=60", "theory=[population,longtime]",
         "record.points=20", "record.spectrum_points=2", "tracking.wandb.mode=disabled"]


def run_app(args, env_extra=None, check=True, **kw):
    env = {**os.environ, **SUBPROCESS_ENV, **(env_extra or {})}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), *args], cwd=kw.pop("cwd", ROOT),
                          env=env, capture_output=True, text=True, timeout=kw.pop("timeout", 300))
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_documented_files(tmp_path):
    out = tmp_path / "run"
    run_app([*SMALL, "problem.lam=0.1", f"hydra.run.dir={out}"])
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "plots/curves.png", "plots/spectrum.png"):
        assert (out / name).exists(), name
    data = rows(out)
    assert [r["step"] for r in data] == sorted({r["step"] for r in data}) and data[-1]["step"] == 60
    for key in ("t", "sim/mse", "sim/train_loss", "sim/in_sample_error", "sim/rank_fraction",
                "theory/population/mse", "theory/longtime/mse"):
        assert key in data[-1], key
    assert data[-1]["t"] == pytest.approx(60 * 0.05)
    # the distance to the static solution, for the simulation and each trajectory theory
    for source in ("sim", "theory/population"):
        for m in ("loss_reg", "mse", "train_loss", "trace"):
            assert data[-1][f"{source}/{m}_excess"] == pytest.approx(data[-1][f"{source}/{m}"]
                                                                     - data[-1][f"theory/longtime/{m}"], abs=1e-12)
    assert not any(k.startswith("theory/longtime/") and k.endswith("_excess") for k in data[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps_done"] == 60
    assert summary["problem"]["n"] == 288 and "torch" in summary["versions"]
    assert "d: 12" in (out / "config.yaml").read_text()


def test_dmft_over_a_horizon_shorter_than_the_run(tmp_path):
    out = tmp_path / "run"
    run_app([*SMALL, "theory=[dmft,longtime]", "problem.lam=0.1", "theory.dmft.d_eff=12", "theory.dmft.max_steps=20",
             f"hydra.run.dir={out}"])
    data = rows(out)
    drawn = [r["step"] for r in data if "theory/dmft/mse" in r]
    assert drawn == [r["step"] for r in data if r["step"] <= 20] and data[-1]["step"] == 60
    assert "theory/longtime/mse" in data[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["theory/dmft/horizon_steps"] == 20 and summary["theory/dmft/horizon_t"] == pytest.approx(1.0)


def test_dmft_in_its_long_time_mode(tmp_path):
    out = tmp_path / "run"
    run_app([*SMALL, "theory=[dmft,longtime]", "problem.lam=0.1", "theory.dmft.d_eff=12",
             "theory.dmft.history=compressed", f"hydra.run.dir={out}"])
    data = rows(out)
    assert all("theory/dmft/mse" in r and np.isfinite(r["theory/dmft/loss_reg"]) for r in data)
    assert "theory/dmft/loss_reg_excess" in data[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["theory/dmft/history"] == "compressed" and summary["theory/dmft/horizon_steps"] == 60


def test_record_every_k_steps(tmp_path):
    out = tmp_path / "run"
    run_app([*SMALL, "theory=[]", "record.every=25", f"hydra.run.dir={out}"])
    assert [r["step"] for r in rows(out)] == [0, 25, 50, 60]


def test_wandb_offline_run_reads_back_with_wandb_tooling(tmp_path):
    """The offline run's history holds sim/ and theory/ series (read with `wandb leet inspect`)."""
    out = tmp_path / "run"
    run_app([*SMALL[:-1], "tracking.wandb.mode=offline", f"hydra.run.dir={out}"],
            env_extra={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)})
    run_files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    wandb_cli = Path(sys.executable).with_name("wandb")
    proc = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", str(run_files[0])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    history = [json.loads(line) for line in proc.stdout.splitlines() if '"history"' in line]
    text = "\n".join(json.dumps(h) for h in history)
    assert "sim/mse" in text and "theory/population/mse" in text and "theory/longtime/train_loss" in text
    assert len(history) >= 20


def test_multirun_two_jobs_and_sweep_summary(tmp_path):
    sweep = tmp_path / "sweep"
    run_app(["-m", *SMALL, "problem.lam=0.1", "problem.alpha=1,2", f"hydra.sweep.dir={sweep}"])
    summaries = [json.loads((sweep / j / "summary.json").read_text()) for j in ("0", "1")]
    assert [s["problem"]["alpha"] for s in summaries] == [1.0, 2.0]
    table = json.loads((sweep / "sweep_summary.json").read_text())
    assert {r["status"] for r in table} == {"ok"} and len(table) == 2


def test_failing_job_does_not_stop_the_sweep(tmp_path):
    """A diverging job is recorded as failed; the other job still runs; the table says why; exit code 1."""
    sweep = tmp_path / "sweep"
    proc = run_app(["-m", *SMALL, "trainer.h=0.05,50", f"hydra.sweep.dir={sweep}"], check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    table = json.loads((sweep / "sweep_summary.json").read_text())
    status = {r["job"]: r["status"] for r in table}
    assert status == {"0": "ok", "1": "diverged"}
    assert "1/2 jobs ok" in proc.stdout and "smaller step" in proc.stdout


@pytest.mark.parametrize("override,needle", [
    ("problem.kappa=-1", "problem.kappa must be"), ("trainer.h=0", "trainer.h=0.0 is out of range"),
    ("trainer.h=1e300", "trainer.h=1e+300 is out of range: allowed (0, 1000]"),
    ("device=tpu", "device must be one of"), ("precision=fp16", "precision must be one of"),
    ("problem.d=abc", "problem.d"), ("problem.d=20000", "needs about"),
    ("problem.d=1000000000", "no setting of data, precision or GPUs brings it below"),
    ("trainer.steps=1000000000000 theory=[dmft] theory.dmft.history=exact", "no theory.dmft.d_eff or samples brings it below"),
    ("trainer.steps=1000000000000 theory=[dmft]", "compressed (d_eff=64, samples=4) needs about"),
])
def test_bad_config_fails_before_work_with_a_clear_message(tmp_path, override, needle):
    proc = run_app([*SMALL, *override.split(), f"hydra.run.dir={tmp_path / 'run'}"], check=False,
                   env_extra={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 2
    assert needle in proc.stderr and len(proc.stderr.splitlines()) == 1  # one line, the traceback in run.log only
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_divergence_stops_with_message_and_keeps_metrics(tmp_path):
    out = tmp_path / "run"
    proc = run_app([*SMALL, "trainer.h=50", "record.points=60", "theory=[population]", f"hydra.run.dir={out}"],
                   check=False)
    assert proc.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and "trainer.h" in summary["error"] and "step" in summary["error"]
    assert len(rows(out)) >= 1 and rows(out)[0]["step"] == 0
    assert "diverged" in summary["theory/population/error"]  # a failing theory is recorded, not fatal


def test_progress_and_warnings_reach_the_console_and_run_log(tmp_path):
    """Without a terminal, progress lines with their ETA go to the console and run.log; a Python warning is one
    `warning: <message>` line on stderr (without its source line) and a line in run.log."""
    out = tmp_path / "run"
    proc = run_app([*SMALL, "theory=[]", "callbacks.progress.fraction=0.5", "resume=true", f"hydra.run.dir={out}"])
    progress = [line for line in proc.stdout.splitlines() if "step 30/60 (50 %)" in line]
    assert len(progress) == 1 and "steps/s ETA" in progress[0]
    log = (out / "run.log").read_text()
    assert "step 60/60 (100 %)" in log
    warnings = proc.stderr.splitlines()
    assert any("resume=true" in line for line in warnings)
    assert all(line.startswith("warning: ") and line[len("warning: "):] in log for line in warnings)


def test_progress_lines_go_to_run_log_only_under_a_terminal_bar(monkeypatch, caplog):
    from quadflow.train.callbacks import FILE_LOGGER, ProgressLog, duration

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    trainer = SimpleNamespace(step=0, steps=10**12, h=0.05, progress=True)
    for stderr, logger in ((Terminal(), FILE_LOGGER), (io.StringIO(), "quadflow")):
        monkeypatch.setattr(sys, "stderr", stderr)
        progress, trainer.step = ProgressLog(interval=1e-9), 0
        progress.on_fit_start(trainer)
        trainer.step = 1000  # far below 5 % of the steps: the line is due to the interval
        progress.on_evaluate(trainer, 0.0, SimpleNamespace(train_loss=0.5))
        caplog.clear()
        with caplog.at_level(logging.INFO):
            progress.on_step_end(trainer)
        assert [r.name for r in caplog.records] == [logger]
        assert "step 1000/1000000000000" in caplog.text and "train_loss=0.5" in caplog.text and "ETA" in caplog.text
    assert (duration(45), duration(3 * 3600), duration(4.1 * 86400)) == ("45 s", "3 h", "4.1 days")
    assert duration(1e11).endswith(" years")


def test_help_lists_groups_keys_optimiser_arguments_and_exit_codes():
    from quadflow.cli.job import EXIT_CODES

    text = run_app(["--help"]).stdout
    for needle in ("optim: adam, gd, momentum, rk4", "theory: dmft, longtime, population", "experiment: agreement_map",
                   "problem.kappa", "trainer.steps", "theory.dmft.d_eff", "device=auto|cpu|cuda", "seed=INT",
                   "resume=auto", "checkpoint.every", "tracking.wandb.mode", "+optim.momentum=0.9",
                   "--cfg job --resolve"):
        assert needle in text, needle
    codes = text.split("== Exit codes ==")[1]
    assert all(re.search(rf"(^|; ){code} ", codes, flags=re.M) for code in {*EXIT_CODES.values(), 2})


LONG = ["problem.d=12", "problem.alpha=2", "problem.lam=0.05", "trainer.steps=10000", "record.points=200",
        "record.spectrum_points=3", "precision=fp64", "theory=[population]", "tracking.wandb.mode=disabled",
        "tracking.plots=false", "progress=false"]


def _start(args):
    env = {**os.environ, **SUBPROCESS_ENV}
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path, proc, timeout=120):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout
        time.sleep(0.01)


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    """Kill -9 mid-run, resume=true in the same folder: the metrics equal an uninterrupted run bitwise (fp64, CPU)."""
    ref = tmp_path / "ref"
    run_app([*LONG, f"hydra.run.dir={ref}"])
    out = tmp_path / "killed"
    proc = _start([*LONG, "checkpoint.every=200", f"hydra.run.dir={out}"])
    _wait_for(out / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()  # it really died mid-way
    run_app([*LONG, "checkpoint.every=200", "resume=true", f"hydra.run.dir={out}"])
    a, b = rows(ref), rows(out)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert a == b
    sa = np.load(ref / "spectra.npz")
    sb = np.load(out / "spectra.npz")
    assert sorted(sa.files) == sorted(sb.files)
    for k in sa.files:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = _start([*LONG, "checkpoint.every=0", f"hydra.run.dir={out}"])
    _wait_for(out / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["steps_done"] < 10000
    assert (out / "checkpoint.pt").exists()
    run_app([*LONG, "resume=true", f"hydra.run.dir={out}"])
    assert json.loads((out / "summary.json").read_text())["steps_done"] == 10000


def test_wandb_group_names():
    from quadflow.cli.app import wandb_group

    assert wandb_group("double_descent", "12-00-00-123") == "double_descent-12-00-00-123"
    assert wandb_group("null", "12-00-00-123") == "12-00-00-123"
    assert wandb_group("spectrum", None) == "spectrum" and wandb_group(None, None) is None


def test_a_signal_stops_a_local_sweep_which_the_same_command_continues(tmp_path):
    """Ctrl-C (SIGINT) during job 0 of a two-job sweep: job 0 checkpoints, job 1 does not start, exit 143 and a
    message naming the sweep folder; the same command with that folder finishes job 0 from its checkpoint and
    runs job 1."""
    sweep = tmp_path / "sweep"
    args = ["-m", *LONG, "checkpoint.every=0", "problem.lam=0.05,0.1", f"hydra.sweep.dir={sweep}"]
    proc = _start(args)
    _wait_for(sweep / "0" / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out[-2000:]
    assert f"hydra.sweep.dir={sweep}" in out and not (sweep / "1").exists()
    assert json.loads((sweep / "0" / "summary.json").read_text())["status"] == "interrupted"
    run_app(args)
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["steps_done"] == 10000
