"""Sweeps that always report: every point checked before the first job, failures at any stage recorded,
a non-zero exit when a job failed, the float a sweeper optimises, the generic sweep figure, Optuna."""
import importlib.util
import json
import math

import pytest
from omegaconf import OmegaConf

from quadflow.cli.sweeps import (failed_value, failure_stage, objective_value, print_sweep_table, record_failure,
                                 steps_to, sweep_failed, sweep_failures, sweep_points)
from test_app import SMALL, run_app

TINY = ["problem.d=12", "problem.alpha=2", "trainer.steps=20", "theory=[]", "record.points=10",
        "record.spectrum_points=0", "tracking.wandb.mode=disabled", "tracking.plots=false"]


def _multirun_config(task, params=None, sweeper="hydra._internal.core_plugins.basic_sweeper.BasicSweeper"):
    return OmegaConf.create({"hydra": {"overrides": {"task": task},
                                       "sweeper": {"_target_": sweeper, "params": params or {}}}})


def test_sweep_points_expand_like_the_basic_sweeper():
    cfg = _multirun_config(["problem.alpha=1,2", "seed=0,1,2", "problem.d=12"], {"problem.alpha": "5,6,7"})
    points = sweep_points(cfg)
    assert len(points) == 6  # the command line's alpha wins over the preset's
    assert [p.num for p in points] == list(range(6))
    assert points[3].overrides == ["problem.alpha=2", "seed=0", "problem.d=12"]
    assert points[3].label() == "job 3 (problem.alpha=2, seed=0)"


def test_sweep_points_of_a_search_interval_are_its_bounds():
    cfg = _multirun_config([], {"trainer.h": "tag(log, interval(0.005, 0.3))"},
                           sweeper="hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper")
    points = sweep_points(cfg)
    assert [p.overrides for p in points] == [["trainer.h=0.005"], ["trainer.h=0.3"]]
    assert points[0].num is None and points[0].label() == "search bound (trainer.h=0.005)"


def test_a_bad_last_point_stops_the_sweep_before_its_first_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_app(["-m", *TINY, "problem.kappa=1,2,-1", f"hydra.sweep.dir={sweep}"], check=False)
    assert proc.returncode == 2
    assert "error: job 2 (problem.kappa=-1): problem.kappa must be a finite number > 0" in proc.stderr
    assert "Traceback" not in proc.stderr and not (sweep / "0").exists()  # no job ran


def test_a_job_failing_at_build_is_recorded_and_the_others_run(tmp_path):
    """A memory refusal depends on the machine: a warning up front, the job recorded as failed (stage build),
    the other job finished, the sweep report and figure written, exit code 1."""
    sweep = tmp_path / "sweep"
    proc = run_app(["-m", *TINY, "problem.d=12,20000", f"hydra.sweep.dir={sweep}"], check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "warning: job 1 (problem.d=20000)" in proc.stderr and "needs about" in proc.stderr
    failed = json.loads((sweep / "1" / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["stage"] == "build" and "InsufficientMemoryError" in failed["error"]
    assert "Traceback" in (sweep / "1" / "run.log").read_text()  # the traceback is kept, in run.log only
    table = {r["job"]: r for r in json.loads((sweep / "sweep_summary.json").read_text())}
    assert table["0"]["status"] == "ok" and table["1"]["stage"] == "build"
    ok = json.loads((sweep / "0" / "summary.json").read_text())
    assert ok["objective_key"] == "sim/mse" and ok["objective"] == ok["sim/mse"]  # what main returned

    from quadflow.viz.figures import make_figure

    result = make_figure("sweep", sweep, tmp_path / "fig", options={"x": "problem.d"})
    assert (tmp_path / "fig" / "sweep.png").exists()
    failed_rows = (tmp_path / "fig" / "sweep_failed.csv").read_text()
    assert "20000" in failed_rows and "build" in failed_rows and len(result["files"]) >= 3


def test_failure_stage_from_the_files_a_job_wrote(tmp_path):
    start = 1e12  # files older than the job's start do not count (a resumed job's folder holds old ones)
    job = tmp_path / "0"  # one job folder of a sweep folder that holds nothing else
    job.mkdir()
    assert failure_stage(job, 0.0) == "build"
    (job / "config.yaml").write_text("x: 1")
    assert failure_stage(job, 0.0) == "train" and failure_stage(job, start) == "build"
    (job / "summary.json").write_text(json.dumps({"status": "ok", "sim/mse": 0.1}))
    summary = record_failure(job, RuntimeError("plotting\nbroke"), 0.0)
    assert summary == {"status": "failed", "sim/mse": 0.1, "stage": "finish", "error": "RuntimeError: plotting broke"}
    assert json.loads((job / "summary.json").read_text()) == summary
    assert [(r["job"], r["status"]) for r in sweep_failures(tmp_path)] == [("0", "failed")]


def test_objective_values():
    rows = [{"step": 0, "sim/mse": 1.0}, {"step": 10, "sim/mse": 0.05}, {"step": 20, "sim/mse": 0.01}]
    ok = {"status": "ok", "sim/mse": 0.01, "objective_increases": 0}
    assert objective_value(ok, "sim/mse") == 0.01
    assert objective_value(ok, "steps_to:sim/mse:0.05", rows) == 10.0
    assert objective_value(ok, "steps_to:sim/mse:0.001", rows) == math.inf  # never reached
    assert objective_value({**ok, "objective_increases": 3}, "steps_to:sim/mse:0.05", rows) == math.inf
    assert math.isnan(objective_value({"status": "diverged"}, "sim/mse"))
    assert math.isnan(objective_value(ok, "theory/dmft/mse"))  # absent key
    assert steps_to(rows, "sim/mse", 2.0) == 0.0
    optuna = OmegaConf.create({"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
                               "direction": "maximize"})
    assert failed_value(optuna) == -math.inf and math.isnan(failed_value(None))


def test_a_search_counts_diverged_trials_as_results_and_crashes_as_failures(capsys):
    rows = [{"job": "0", "status": "ok"}, {"job": "1", "status": "diverged", "error": "step too large"},
            {"job": "2", "status": "unstable", "error": "oscillates"}]
    assert sweep_failed(rows, search=True) == 0 and sweep_failed(rows, search=False) == 2
    crashed = [*rows, {"job": "3", "status": "failed", "stage": "train", "error": "RuntimeError: boom"}]
    assert sweep_failed(crashed, search=True) == 1
    print_sweep_table(rows, search=True)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "sweep: 1/3 jobs ok, 2 diverged or unstable (results of the search, not failures)"
    assert "job 1: diverged: step too large" in out


def test_objective_key_out_of_range_is_refused(tmp_path):
    proc = run_app([*TINY, "objective=steps_to:sim/mse", f"hydra.run.dir={tmp_path / 'run'}"], check=False)
    assert proc.returncode == 2 and "objective='steps_to:sim/mse' is out of range" in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="hydra-optuna-sweeper not installed")
def test_optuna_step_size_search_runs_and_returns_floats(tmp_path):
    sweep = tmp_path / "opt"
    proc = run_app(["-m", "experiment=optuna_step_size", "hydra.sweeper.n_trials=8", "tracking.wandb.mode=disabled",
                    f"hydra.sweep.dir={sweep}"], check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]  # a trial that diverged is a result of the search
    assert "Best value:" in proc.stdout
    summaries = [json.loads((sweep / str(i) / "summary.json").read_text()) for i in range(8)]
    assert any(s["status"] != "ok" for s in summaries)  # the sampler's 8 steps (seed 0) include too large ones
    values = [s.get("objective") for s in summaries]
    assert all(v is None or isinstance(v, float) for v in values)  # None: a trial that diverged at build
    best = json.loads(proc.stdout.split("Best value:")[1].split("\n")[0])
    assert best == min(v for v in values if v is not None) and best < 400
