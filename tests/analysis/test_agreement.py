"""The agreement map's verdicts and the lookup of a run's point (quadflow.analysis.agreement)."""
import csv

import pytest

from quadflow.analysis import agreement
from quadflow.analysis.agreement import DISAGREE_GAP, grid_points, load_map, lookup


def _rows(gap_mse=0.02, valid=True):
    out = []
    for d, scale in ((32, 2.0), (64, 1.0)):  # the gap halves from d = 32 to 64; the largest d decides
        for alpha in (0.3, 1.0):
            for kappa in (0.5, 1.5):
                g = gap_mse * scale if (alpha, kappa) == (1.0, 0.5) else 0.01
                out.append({"kappa_star": 0.5, "lam": 0.05, "Delta": 0.0, "alpha": alpha, "kappa": kappa, "d": d,
                            "valid": valid or kappa != 0.5, "converged": True, "gap_mse": g, "gap_train_loss": 0.0,
                            "gap_in_sample_error": 0.0})
    return out


def test_a_point_disagrees_beyond_the_gap_at_its_largest_d_or_when_flagged():
    just_over, just_under = DISAGREE_GAP * 1.01, DISAGREE_GAP * 0.99
    assert grid_points(_rows(just_over))[2]["disagrees"]  # (1.0, 0.5): 2x the gap at d = 32, over at d = 64
    fine = {(p["alpha"], p["kappa"]): p for p in grid_points(_rows(just_under))}
    assert not fine[(1.0, 0.5)]["disagrees"] and fine[(1.0, 0.5)]["d"] == 64
    assert fine[(1.0, 0.5)]["gap_mse_d32"] == pytest.approx(2 * just_under)
    flagged = {(p["alpha"], p["kappa"]): p for p in grid_points(_rows(0.0, valid=False))}
    assert flagged[(0.3, 0.5)]["disagrees"] and not flagged[(0.3, 1.5)]["disagrees"]


def test_lookup_takes_the_nearest_point_and_refuses_outside_the_map(tmp_path):
    path = tmp_path / "map.csv"
    rows = _rows(0.3)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    points = load_map(path)
    hit = lookup(0.9, 0.55, 0.5, 0.05, 0.0, points)
    assert hit["map_point"] == "alpha=1, kappa=0.5" and hit["map_disagrees"] and hit["map_d"] == 64
    assert lookup(1.1, 1.4, 0.5, 0.05, 0.0, points)["map_disagrees"] is False
    assert "no points at (kappa_star, lam, Delta) = (0.5, 0.05, 0.5)" in lookup(1.0, 1.0, 0.5, 0.05, 0.5, points)["map_why"]
    assert "alpha=3 lies outside the map's range [0.3, 1]" in lookup(3.0, 1.0, 0.5, 0.05, 0.0, points)["map_why"]


def test_the_shipped_map_is_the_measured_one():
    # quadflow ships a copy of docs/results/agreement_map/agreement_map.csv; the two must not drift apart
    measured = agreement.MAP_FILE.parents[3] / "docs" / "results" / "agreement_map" / "agreement_map.csv"
    if not measured.exists() or not agreement.MAP_FILE.exists():
        pytest.skip("no measured agreement map in this checkout")
    assert agreement.MAP_FILE.read_text() == measured.read_text()
    assert load_map()  # and it parses


def test_the_default_run_lies_on_the_shipped_map_and_agrees():
    # the README tells users to check the map first: the point `make run` trains must be on it
    import yaml

    conf = yaml.safe_load((agreement.MAP_FILE.parents[3] / "conf" / "problem" / "default.yaml").read_text())
    hit = lookup(conf["alpha"], conf["kappa"], conf["kappa_star"], conf["lam"], conf["Delta"])
    assert hit["map_point"] == f"alpha={conf['alpha']:g}, kappa={conf['kappa']:g}", hit
    assert hit["map_disagrees"] is False and hit["map_d"] == 64
