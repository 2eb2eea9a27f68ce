"""scripts/validation/open_regime.py and recovery.py on tiny configs: what they record, the Hessian test,
the threshold estimate."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

FOLDER = Path(__file__).resolve().parents[2] / "scripts" / "validation"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"quadflow_validation_{name}", FOLDER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def open_regime():
    return _load("open_regime")


@pytest.fixture(scope="module")
def recovery():
    return _load("recovery")


def test_curvature_sees_the_saddle_at_zero_weights_and_none_at_a_polished_minimum(open_regime):
    from quadflow import Problem, Simulation

    p = Problem(d=12, kappa=0.5, kappa_star=0.5, alpha=1.0, lam=0.05, Delta=0.0)
    sim = Simulation(p, h=0.025, precision="fp64")
    with torch.no_grad():
        sim.student.W.mul_(1e-8)  # W = 0 is stationary, and GD leaves it: a negative curvature
    assert open_regime.curvature(sim)["hessian_min_relative"] < -0.1
    sim = Simulation(p, h=0.025, precision="fp64")
    sim.run(2000, record_steps=[])
    polished = open_regime.polish(sim, 500)  # to a stationary point: the rotations' zero modes, nothing below
    assert polished["speed"] < 1e-6 and polished["hessian_min_relative"] > -1e-8


def test_open_regime_runner_records_gd_polish_static_and_dmft(open_regime, tmp_path, capsys):
    args = ["--out", str(tmp_path), "--sizes", "12", "--seeds", "1", "--t-max", "20", "--polish", "20",
            "--dmft", "12", "--dmft-steps", "30", "--dmft-samples", "2"]
    open_regime.main(args)
    assert len(list((tmp_path / "points").glob("*.json"))) == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    row = summary["O d=12"]
    assert list(row["gd"]) == ["t=10", "t=20"] and row["static_objective"] > 0
    assert row["polished_objective"] <= row["gd"]["t=20"]["objective"] * (1 + 1e-12)  # the polish never climbs
    assert summary["O DMFT d_eff=12"]["converged"] in (True, False)
    capsys.readouterr()
    open_regime.main(args)
    assert capsys.readouterr().out.count("cached") == 2


def test_threshold_is_where_the_recovered_fraction_crosses_one_half(recovery):
    est = recovery.threshold([0.3, 0.32, 0.34, 0.36], [0.0, 0.0, 1.0, 1.0])
    assert est["alpha_pr"] == pytest.approx(0.33) and est["error"] == pytest.approx(0.01)
    assert recovery.threshold([0.3, 0.32], [0.0, 0.5])["alpha_pr"] == pytest.approx(0.32)
    assert recovery.threshold([0.3, 0.32], [0.0, 0.0])["why"] == "no run recovered"
    runs = [[{"status": "stalled"}], [{"status": "running"}, {"status": "stalled"}], [{"status": "running"}],
            [{"status": "recovered", "t": 90.0}]]
    assert recovery.band([0.3, 0.32, 0.34, 0.36], runs) == {"band": [0.32, 0.36], "recovery_t": [[], [], [], [90.0]]}


def test_recovery_runner_classifies_runs_and_reports_the_prediction(recovery, tmp_path):
    recovery.main(["--out", str(tmp_path), "--pairs", "wide", "--sizes", "12", "--seeds", "1", "--t-max", "40"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    (row,) = summary.values()
    assert len(row["alphas"]) == len(recovery.GRID) and row["alpha_pr_lam0"] == pytest.approx(
        recovery.predicted(row["kappa"], row["kappa_star"])["alpha_pr_lam0"])
    statuses = [json.loads(p.read_text())["result"]["status"] for p in (tmp_path / "points").glob("*.json")]
    assert set(statuses) <= {"recovered", "stalled", "running"}


def test_recovery_grid_picks_the_alphas_and_refuses_bad_ratios(recovery):
    (lo, hi) = recovery.plan(["count"], [32], 1, 0.02, 10.0, grid=(0.9, 1.1))
    centre = recovery.predicted(*recovery.realised(32, 0.4, 0.3))["alpha_pr_lam0"]
    assert (lo["alpha"], hi["alpha"]) == (round(0.9 * centre, 6), round(1.1 * centre, 6))
    assert recovery.parse_grid("0.94,1,1.06") == (0.94, 1.0, 1.06)
    for bad, why in (("1,-0.5", "must be > 0"), ("1,x", "comma-separated numbers")):
        with pytest.raises(SystemExit, match=why):
            recovery.parse_grid(bad)
