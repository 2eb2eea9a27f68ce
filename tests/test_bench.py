"""The benchmark harness: quick run's JSON, dispatcher rules, and naive step == quadflow step == 9a5c334 step."""
from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from quadflow import Problem, Simulation

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("quadflow_bench_cli", SCRIPTS / "bench.py")
sys.path.insert(0, str(SCRIPTS))  # the suites are the package ``benchmarks`` (as bench.py imports them)
sim_bench = importlib.import_module("benchmarks.sim")
BASELINE, BASELINE_SKIPPED = sim_bench.baseline_loader.load_or_reason()


@pytest.mark.parametrize("kappa", [0.5, 2.0])
@pytest.mark.parametrize("route", ["S", "W"])
@pytest.mark.parametrize("micro_batches", [1, 3])
def test_naive_sgd_step_equals_quadflow_gd_step_fp64(kappa, route, micro_batches):
    """One SGD step of the autograd baseline (lr = h d m) is quadflow's objective + SGD(lr=h) step,
    ``W + 2h (W Gamma - lam W)``; so is the chunked-autograd step of a rewritten module, and the
    step of 9a5c334 (its field and Euler update) when that commit can be loaded."""
    p = Problem(d=12, kappa=kappa, kappa_star=0.5, alpha=1.5, Delta=0.1, lam=0.2)
    sim = Simulation(p, h=0.03, seed=3, precision="fp64", chunk_rows=50)  # several chunks
    w0 = sim.student.W.detach().clone()
    w_quadflow = sim_bench.objective_stepper(sim, copy.deepcopy(sim.student), route)().clone()
    naive = sim_bench.NaiveStepper(w0, sim.data.inputs, sim.data.y, p, 0.03, "fp64", -(-p.n // micro_batches))
    assert naive.micro_batches == micro_batches
    w_naive = naive()
    assert sim_bench.agreement(w0, w_quadflow, w_naive)["rel_to_update"] < 1e-12
    w_module = sim_bench.objective_stepper(sim, sim_bench.rewritten_module(w0), route)()
    assert sim_bench.agreement(w0, w_module, w_naive)["rel_to_update"] < 1e-12
    sim.run(1, record_steps=[])  # and all equal the library's own training step
    torch.testing.assert_close(w_naive, sim.student.W.detach(), rtol=1e-12, atol=1e-12)
    if BASELINE is None:
        pytest.skip(f"baseline {sim_bench.BASELINE} not loadable: {BASELINE_SKIPPED}")
    gap = sim_bench.agreement(w0, w_quadflow, sim_bench.BaselineStepper(BASELINE, sim, route, w0)())
    assert gap["rel_to_w"] < 1e-10 and gap["rel_to_update"] < 1e-10, gap


def test_quick_sim_suite_json(tmp_path):
    """``bench.py --suite sim --quick`` writes the same JSON to --out and stdout, with every figure."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--suite", "sim", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout) == report
    assert {"torch", "device_name", "torch_threads", "cpu_count"} <= set(report["machine"])
    suite = report["suites"]["sim"]["result"]
    assert suite["gemm_peak"]["fp32"]["tflops"] > 0
    modes, sizes, kappas = (suite["problem"][k] for k in ("precisions", "sizes", "kappas"))
    assert len(suite["results"]) == len(modes) * len(sizes) * len(kappas)
    loaded = suite["baseline"]["loaded"]
    assert loaded == (BASELINE is not None), suite["baseline"]
    for res in suite["results"]:
        old = res["baseline_9a5c334"]
        timings = [res["quadflow"][r] for r in ("S", "W", "auto")] + [res["autograd_module"], res["naive"]]
        for timed in timings + ([old[r] for r in ("S", "W", "auto")] if loaded else []):
            assert timed["seconds_per_step"] > 0 and timed["tflops"] > 0
            assert timed["fraction_of_fp32_peak"] > 0 and timed["fraction_of_local_fp32_peak"] > 0
        assert res["quadflow"]["auto"]["route"] == ("W" if res["m"] < res["d"] else "S")
        assert set(res["speedup_vs_naive"]) == set(res["autograd_module_ratio"]) == {"S", "W", "auto"}
        assert set(res["gemm_step_ratio"]) == {"S", "W", "auto"} and all(v > 0 for v in res["gemm_step_ratio"].values())
        assert res["gemms"]["auto"]["gemms"]["seconds_per_step"] > 0
        tol = 1e-4 if res["precision"] == "fp32" else 5e-2
        assert all(res["agreement"][r]["rel_to_update"] < tol for r in ("S", "W", "autograd_module")), \
            res["agreement"]
        if loaded:
            assert set(res["ratio_to_9a5c334"]) == {"S", "W", "auto"} and all(
                v > 0 for v in res["ratio_to_9a5c334"].values())
            assert all(res["agreement_9a5c334"][r]["rel_to_update"] < tol for r in ("S", "W")), \
                res["agreement_9a5c334"]
        else:
            assert old["skipped"]
        assert res["memory"]["dataset_bytes"] == res["n"] * res["d"] * (2 if res["precision"] == "bf16" else 4)


def test_dispatcher_skips_missing_suite_and_passes_accepted_kwargs():
    assert bench.load_suite("no_such_suite") is None
    assert "skipped" in bench.run_suite("no_such_suite", quick=True, device="cpu")

    def run_without_device(quick=False):
        return {"quick": quick}

    assert bench.call_suite(run_without_device, quick=True, device="cpu") == {"quick": True}
    assert bench.parse_args(["--suite", "sim"]).suite == ["sim"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--suite", "bogus"])


def test_jsonable_makes_strict_json():
    data = {"a": float("nan"), "b": torch.tensor([1.0, 2.0]), "c": (1, float("inf"))}
    assert json.loads(json.dumps(bench.jsonable(data), allow_nan=False)) == {"a": None, "b": [1.0, 2.0],
                                                                             "c": [1, None]}


def test_quick_dmft_optimisers_section_times_each_followed_optimiser_against_gd():
    from benchmarks import dmft

    res = dmft.optimisers("cpu", quick=True)
    assert (res["d_eff"], res["T"]) == (24, 60)
    assert [name for name, _ in dmft.OPTIMISERS] == ["gd", "momentum", "adam", "sgd_b0.1"]
    for name, _ in dmft.OPTIMISERS:
        assert res[name]["seconds"] > 0 and res[name]["converged"]
        assert res[name]["over_gd"] == res[name]["seconds"] / res["gd"]["seconds"]


def test_quick_replicas_suite_times_one_process_against_separate_runs():
    """``--suite replicas --quick``: both timings, their ratio, and replica r's first step equal to run r's."""
    proc = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--suite", "replicas", "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["suites"]["replicas"]["result"]["rows"]
    assert {r["design"] for r in rows} == {"goe", "gaussian"}
    for r in rows:
        times = r["seconds_per_step"]
        assert times["replicas"] > 0 and times["separate"] > 0
        assert r["speedup"] == pytest.approx(times["separate"] / times["replicas"])
        assert r["max_rel_diff_first_step"] < 1e-6  # fp32: the batched GEMMs may sum in another order
