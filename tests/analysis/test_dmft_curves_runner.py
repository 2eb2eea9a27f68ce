"""scripts/validation/dmft_curves.py: the runner on a tiny config, and its report
(quadflow.analysis.curves, shared with optimiser_dmft.py) on synthetic curves with a known d -> infinity limit."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from quadflow.analysis.curves import CURVE_KEYS, case_report

PATH = Path(__file__).resolve().parents[2] / "scripts" / "validation" / "dmft_curves.py"


@pytest.fixture(scope="module")
def dmft_curves():
    spec = importlib.util.spec_from_file_location("quadflow_validation_dmft_curves", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_caches_points_and_reports_each_curve(dmft_curves, tmp_path, capsys):
    args = ["--out", str(tmp_path), "--cases", "B", "--sizes", "8,12,16", "--seeds", "3", "--d-eff", "12",
            "--samples", "2", "--every", "20", "--fit-min-d", "8"]
    dmft_curves.main(args)
    assert len(list((tmp_path / "points").glob("*.json"))) == 1 + 3 * 3
    summary = json.loads((tmp_path / "summary.json").read_text())["B"]
    assert summary["sizes"] == [8, 12, 16] and summary["seeds"] == [3, 3, 3] and len(summary["t"]) == 11
    for key in CURVE_KEYS:
        c = summary["curves"][key]
        assert [r["d"] for r in c["per_d"]] == [8, 12, 16] and all(r["mean_rel"] >= 0 for r in c["per_d"])
        assert "value" in c["ratio_extrapolation"] and c["curve_extrapolation"]["times"] == 10
    capsys.readouterr()
    dmft_curves.main([*args, "--figure", str(tmp_path / "curves.png")])
    assert capsys.readouterr().out.count("cached") == 10 and (tmp_path / "curves.png").stat().st_size > 0
    with pytest.raises(ValueError, match="--cases: unknown Z"):
        dmft_curves.main(["--out", str(tmp_path), "--cases", "Z"])


def test_report_extrapolates_curves_with_a_one_over_d_excess_to_the_dmft():
    """GD = DMFT (1 + 2/d) with 1 % seed noise: the extrapolated ratio is 1 within 3 errors, the gap law
    finds p = 1 within 3 errors, and every time's a + b/d extrapolation lands on the DMFT (max z < 4.5 over
    40 times: a few-sigma tail of 40 draws, each on 16 seeds)."""
    rng = np.random.default_rng(0)
    t = np.arange(0, 41) * 0.25
    curve = 1 + np.exp(-t)
    dmft = {"t": t.tolist(), **{k: curve.tolist() for k in CURVE_KEYS},
            "stderr": {k: (0.001 * curve).tolist() for k in CURVE_KEYS}}
    runs = {d: [{"t": t.tolist(), **{k: (curve * (1 + 2 / d) * (1 + 0.01 * rng.standard_normal())).tolist()
                                     for k in CURVE_KEYS}} for _ in range(4)] for d in (16, 32, 64, 128)}
    report = case_report(dmft, runs)["curves"]["mse"]
    ratio = report["ratio_extrapolation"]
    assert abs(ratio["value"] - 1) < 3 * ratio["error"] and abs(ratio["gap_p"] - 1) < 3 * ratio["gap_p_err"]
    assert [r["mean_rel"] for r in report["per_d"]] == pytest.approx([2 / d for d in runs], abs=0.01)  # 1 %: noise
    assert report["curve_extrapolation"]["max_z"] < 4.5 and report["curve_extrapolation"]["max_rel"] < 0.03


def test_optimiser_runner_reports_each_optimiser_against_its_own_dmft(tmp_path, monkeypatch, capsys):
    """scripts/validation/optimiser_dmft.py at tiny sizes: the same runner and report (a figure whose titles
    name the optimiser and the design)."""
    spec = importlib.util.spec_from_file_location("quadflow_validation_optimiser_dmft", PATH.parent / "optimiser_dmft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "SIZES", {"goe": {8: 2, 12: 2}, "gaussian": {8: 2, 12: 2}})
    args = ["--out", str(tmp_path), "--optimisers", "gd,adam", "--designs", "goe", "--d-eff", "8", "--samples", "2",
            "--threads", "1"]
    module.main([*args, "--figure", str(tmp_path / "optimisers.png")])
    assert len(list((tmp_path / "points").glob("*.json"))) == 2 * 4 + 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary) == ["adam goe", "gd goe"] and summary["adam goe"]["params"]["optim"] == "adam"
    assert summary["gd goe"]["sizes"] == [8, 12] and (tmp_path / "optimisers.png").stat().st_size > 0
    capsys.readouterr()
    module.main(args)
    assert capsys.readouterr().out.count(": cached (") == 10
