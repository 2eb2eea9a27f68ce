"""Tracking faults: W&B unavailable, disk full while writing metrics, W&B resume id, failed sync."""
import builtins
import errno
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config

from quadflow.cli.build import ConfigError
from quadflow.cli.job import run_job
from quadflow.io import read_jsonl
from quadflow.logging import JsonlSink


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


def test_resume_continues_the_same_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = make_cfg("tracking.wandb.mode=offline", "trainer.steps=20")
    first = run_job(cfg, tmp_path / "run")
    longer = make_cfg("tracking.wandb.mode=offline", "trainer.steps=20", "resume=true")
    second = run_job(longer, tmp_path / "run")
    assert first["wandb"]["id"] == second["wandb"]["id"]


def test_resume_with_other_config_is_refused(tmp_path):
    run_job(make_cfg(), tmp_path)
    with pytest.raises(ValueError, match="different configuration"):
        run_job(make_cfg("resume=true", "problem.alpha=3.0"), tmp_path)


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


def test_a_crashing_theory_makes_the_run_fail_but_keeps_the_simulation(tmp_path, monkeypatch):
    """The simulation finishes and its files are written; the status is failed and names the theory."""
    import quadflow.theory.longtime as longtime

    def broken(**kwargs):
        raise FloatingPointError("no root")

    monkeypatch.setattr(longtime, "solve_longtime", broken)
    with pytest.warns(RuntimeWarning, match="theory longtime failed"):
        summary = run_job(make_cfg("theory=[longtime]"), tmp_path)
    assert summary["status"] == "failed" and "theory longtime failed: FloatingPointError: no root" in summary["error"]
    assert summary["steps_done"] == 40 and read_jsonl(tmp_path / "metrics.jsonl")[-1]["step"] == 40
