"""quadflow.analysis.points: the resumable point runner of scripts/validation/, and its hash (the app's too)."""
import json
from pathlib import Path

import pytest

from quadflow.analysis.points import load_points, parse_names, parse_numbers, parse_sizes, point_hash, run_points
from quadflow.io import stable_hash

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"

# Configs copied from cached points under docs/results/<script>/points/<hash>.json: their digests must not
# change, or every cached point would be measured again.
CACHED = {
    "1042fd440f3fed13": {"regime": "D", "kappa": 2.0, "kappa_star": 0.5, "alpha": 1.5, "lam": 0.1, "Delta": 0.5,
                         "d": 256, "seed": 1, "design": "gaussian", "h": 0.025, "precision": "fp32", "device": "cpu",
                         "chunk_t": 10.0, "rtol": 1e-05, "gtol": 0.0001, "t_max": 600.0},  # scale
    "056f32abcf076f54": {"kind": "gd", "case": "A", "kappa": 1.5, "kappa_star": 0.5, "alpha": 1.0, "Delta": 0.0,
                         "lam": 0.0, "h": 0.05, "steps": 200, "d": 32, "seed": 7, "every": 5, "precision": "fp32",
                         "design": "gaussian"},  # dmft_curves
    "227e0a7d6af0cc13": {"kind": "dmft", "case": "B", "kappa": 0.5, "kappa_star": 0.3, "alpha": 1.5, "Delta": 0.5,
                         "lam": 0.1, "h": 0.05, "steps": 200, "d_eff": 128, "samples": 8, "seed": 1000},  # dmft_curves
    "0181e62b0d39196d": {"pair": "count", "kappa": 0.4, "kappa_star": 0.3, "alpha": 0.343154, "d": 32, "seed": 1,
                         "h": 0.02, "t_max": 1000.0, "chunk_t": 20.0, "recover": 0.0001, "rtol": 0.0001, "lam": 0.0,
                         "Delta": 0.0, "precision": "fp64", "design": "gaussian"},  # recovery
    "3bff3e63d93acd64": {"regime": "O", "kappa": 0.3, "kappa_star": 0.5, "alpha": 0.29, "lam": 0.001, "Delta": 0.5,
                         "d": 32, "seed": 1, "h": 0.025, "t_max": 2560.0, "polish": 3000, "precision": "fp64",
                         "curvature": True},  # open_regime
    "caec216d66ae130b": {"regime": "O", "kappa": 0.3, "kappa_star": 0.5, "alpha": 0.29, "lam": 0.001, "Delta": 0.5,
                         "d_eff": 32, "h": 0.025, "steps": 4000, "samples": 4, "kind": "dmft"},  # open_regime
    "01a5cbadfab68740": {"kind": "sim", "optimiser": "momentum", "kappa": 1.5, "kappa_star": 0.5, "alpha": 1.0,
                         "Delta": 0.0, "lam": 0.05, "sigma0": 1.0, "h": 0.02, "steps": 300, "design": "gaussian",
                         "d": 64, "seed": 5, "every": 5, "precision": "fp32"},  # optimiser_dmft
}


@pytest.mark.parametrize("digest", CACHED)
def test_cached_points_keep_their_hash(digest):
    assert point_hash(CACHED[digest]) == stable_hash(CACHED[digest]) == digest


def test_every_cached_point_in_the_docs_is_named_by_its_hash():
    files = sorted(RESULTS.glob("*/points/*.json"))
    if not files:
        pytest.skip("no cached points under docs/results")
    for path in files[::7]:  # a sample across every folder (a point being written is complete: atomic writes)
        assert point_hash(json.loads(path.read_text())["config"]) == path.stem, path


def test_the_app_hashes_its_configs_with_the_same_function():
    from omegaconf import OmegaConf

    from quadflow.cli.job import config_hash

    cfg = OmegaConf.create({"problem": {"d": 8, "alpha": "${half}"}, "half": 0.5, "seed": 3, "path": None})
    assert config_hash(cfg, "problem", "seed") == stable_hash({"problem": {"d": 8, "alpha": 0.5}, "seed": 3})
    assert config_hash(cfg, "seed", "problem") == config_hash(cfg, "problem", "seed")  # sorted keys
    assert stable_hash({"p": Path("a")}) == stable_hash({"p": "a"})  # other objects as str


def _configs(n):
    return [{"kind": "toy", "d": 4, "seed": s} for s in range(n)]


def test_points_are_cached_skipped_on_rerun_and_loaded(tmp_path):
    calls, lines = [], []
    measure = lambda cfg: calls.append(cfg["seed"]) or {"value": 10 * cfg["seed"], "wall_s": 0.0}  # noqa: E731
    counts = run_points(_configs(3), tmp_path, measure=measure, log=lines.append,
                        label=lambda c: f"seed={c['seed']}", line=lambda r: f"value {r['value']}")
    assert counts == {"computed": 3, "cached": 0, "failed": 0, "left": 0} and calls == [0, 1, 2]
    assert lines == [f"[{i + 1}/3] seed={i}: value {10 * i}" for i in range(3)]
    names = sorted(p.name for p in (tmp_path / "points").iterdir())
    assert names == sorted(f"{point_hash(c)}.json" for c in _configs(3))
    assert not (tmp_path / "partial").exists()  # only with checkpoints
    points = load_points(tmp_path)
    assert sorted(p["result"]["value"] for p in points) == [0, 10, 20] and all(p["config"] in _configs(3) for p in points)

    lines.clear()
    counts = run_points(_configs(4), tmp_path, measure=measure, log=lines.append)
    assert counts == {"computed": 1, "cached": 3, "failed": 0, "left": 0} and calls == [0, 1, 2, 3]
    assert lines[0] == f"[1/4] {point_hash(_configs(1)[0])}: cached ({point_hash(_configs(1)[0])}.json)"
    assert lines[-1].endswith(": done (0.0 s)")  # the default label is the hash, the default line the wall time


def test_a_failing_measure_is_not_cached_and_is_tried_again(tmp_path):
    def flaky(cfg):
        if cfg["seed"] == 1:
            raise RuntimeError("boom")
        return {"wall_s": 0.0}

    lines = []
    counts = run_points(_configs(3), tmp_path, measure=flaky, log=lines.append)
    assert counts == {"computed": 2, "cached": 0, "failed": 1, "left": 0}
    assert any(line.endswith("FAILED RuntimeError: boom") for line in lines)
    assert not (tmp_path / "points" / f"{point_hash(_configs(3)[1])}.json").exists()
    counts = run_points(_configs(3), tmp_path, measure=lambda cfg: {"wall_s": 0.0}, log=lines.append)
    assert counts == {"computed": 1, "cached": 2, "failed": 0, "left": 0}


def test_the_budget_stops_between_points(tmp_path):
    counts = run_points(_configs(3), tmp_path, measure=lambda cfg: {"wall_s": 0.0}, max_minutes=0, log=[].append)
    assert counts == {"computed": 0, "cached": 0, "failed": 0, "left": 3}
    # a point's wall time counts for the next of its kind: 90 s of a 1-minute budget stops after the first
    counts = run_points(_configs(3), tmp_path, measure=lambda cfg: {"wall_s": 90.0}, max_minutes=1, log=[].append)
    assert counts == {"computed": 1, "cached": 0, "failed": 0, "left": 2}
    counts = run_points(_configs(3), tmp_path, measure=lambda cfg: {"wall_s": 0.0}, max_minutes=1, log=[].append)
    assert counts == {"computed": 2, "cached": 1, "failed": 0, "left": 0}


def test_checkpoints_give_the_measure_a_partial_file_removed_once_cached(tmp_path):
    seen = []

    def measure(cfg, partial):
        seen.append(partial)
        partial.write_text("state")  # as a checkpoint of the point in progress
        if cfg["seed"] == 1:
            raise RuntimeError("killed")
        return {"wall_s": 0.0}

    counts = run_points(_configs(2), tmp_path, measure=measure, checkpoints=True, log=[].append)
    assert counts == {"computed": 1, "cached": 0, "failed": 1, "left": 0}
    assert seen == [tmp_path / "partial" / f"{point_hash(c)}.pt" for c in _configs(2)]
    assert [p.name for p in (tmp_path / "partial").iterdir()] == [seen[1].name]  # the failed one's stays


def test_argument_parsers_name_the_option_and_the_rule():
    assert parse_names("a,b", {"a": 1, "b": 2}, "--x") == ["a", "b"]
    with pytest.raises(ValueError, match="--x: unknown z; known a, b"):
        parse_names("a,z", {"a": 1, "b": 2}, "--x")
    assert parse_sizes("16,32") == [16, 32]
    with pytest.raises(ValueError, match="--sizes: each must be >= 2"):
        parse_sizes("1,8")
    assert parse_numbers("0.5,1", "--grid", float, 0, strict=True) == [0.5, 1.0]
    with pytest.raises(ValueError, match="--grid: each must be > 0, as comma-separated numbers"):
        parse_numbers("0,1", "--grid", float, 0, strict=True)
