"""Figure makers (quadflow.viz.figures): tables, agreement numbers, saved data, W&B grouping, preset end to end."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quadflow.viz.figures import FigureData, collect, draw, make_figure
from quadflow.analysis import extrapolate
from quadflow.viz.figures.style import close
from quadflow.theory.longtime import solve_longtime
from quadflow.theory.thresholds import interpolation_threshold

yaml = pytest.importorskip("yaml")  # PyYAML (with OmegaConf): absent on a bare torch machine

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
PROBLEM = {"d": 20, "kappa": 1.5, "kappa_star": 0.5, "alpha": 1.0, "Delta": 0.5, "lam": 0.05, "sigma0": 1.0}


def write_job(path: Path, problem=None, summary=None, rows=(), spectrum=None, seed=0, design="gaussian"):
    """A job folder as scripts/run.py writes it (config.yaml, summary.json, metrics.jsonl, spectra.npz)."""
    path.mkdir(parents=True)
    problem = {**PROBLEM, **(problem or {})}
    config = {"problem": problem, "trainer": {"h": 0.05, "steps": 100}, "optim": {"_target_": "torch.optim.SGD"},
              "seed": seed, "data": {"design": design}, "record": {"rank_tol": 1e-2}, "theory": {"dmft": None},
              "tracking": {"wandb": {"mode": "disabled", "project": "quadflow", "entity": None}}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "summary.json").write_text(json.dumps({"status": "ok", "t": 5.0, **(summary or {})}))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if spectrum is not None:
        np.savez(path / "spectra.npz", step_100=spectrum)


def test_viz_imports_without_hydra_omegaconf_wandb_or_matplotlib():
    code = ("import importlib, pkgutil, sys\n"
            "import quadflow.viz.figures as figures, quadflow.viz.plots\n"
            "for m in pkgutil.iter_modules(figures.__path__):\n"
            "    importlib.import_module(f'quadflow.viz.figures.{m.name}')\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'wandb', 'matplotlib'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)


def test_figure_data_round_trip_keeps_numbers_strings_and_nan(tmp_path):
    data = FigureData("demo", tables={"sim": [{"x": 1, "y": 0.5, "s": "goe"}, {"x": 2, "y": math.nan, "s": "a"}],
                                      "theory": [{"x": 0.25, "y": 3.0}]}, meta={"agreement": {"gap": 0.1}})
    paths = data.save(tmp_path)
    assert {p.name for p in paths} == {"demo.csv", "demo_theory.csv", "demo.json"}
    back = FigureData.load(tmp_path, "demo")
    assert back.tables["sim"][0] == {"x": 1, "y": 0.5, "s": "goe"}
    assert math.isnan(back.tables["sim"][1]["y"]) and back.tables["theory"] == [{"x": 0.25, "y": 3.0}]
    assert back.meta == {"agreement": {"gap": 0.1}}


def test_extrapolation_recovers_the_infinite_d_limit():
    d = np.array([16.0, 24, 32, 48, 64])
    fit = extrapolate(d, 0.3 + 2.0 / d, np.full(5, 1e-3), model="1/d")
    a, a_err, b = fit.value, fit.error, fit.fit.b
    assert a == pytest.approx(0.3, abs=1e-12) and b == pytest.approx(2.0, abs=1e-10) and a_err < 2e-3
    noisy = 0.3 + 2.0 / d + np.array([1, -1, 1, -1, 1]) * 1e-3
    fit = extrapolate(d, noisy, model="1/d")  # no seed spread: errors from the residuals
    a, a_err = fit.value, fit.error
    assert abs(a - 0.3) < 5 * a_err and a_err > 0


def test_finite_size_compares_the_extrapolation_with_theory(tmp_path):
    sol = solve_longtime(**{k: PROBLEM[k] for k in ("alpha", "kappa", "kappa_star", "lam", "Delta")})
    for i, d in enumerate((16, 32, 64)):
        for seed in (0, 1):
            shift = (1 + 0.01 * (seed - 0.5)) / d  # exact 1/d correction, symmetric seed spread
            write_job(tmp_path / f"{2 * i + seed}", {"d": d}, seed=seed,
                      summary={"sim/mse": sol.mse + shift, "sim/train_loss": sol.train_loss + 0.1 * shift})
    data = collect("finite_size", tmp_path)
    assert [r["d"] for r in data.tables["sim"]] == [16, 32, 64] and data.meta["seeds"] == [2, 2, 2]
    assert data.meta["fits"]["mse"]["extrapolated"] == pytest.approx(sol.mse, rel=1e-8)
    assert data.meta["fits"]["train_loss"]["slope"] == pytest.approx(0.1, rel=1e-6)
    assert data.meta["agreement"]["mse_largest_d_rel_gap"] == pytest.approx(1 / 64 / sol.mse, rel=1e-6)
    close(draw(data))


def _theory_sample(sol, size, rng):
    """Eigenvalues drawn from the long-time spectrum of S_inf (atom at 0 + density), by inverse CDF."""
    s = np.linspace(0, 8, 20001)
    cdf = sol.atom + np.concatenate([[0], np.cumsum(0.5 * (sol.spectrum(s)[1:] + sol.spectrum(s)[:-1]) * np.diff(s))])
    return np.interp(np.sort(rng.uniform(0, cdf[-1], size)), cdf, s)


def test_spectrum_distance_is_small_for_theory_samples_and_large_for_wrong_ones(tmp_path):
    params = {"kappa": 0.5, "kappa_star": 0.3, "lam": 0.02}
    sol = solve_longtime(alpha=1.0, Delta=0.5, **params)
    eigs = _theory_sample(sol, 2000, np.random.default_rng(0))
    write_job(tmp_path / "0", params, spectrum=eigs)
    write_job(tmp_path / "1", {**params, "kappa": 1.5}, spectrum=2.0 * _theory_sample(
        solve_longtime(alpha=1.0, Delta=0.5, **{**params, "kappa": 1.5}), 2000, np.random.default_rng(1)))
    data = collect("spectrum", tmp_path, quick=True)
    good, bad = data.meta["runs"]
    assert good["rank_selected"] and good["kolmogorov_distance"] < 0.03
    assert good["sim_rank_fraction"] == pytest.approx(sol.rank_fraction, abs=0.03)
    assert not bad["rank_selected"] and bad["kolmogorov_distance"] > 0.08  # 2x too large: the non-zero part is off
    assert data.meta["agreement"]["kappa=1.5/trace_rel_gap"] == pytest.approx(1.0, abs=0.1)
    close(draw(data))


def test_learning_curves_measure_the_gap_to_dmft(tmp_path):
    t = np.linspace(0, 5, 11)
    for job, kappa in enumerate((0.5, 2.0)):
        rows = [{"t": float(s), "step": i, "sim/mse": 1 / (1 + s), "sim/train_loss": 0.5 / (1 + s),
                 "theory/dmft/mse": 1.1 / (1 + s), "theory/dmft/train_loss": 0.5 / (1 + s)} for i, s in enumerate(t)]
        write_job(tmp_path / str(job), {"kappa": kappa}, rows=rows)
    data = collect("learning_curves", tmp_path)
    assert data.meta["agreement"]["kappa=0.5/mse_rel_gap_median"] == pytest.approx(0.1 / 1.1)
    assert data.meta["agreement"]["kappa=2.0/train_loss_rel_gap_max"] == pytest.approx(0.0)
    assert len(data.tables["sim"]) == 22
    close(draw(data))


def test_learning_curves_of_a_sweep_over_alpha_without_dmft(tmp_path):
    """The curves are labelled by the swept key (not a constant kappa), and a run without theory=[dmft] gets
    no DMFT line nor legend entry."""
    for job, alpha in enumerate((0.5, 2.0)):
        rows = [{"t": float(s), "step": i, "sim/mse": 1 / (1 + s), "sim/train_loss": 0.5 / (1 + s)}
                for i, s in enumerate(np.linspace(0, 5, 6))]
        write_job(tmp_path / str(job), {"alpha": alpha}, rows=rows)
    data = collect("learning_curves", tmp_path)
    assert {r["series"] for r in data.tables["sim"]} == {"alpha=0.5", "alpha=2.0"}
    fig = draw(data)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["simulation, alpha=0.5", "simulation, alpha=2.0"]
    close(fig)


def test_sweep_figure_infers_the_swept_key_and_draws_theories(tmp_path):
    for job, h in enumerate((0.02, 0.05, 0.1)):
        rows = [{"t": float(s), "step": i, "sim/mse": 1 / (1 + s)} for i, s in enumerate((0.0, 1.0, 2.0))]
        write_job(tmp_path / str(job), rows=rows, summary={"sim/mse": h, "theory/longtime/mse": 0.03})
        config = yaml.safe_load((tmp_path / str(job) / "config.yaml").read_text())
        config["trainer"]["h"] = h
        config["optim"]["lr"] = h  # follows trainer.h (an interpolation): not a second swept key
        config = {"problem": config.pop("problem"), "trainer": config.pop("trainer"), **config}  # Hydra's order
        (tmp_path / str(job) / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    data = collect("sweep", tmp_path)
    assert data.meta["x"] == "trainer.h" and data.meta["series_keys"] == []
    assert [r["y"] for r in data.tables["sim"]] == [0.02, 0.05, 0.1]
    assert [(r["theory"], r["y"]) for r in data.tables["theory"]] == [("longtime", 0.03)] * 3
    assert len(data.tables["curves"]) == 9
    close(draw(data))
    with pytest.raises(ValueError, match="no job has the config key 'problem.nope'"):
        collect("sweep", tmp_path, x="problem.nope")


def test_universality_compares_designs(tmp_path):
    for job, (design, mse) in enumerate((("gaussian", 0.22), ("gaussian", 0.24), ("goe", 0.2), ("goe", 0.2))):
        rows = [{"t": s, "step": i, "sim/mse": mse * (1 + 1 / (1 + s)), "sim/train_loss": mse / 2}
                for i, s in enumerate((0.0, 1.0, 2.0))]
        write_job(tmp_path / str(job), design=design, seed=job % 2, rows=rows,
                  summary={"sim/mse": mse, "sim/train_loss": mse / 2, "theory/longtime/mse": 0.2,
                           "theory/longtime/train_loss": 0.1})
    data = collect("universality", tmp_path)
    assert data.meta["agreement"]["gaussian_vs_goe/mse_rel_diff"] == pytest.approx(0.15)
    assert data.meta["agreement"]["goe/mse_rel_gap_to_theory"] == pytest.approx(0.0, abs=1e-12)
    assert {r["design"] for r in data.tables["curves"]} == {"gaussian", "goe"}
    close(draw(data))


def test_phase_diagram_quick_reproduces_known_thresholds(tmp_path):
    out = make_figure("phase_diagram", None, tmp_path, quick=True)
    assert (tmp_path / "phase_diagram.png").stat().st_size > 10_000 and len(out["files"]) == 4
    data = FigureData.load(tmp_path, "phase_diagram")
    # the grid has flagged and unflagged points, and flagged ones below kappa* = 0.5 (where the cut binds)
    cut = data.tables["cut"]
    assert {r["binds"] for r in cut} == {0, 1}
    assert any(r["binds"] == 1 for r in cut if r["kappa_star"] == 0.5 and r["kappa"] < 0.5)
    for row in data.meta["thresholds"]:
        # alpha_PR at kappa = kappa_star is the Bayes-optimal kappa* - kappa*^2/2 (theory.md section 6)
        assert row["alpha_pr_at_kappa_star"] == pytest.approx(row["bayes_optimal"], abs=1e-5)
    plateaus = [r["plateau_alpha_pr"] for r in data.meta["thresholds"]]
    assert plateaus == pytest.approx([0.1576, 0.3272, 0.4222], abs=2e-4)  # nuclear-norm thresholds
    below = [r for r in data.tables["theory"] if r["kappa"] < r["kappa_star"]]
    assert below and all(math.isinf(r["alpha_pr_lam0plus"]) or math.isnan(r["alpha_pr_lam0plus"]) for r in below)


def test_figure_run_joins_the_experiment_group_in_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    data = FigureData("demo", tables={"sim": [{"x": 1.0, "y": 2.0}]}, meta={"agreement": {"gap": 0.25}})
    png = tmp_path / "demo.png"
    from quadflow.viz.figures.style import subplots

    fig, _ = subplots(1)
    fig.savefig(png)
    close(fig)
    from quadflow.viz.figures.wb import log_figure

    run_id = log_figure(data, png, out_dir=tmp_path, mode="offline", group="demo-sweep")
    run_file = next((tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    proc = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(run_file)],
                          capture_output=True, text=True, timeout=60)
    assert '"run_group":"demo-sweep"' in proc.stdout.replace(" ", "")
    summary = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json",
                              str(run_file)], capture_output=True, text=True, timeout=60).stdout
    assert json.loads(summary)["summary"]["agreement/gap"] == 0.25


def test_double_descent_preset_draws_its_figure_at_the_end_of_the_sweep(tmp_path):
    """A 2-job sweep of the preset at d = 10: the callback writes CSV/JSON/PNG with the theory curve."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), "-m", "experiment=double_descent",
                           "problem.d=10", "trainer.steps=80", "record.points=10", "problem.alpha=0.3,1.0",
                           "problem.Delta=0.5", "progress=false", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = FigureData.load(sweep, "double_descent")
    assert [r["alpha"] for r in data.tables["sim"]] == [0.3, 1.0]
    for key in ("sim_test_error", "sim_train_loss", "theory_test_error", "d", "Delta", "kappa"):
        assert key in data.tables["sim"][0], key
    theory = data.tables["theory"]
    assert len(theory) >= 50 and all(np.isfinite(r["test_error"]) for r in theory)
    assert min(r["alpha"] for r in theory) < 0.3 and max(r["alpha"] for r in theory) > 1.0
    (curve,) = data.meta["curves"]
    assert curve["threshold"] == pytest.approx(interpolation_threshold(1.5, 0.5, 0.5), rel=1e-9)
    assert (sweep / "double_descent.png").stat().st_size > 10_000


def test_redraw_from_saved_data(tmp_path):
    from importlib import util

    spec = util.spec_from_file_location("figures_script", ROOT / "scripts" / "figures.py")
    script = util.module_from_spec(spec)
    spec.loader.exec_module(script)
    make_figure("phase_diagram", None, tmp_path, quick=True)
    (tmp_path / "phase_diagram.png").unlink()
    assert script.main(["phase_diagram", "--redraw", str(tmp_path)]) == 0
    assert (tmp_path / "phase_diagram.png").exists()
    with pytest.raises(ValueError, match="sweep folder"):
        collect("spectrum", None)


def test_single_run_of_a_preset_draws_its_figure_in_the_run_folder(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), "experiment=spectrum", "problem.d=10",
                           "trainer.steps=50", "progress=false", f"hydra.run.dir={out}"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = FigureData.load(out, "spectrum")
    (run,) = data.meta["runs"]
    assert run["d"] == 10 and run["kappa_star"] == 0.3 and len(data.tables["sim"]) == 10  # one job: d eigenvalues
    assert (out / "spectrum.png").exists()


def test_agreement_map_tabulates_gaps_and_marks_disagreeing_points(tmp_path):
    # synthetic jobs: gap +30 % at (alpha 1, kappa 0.3), +2 % elsewhere; the (0.3, *) column is flagged
    # invalid by the theory; the gap at the largest d decides; one job has a moving mse (not converged)
    job = 0
    for d in (16, 32):
        for alpha in (0.5, 1.0):
            for kappa in (0.3, 1.5):
                gap = 0.30 if (alpha, kappa) == (1.0, 0.3) and d == 32 else 0.02
                moving = (d, alpha, kappa) == (32, 0.5, 1.5)
                rows = [{"t": 1.0, "step": 1, "sim/mse": 1.0}, {"t": 2.0, "step": 2, "sim/mse": 1.2 if moving else 1.0}]
                theory = {f"theory/longtime/{m}": 0.1 for m in ("mse", "train_loss", "in_sample_error")}
                sim = {f"sim/{m}": 0.1 * (1 + gap) for m in ("mse", "train_loss", "in_sample_error")}
                write_job(tmp_path / str(job), {"d": d, "alpha": alpha, "kappa": kappa, "Delta": 0.0}, rows=rows,
                          summary={**theory, **sim, "theory/longtime/valid": kappa != 0.3})
                job += 1
    data = collect("agreement_map", tmp_path)
    assert len(data.tables["sim"]) == 8 and len(data.tables["map"]) == 4
    by = {(p["alpha"], p["kappa"]): p for p in data.tables["map"]}
    assert by[(1.0, 0.3)]["gap_mse"] == pytest.approx(0.30) and by[(1.0, 0.3)]["gap_mse_d16"] == pytest.approx(0.02)
    assert [by[k]["disagrees"] for k in ((0.5, 0.3), (1.0, 0.3), (0.5, 1.5), (1.0, 1.5))] == [True, True, False, False]
    assert not by[(0.5, 1.5)]["converged"] and by[(1.0, 1.5)]["converged"]
    assert data.meta["summary"]["disagreeing"] == 2 and data.meta["summary"]["flagged_invalid"] == 2
    assert all(math.isfinite(r["alpha_pr"]) == (r["kappa"] >= 0.5) for r in data.tables["lines"])
    close(draw(data))


def test_agreement_map_counts_replicas_as_seeds_gives_their_spread_and_joins_a_saved_map(tmp_path):
    """A job run with replicas=2 gives two seeds: the gap is their mean, the spread std/mean of single runs;
    ``join`` adds the rows of a saved map at another kappa* (a grid extended later)."""
    theory = {f"theory/longtime/{m}": 0.1 for m in ("mse", "train_loss", "in_sample_error")}
    for job, d in enumerate((16, 32)):
        values = {m: (0.1 * 1.1, 0.1 * 0.9) for m in ("mse", "train_loss", "in_sample_error")}
        summary = {**theory, "replicas": 2, **{f"sim/{m}": sum(v) / 2 for m, v in values.items()},
                   **{f"replicas/{r}/{m}": v[r] for m, v in values.items() for r in range(2)}}
        write_job(tmp_path / "new" / str(job), {"d": d, "alpha": 0.5, "kappa": 1.5, "Delta": 0.0,
                                                "kappa_star": 0.2}, rows=[{"t": 1.0, "step": 1, "sim/mse": 0.1}],
                  summary=summary)
    saved = collect("agreement_map", tmp_path / "new")
    point = saved.tables["map"][0]
    assert saved.tables["sim"][0]["seeds"] == 2 and point["gap_mse"] == pytest.approx(0.0, abs=1e-12)
    assert point["spread_mse"] == pytest.approx(np.std([1.1, 0.9], ddof=1))  # std / mean, mean 1
    saved.save(tmp_path / "saved")
    write_job(tmp_path / "other" / "0", {"d": 32, "alpha": 0.5, "kappa": 1.5, "Delta": 0.0, "kappa_star": 0.3},
              rows=[{"t": 1.0, "step": 1, "sim/mse": 0.1}],
              summary={**theory, **{f"sim/{m}": 0.12 for m in ("mse", "train_loss", "in_sample_error")}})
    joined = collect("agreement_map", tmp_path / "other", join=tmp_path / "saved")
    assert sorted(p["kappa_star"] for p in joined.tables["map"]) == [0.2, 0.3]
    assert math.isnan([p for p in joined.tables["map"] if p["kappa_star"] == 0.3][0]["spread_mse"])  # one seed
    close(draw(joined))
