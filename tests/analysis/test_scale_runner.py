"""scripts/validation/scale.py on a tiny config: cache files, skip on rerun, budget stop, report files (the
runner and the regimes it shares with open_regime.py: quadflow.analysis.points and .regimes)."""
import contextlib
import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from quadflow.analysis.points import point_hash
from quadflow.analysis.regimes import REGIMES, parse_regimes

PATH = Path(__file__).resolve().parents[2] / "scripts" / "validation" / "scale.py"
# d = 12 and 16, 2 seeds of regime A, 20 steps of h = 0.05; rtol and gtol so loose that the first
# chunk counts as converged, so that the report has converged points to summarise
TINY = ["--regimes", "A", "--sizes", "12,16", "--seeds", "2", "--h", "0.05", "--chunk-t", "0.5", "--t-max", "1",
        "--rtol", "1e6", "--gtol", "1e6"]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("quadflow_validation_scale", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@contextlib.contextmanager
def killed_at_chunk(n: int, scale, monkeypatch):
    """A kill (KeyboardInterrupt) at the end of the ``n``-th chunk of a point, as by a signal."""
    calls, speed = [], scale.speed

    def killed(model):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return speed(model)

    monkeypatch.setattr(scale, "speed", killed)
    try:
        yield
    finally:
        monkeypatch.setattr(scale, "speed", speed)


def test_points_are_cached_skipped_on_rerun_and_reported(scale, tmp_path, capsys):
    counts = scale.main(["--out", str(tmp_path), *TINY])
    assert counts == {"computed": 4, "cached": 0, "failed": 0, "left": 0}
    assert not list((tmp_path / "partial").iterdir())  # the checkpoints of cached points are gone
    printed = capsys.readouterr().out
    assert printed.count("converged at t=0.5") == 4 and "[1/4] A d=12 seed=0" in printed  # smallest d first
    settings = scale.Settings(h=0.05, chunk_t=0.5, t_max=1.0, rtol=1e6, gtol=1e6)
    configs = scale.plan([REGIMES["A"]], [16, 12], 2, settings)
    assert [c["d"] for c in configs] == [12, 12, 16, 16]
    files = sorted(p.name for p in (tmp_path / "points").iterdir())
    assert files == sorted(f"{point_hash(c)}.json" for c in configs)
    point = json.loads((tmp_path / "points" / files[0]).read_text())
    assert point["config"] in configs and point["result"]["status"] == "converged"
    res = point["result"]
    assert res["steps"] == 10 and res["gap_mse"] == pytest.approx(res["mse"] / res["theory_mse"] - 1)
    assert res["theory_mse"] == pytest.approx(0.016333515, rel=1e-6) and res["grad_rel"] > 0

    assert scale.main(["--out", str(tmp_path), *TINY]) == {"computed": 0, "cached": 4, "failed": 0, "left": 0}
    assert capsys.readouterr().out.count(": cached (") == 4

    rows = list(csv.DictReader(open(tmp_path / "points.csv")))
    assert len(rows) == 4 and {r["d"] for r in rows} == {"12", "16"} and "gap_realised_train_loss" in rows[0]
    (tmp_path / "summary.json").unlink()
    assert scale.main(["--out", str(tmp_path), "--report"])["computed"] == 0  # from the cache alone
    mse = json.loads((tmp_path / "summary.json").read_text())["regimes"]["A"]["metrics"]["mse"]
    assert [(r["d"], r["seeds"]) for r in mse["per_d"]] == [(12, 2), (16, 2)]
    assert mse["per_d"][0]["sem"] == pytest.approx(mse["per_d"][0]["std"] / 2 ** 0.5)
    # two sizes: the power law is refused with its reason, a + b/d is fitted
    assert "at least 3 distinct sizes" in mse["refused"]["auto"] and mse["extrapolation"]["model"] == "1/d"
    # the docs table: one row per metric, the gap and seed spread of each d, the extrapolation's gap
    table = (tmp_path / "table.md").read_text().splitlines()
    assert len(table) == 4 and "d=12: gap (seed s.d., n)" in table[0] and "d=16" in table[0]
    row = dict(zip([c.strip() for c in table[0].split("|")], [c.strip() for c in table[2].split("|")]))
    big = mse["per_d"][1]
    assert row["metric"] == "mse" and row["d=16: gap (seed s.d., n)"] == (
        f"{100 * big['gap']:+.1f} % ({100 * big['std'] / big['mean']:.1f} %, 2)")
    ex = mse["extrapolation"]
    assert row["gap of extrapolation"] == f"{100 * ex['gap']:+.1f} +- {100 * ex['gap_err']:.1f} %"


def test_budget_stops_between_points_and_overrides_change_the_hash(scale, tmp_path):
    counts = scale.main(["--out", str(tmp_path), *TINY, "--max-minutes", "0"])
    assert counts == {"computed": 0, "cached": 0, "failed": 0, "left": 4}
    (a,) = parse_regimes("A", ["A:lam=0.2"])
    assert a.lam == 0.2 and a.kappa == 1.5
    (e,) = parse_regimes("E", ["E:kappa=1,kappa_star=0.5,alpha=2,lam=0.1,Delta=0"])
    assert e.alpha == 2.0
    s = scale.Settings()
    assert point_hash(scale.point_config(a, 64, 0, s)) != point_hash(
        scale.point_config(REGIMES["A"], 64, 0, s))
    with pytest.raises(ValueError, match="a new regime needs all of"):
        parse_regimes("E", ["E:kappa=1"])
    with pytest.raises(ValueError, match="--regimes: unknown Z"):
        parse_regimes("A,Z", [])


def test_a_killed_point_resumes_from_its_last_chunk_to_the_same_result(scale, tmp_path, monkeypatch):
    cfg = scale.point_config(REGIMES["A"], 12, 0, scale.Settings(h=0.05, precision="fp64", chunk_t=0.5,
                                                                 rtol=0.0, gtol=0.0, t_max=3.0))
    whole = scale.measure(cfg)
    checkpoint = tmp_path / "point.pt"
    with killed_at_chunk(3, scale, monkeypatch), pytest.raises(KeyboardInterrupt):
        scale.measure(cfg, checkpoint=checkpoint)
    resumed = scale.measure(cfg, checkpoint=checkpoint)
    assert resumed["resumed_wall_s"] > 0 and resumed["steps"] == whole["steps"] == 60
    assert all(resumed[m] == whole[m] for m in ("mse", "train_loss", "grad_rel", "rel_change"))  # fp64, same steps
    other = dict(cfg, seed=1)
    with pytest.raises(ValueError, match="different configuration"):
        scale.measure(other, checkpoint=checkpoint)


def test_the_runner_gives_a_killed_point_its_checkpoint_on_the_next_run(scale, tmp_path, monkeypatch):
    args = ["--out", str(tmp_path), "--regimes", "A", "--sizes", "12", "--seeds", "1", "--h", "0.05", "--chunk-t",
            "0.5", "--t-max", "2", "--rtol", "1e-30", "--gtol", "1e-30", "--precision", "fp64"]
    with killed_at_chunk(2, scale, monkeypatch), pytest.raises(KeyboardInterrupt):
        scale.main(args)
    (partial,) = (tmp_path / "partial").iterdir()
    (cfg,) = scale.plan([REGIMES["A"]], [12], 1, scale.Settings(h=0.05, precision="fp64", chunk_t=0.5, rtol=1e-30,
                                                                  gtol=1e-30, t_max=2.0))
    assert partial.name == f"{point_hash(cfg)}.pt" and not list((tmp_path / "points").iterdir())
    assert scale.main(args)["computed"] == 1
    (point,) = (tmp_path / "points").iterdir()
    assert json.loads(point.read_text())["result"]["resumed_wall_s"] > 0 and not partial.exists()
