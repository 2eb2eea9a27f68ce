"""Faults: W&B unavailable, disk full while writing metrics, a killed run continued in its folder (one W&B
history), a folder holding another configuration or a finished run, failed sync."""
import builtins
import errno
import hashlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import compose_config

from quadflow.cli.build import ConfigError
from quadflow.cli.job import run_job
from quadflow.io import read_jsonl
from quadflow.logging import JsonlSink
from quadflow.train import load_checkpoint


def make_cfg(*overrides):
    """The composed conf/ config at a small size, with Hydra-style ``key=value`` overrides."""
    small = ["problem.d=10", "problem.alpha=2.0", "problem.lam=0.1", "trainer.steps=40", "device=cpu",
             "precision=fp64", "progress=false", "record.points=10", "record.spectrum_points=1",
             "tracking.wandb.mode=disabled", "tracking.plots=false"]
    return compose_config(*small, *overrides)


def test_wandb_failing_to_start_keeps_local_results(tmp_path, monkeypatch):
    import wandb

    def no_wandb(*a, **k):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(wandb, "init", no_wandb)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg("tracking.wandb.mode=offline")
    with pytest.warns(RuntimeWarning, match="W&B could not start.*network unreachable"):
        summary = run_job(cfg, tmp_path)
    assert summary["status"] == "ok" and summary["wandb"] is None
    assert read_jsonl(tmp_path / "metrics.jsonl")[-1]["step"] == 40


def test_disk_full_while_writing_metrics(tmp_path, monkeypatch):
    """ENOSPC on metrics.jsonl: one warning, rows kept in memory, the summary still written and says so."""
    real_open = builtins.open
    calls = {"n": 0}

    def full_disk(path, mode="r", *a, **k):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            calls["n"] += 1
            if calls["n"] > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full_disk)
    with pytest.warns(RuntimeWarning, match="No space left"):
        summary = run_job(make_cfg(), tmp_path)
    monkeypatch.setattr(builtins, "open", real_open)
    assert summary["status"] == "ok"
    assert "No space left" in summary["metrics_file_error"]
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 3  # what was written stays intact
    assert summary["sim/mse"] > 0  # final values came from the in-memory rows


def test_truncated_metrics_line_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "t": 0.0}\n{"step": 1, "t": 0.05}\n{"step": 2, "t"')
    assert [r["step"] for r in read_jsonl(path)] == [0, 1]
    sink = JsonlSink(path, truncate_from_step=1)
    assert [r["step"] for r in sink.rows] == [0]
    assert [r["step"] for r in read_jsonl(path)] == [0]


ROOT = Path(__file__).resolve().parents[2]
KILLED = ["problem.d=12", "problem.alpha=2", "problem.lam=0.05", "trainer.steps=10000", "record.points=100",
          "record.spectrum_points=3", "precision=fp64", "theory=[longtime]", "tracking.wandb.mode=offline",
          "tracking.plots=false", "progress=false", "device=cpu", "checkpoint.every=500"]


def wandb_history(run_file: Path) -> list[dict]:
    """The history entries of an offline run file (``wandb leet inspect``), with ``_step``."""
    proc = subprocess.run([str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json", str(run_file)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [r["history"]["item"] for r in map(json.loads, filter(lambda x: x.startswith("{"), proc.stdout.splitlines()))
            if r["type"] == "history"]


def kill_after_checkpoint(proc: subprocess.Popen, checkpoint: Path, step: int, kill, log: Path) -> None:
    """Wait until ``checkpoint`` holds ``step`` or a later one, then call ``kill(proc.pid)`` (also when the wait
    fails: the process died, shown by the end of ``log``, or 240 s passed)."""
    try:
        deadline, state = time.time() + 240, None
        while state is None or state["simulation"]["trainer"]["step"] < step:
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
            state = load_checkpoint(checkpoint)
    finally:
        kill(proc.pid)
        proc.wait()


def test_a_killed_run_continues_with_the_command_it_logged_in_one_wandb_history(tmp_path):
    """SIGKILL (the OOM killer, a failed node, SLURM's hard kill) after a checkpoint: the command the run logged at
    its start continues it in its folder (resume=auto) from that checkpoint. The offline W&B run keeps one id and
    one folder, whose history holds every row with ``_step`` numbered as in the killed segment and continuing;
    ``wall_time_s`` counts the killed segment too."""
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WANDB_DATA_DIR", None)
    run_py = str(ROOT / "scripts" / "run.py")
    first = subprocess.Popen([sys.executable, run_py, *KILLED, f"hydra.run.dir={out}"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    kill_after_checkpoint(first, out / "checkpoint.pt", 1000, lambda pid: os.killpg(pid, signal.SIGKILL),
                          out / "run.log")
    assert not (out / "summary.json").exists()  # it died mid-way
    state = load_checkpoint(out / "checkpoint.pt")
    step = state["simulation"]["trainer"]["step"]
    (killed,) = (out / "wandb").glob("offline-run-*")
    before = wandb_history(next(killed.glob("run-*.wandb")))
    (hint,) = [x for x in (out / "run.log").read_text().splitlines() if "if this run is killed" in x]
    command = shlex.split(hint.split("continue it with: ", 1)[1])
    assert command[0] == "python" and command[-1] == f"hydra.run.dir={out}"
    proc = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint.pt'} at step {step}" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps_done"] == 10000
    assert summary["wall_time_s"] > state["wall_time_s"] > 0
    (segment,) = (out / "wandb").glob("offline-run-*")  # the killed segment's folder was replaced
    assert segment.name.endswith(state["wandb_id"]) and summary["wandb"]["id"] == state["wandb_id"]
    history = wandb_history(next(segment.glob("run-*.wandb")))
    assert [h["_step"] for h in history] == list(range(len(history)))
    rows = read_jsonl(out / "metrics.jsonl")
    assert [h["t"] for h in history if "sim/mse" in h] == [r["t"] for r in rows]
    assert [r["step"] for r in rows] == sorted({r["step"] for r in rows}) and rows[-1]["step"] == 10000
    kept = [h for h in before if h.get("t", 1e9) < step * 0.05]
    assert kept and all(history[h["_step"]].get("sim/mse") == h.get("sim/mse")
                        and history[h["_step"]]["t"] == h["t"] for h in kept)


def test_wandb_stages_artifact_files_inside_the_run_folder(tmp_path, monkeypatch):
    """Unless WANDB_DATA_DIR is set, W&B's staging folder is <run>/wandb/data/ for the run only: a copy of the run
    folder holds the files its artifact needs for `wandb sync`."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DATA_DIR", raising=False)
    run_job(make_cfg("tracking.wandb.mode=offline"), tmp_path / "run")
    staged = [p.read_bytes() for p in (tmp_path / "run" / "wandb" / "data" / "artifacts" / "staging").iterdir()]
    for name in ("metrics.jsonl", "summary.json", "spectra.npz", "config.yaml"):  # the run-files artifact
        assert (tmp_path / "run" / name).read_bytes() in staged, name
    assert "WANDB_DATA_DIR" not in os.environ
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "own"))  # a user's own setting is kept
    run_job(make_cfg("tracking.wandb.mode=offline"), tmp_path / "other")
    assert list((tmp_path / "own" / "artifacts" / "staging").iterdir()) and not (tmp_path / "other" / "wandb" / "data").exists()
    assert os.environ["WANDB_DATA_DIR"] == str(tmp_path / "own")


def test_a_finished_run_rerun_in_its_folder_is_left_as_it_is(tmp_path, caplog):
    first = run_job(make_cfg(), tmp_path)
    files = {f: (tmp_path / f).read_bytes() for f in ("metrics.jsonl", "summary.json", "checkpoint.pt")}
    with caplog.at_level(logging.INFO, logger="quadflow"):
        again = run_job(make_cfg(), tmp_path)
    assert again == json.loads(files["summary.json"]) and again["wall_time_s"] == first["wall_time_s"]
    assert {f: (tmp_path / f).read_bytes() for f in files} == files
    assert f"the run in {tmp_path} is complete (status ok, 40 steps): nothing to do" in caplog.text


def test_another_configuration_in_a_run_folder_is_refused_and_nothing_is_overwritten(tmp_path):
    """resume=auto (the default) names the changed keys and the ways out; resume=false starts over on purpose."""
    run_job(make_cfg(), tmp_path)
    files = {f: (tmp_path / f).read_bytes() for f in ("metrics.jsonl", "summary.json", "checkpoint.pt")}
    with pytest.raises(ConfigError, match=r"different configuration \(problem.alpha \(2.0 -> 3.0\)\); continue it "
                                          r"with its own overrides, start over in this folder with resume=false"):
        run_job(make_cfg("problem.alpha=3.0"), tmp_path)
    assert {f: (tmp_path / f).read_bytes() for f in files} == files
    assert run_job(make_cfg("problem.alpha=3.0", "resume=false"), tmp_path)["problem"]["alpha"] == 3.0


def test_results_without_a_checkpoint_are_replaced_with_a_warning(tmp_path):
    run_job(make_cfg(), tmp_path)
    (tmp_path / "checkpoint.pt").unlink()
    with pytest.warns(RuntimeWarning, match=r"no checkpoint in .*: starting from step 0 and replacing its metrics"):
        run_job(make_cfg(), tmp_path)


@pytest.mark.parametrize("student,route", [("quadratic", True), ("second_layer", False)])
def test_the_start_line_names_the_route_only_for_the_analytic_gradient(tmp_path, caplog, student, route):
    with caplog.at_level(logging.INFO, logger="quadflow"):
        run_job(make_cfg(f"student={student}", "trainer.steps=2"), tmp_path)
    (line,) = [r.getMessage() for r in caplog.records if "| theories:" in r.getMessage()]
    assert ("route=" in line) == route, line


def test_config_range_errors_name_field_value_and_range(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.steps=-5 is out of range: allowed an integer >= 0"):
        run_job(make_cfg("trainer.steps=-5"), tmp_path)
    with pytest.raises(ConfigError, match=r"theory.dmft.d_eff=2 is out of range"):
        run_job(make_cfg("theory=[dmft]", "theory.dmft.d_eff=2"), tmp_path)
    with pytest.raises(Exception, match="problem.d=many"):  # OmegaConf type check of the schema
        make_cfg("problem.d=many")


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "wandb" not in p.parts:
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_failed_wandb_sync_leaves_local_results_intact(tmp_path, monkeypatch):
    """`wandb sync` without network or login fails (or is killed); metrics, summary, checkpoint are untouched."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_job(make_cfg("tracking.wandb.mode=offline"), tmp_path)
    before = _tree_hash(tmp_path)
    run_dir = next((tmp_path / "wandb").glob("offline-run-*"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WANDB_BASE_URL": "http://127.0.0.1:9",
           "WANDB_API_KEY": "x" * 40}
    try:
        subprocess.run([str(Path(sys.executable).with_name("wandb")), "sync", str(run_dir)], env=env,
                       capture_output=True, timeout=8)
    except subprocess.TimeoutExpired:
        pass  # an interrupted sync: killed by the timeout
    assert _tree_hash(tmp_path) == before
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "ok"


def test_a_crashing_theory_makes_the_run_fail_but_keeps_the_simulation(tmp_path, monkeypatch, caplog):
    """The simulation finishes and its files are written; the status is failed and names the theory. Rerun in its
    folder, the run continues from its last checkpoint and computes the failed theory again."""
    import quadflow.theory.longtime as longtime

    def broken(**kwargs):
        raise FloatingPointError("no root")

    monkeypatch.setattr(longtime, "solve_longtime", broken)
    with pytest.warns(RuntimeWarning, match="theory longtime failed"):
        summary = run_job(make_cfg("theory=[longtime]"), tmp_path)
    assert summary["status"] == "failed" and "theory longtime failed: FloatingPointError: no root" in summary["error"]
    assert summary["steps_done"] == 40 and read_jsonl(tmp_path / "metrics.jsonl")[-1]["step"] == 40
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="quadflow"):
        again = run_job(make_cfg("theory=[longtime]"), tmp_path)
    assert f"resuming from {tmp_path / 'checkpoint.pt'} at step 40" in caplog.text
    assert again["status"] == "ok" and again["theory/longtime/mse"] > 0
