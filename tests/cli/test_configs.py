"""Every file of every config group composes and instantiates; users' students and optimisers by one override; the
paper's presets (conf/experiment/paper/) follow the paper's protocol."""
import math
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from conftest import CONF, compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from quadflow.cli.build import ConfigError
from quadflow.cli.job import Job, run_job

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment"))
FILES = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = sorted(f.stem for f in (CONF / "experiment").glob("*.yaml"))
SMALL = ["device=cpu", "tracking.wandb.mode=disabled", "tracking.plots=false", "progress=false"]


@pytest.mark.parametrize("group,name", FILES, ids=[f"{g}={n}" for g, n in FILES])
def test_every_group_file_composes_and_instantiates(group, name):
    override = f"{group}=[{name}]" if group == "theory" else f"{group}={name}"
    cfg = compose_config(override)
    node = cfg[group]
    if group in ("optim",):
        opt = instantiate(node)([torch.nn.Parameter(torch.zeros(3))])
        assert isinstance(opt, torch.optim.Optimizer)
    elif group in ("student", "teacher"):
        assert isinstance(instantiate(node)(d=6, m=4), torch.nn.Module)
    elif group in ("theory", "callbacks"):
        assert all(hasattr(instantiate(v), "compute" if group == "theory" else "on_step_end") for v in node.values())
    elif group == "tracking":
        assert callable(instantiate(node.wandb))
    elif group in ("trainer", "data"):
        assert instantiate(node) is not None
    else:  # plain groups (problem)
        assert all(v is not None for v in node.values())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_builds_its_job(name, tmp_path):
    """Each preset's components all build (data included) at its own size; no training."""
    job = Job(compose_config(f"experiment={name}", *SMALL), tmp_path)
    assert job.sim.step == 0 and job.schedule[-1] == job.cfg.trainer.steps


def test_optimiser_choice_survives_a_preset():
    """Presets set trainer.h/steps only: optim=adam experiment=double_descent runs Adam."""
    cfg = compose_config("optim=adam", "experiment=double_descent")
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.trainer.h == 0.02


@pytest.mark.parametrize("overrides,optimizer", [
    (["optim._target_=torch.optim.RMSprop", "optim.lr=1e-3"], "RMSprop"),
    (["optim._target_=torch.optim.AdamW", "+optim.weight_decay=0.01", "optim.lr=1e-3"], "AdamW"),
    (["optim=rk4", "trainer.h=0.2", "trainer.steps=10"], "RK4"),
    (["student=second_layer"], "SGD"),
])
def test_any_optimiser_or_student_runs_by_override(overrides, optimizer, tmp_path):
    summary = run_job(compose_config("problem.d=10", "trainer.steps=20", "theory=[population]", *SMALL,
                                     *overrides), tmp_path)
    assert summary["status"] == "ok" and summary["optimizer"] == optimizer
    assert summary["sim/train_loss"] < summary["problem"]["n"]  # finite, recorded
    if "student=second_layer" in overrides:
        assert summary["student"] == "SecondLayerQuadratic" and summary["sim/test_error_se"] > 0


@pytest.mark.parametrize("override,needle", [
    ("student._target_=nope.Missing", "student (nope.Missing): Error loading 'nope.Missing': ModuleNotFoundError"),
    ("student._target_=students.WrongShape", "student._target_=students.WrongShape: student WrongShape: forward "
                                             "must map inputs (batch, d=10) to floating outputs (batch,)"),
    ("student._target_=students.IntegerOutput", "got shape (2,) dtype torch.int64"),
    ("+optim.nesterov_typo=1", "optim (torch.optim.sgd.SGD): SGD.__init__() got an unexpected keyword argument"),
    ("trainer.batch_size=0", "trainer.batch_size=0 is out of range: allowed 1..n = 200"),
    ("data.design=cube", "data.design must be one of"),
])
def test_bad_component_is_one_clear_line_before_training(override, needle, tmp_path):
    with pytest.raises(ConfigError) as err:
        Job(compose_config("problem.d=10", *SMALL, override), tmp_path)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_step_beyond_h_max_is_refused_by_the_library_and_the_app(tmp_path):
    from quadflow import Problem, Simulation

    with pytest.raises(ValueError, match=r"h must be a number in \(0, 1000\], got 1e\+300"):
        Simulation(Problem(d=6, kappa=1, kappa_star=0.5, alpha=1), h=1e300)
    with pytest.raises(ConfigError, match=r"trainer.h=1e\+300 is out of range: allowed \(0, 1000\]"):
        Job(compose_config("problem.d=10", "trainer.h=1e300", *SMALL), tmp_path)


def test_a_problem_no_setting_fits_says_so_instead_of_listing_settings(tmp_path):
    from quadflow.runtime import InsufficientMemoryError

    with pytest.raises(InsufficientMemoryError) as err:
        Job(compose_config("problem.d=1000000000", *SMALL), tmp_path)
    text = str(err.value)
    assert "no setting of data, precision or GPUs brings it below" in text and "reduce problem.d about" in text
    assert "regenerate" not in text and "e+18 GiB" in text  # 7.45e+18 GiB, not 7450580596923828224.00 GiB


def test_a_dmft_too_long_for_any_setting_is_refused_up_front_with_the_most_steps_that_fit(tmp_path):
    from quadflow.cli.validate import check_job_fits, validate_config
    from quadflow.runtime import InsufficientMemoryError

    exact = ("theory=[dmft]", "theory.dmft.history=exact", "record.points=10", *SMALL)
    cfg = compose_config("trainer.steps=1000000000000", *exact)
    with pytest.raises(InsufficientMemoryError, match=r"no theory.dmft.d_eff or samples brings it below .* set "
                                                      r"theory.dmft.history=compressed \(the long-time mode\) or "
                                                      r"theory.dmft.max_steps=\d+ .* at most trainer.steps=\d+ with "
                                                      r"dmft here") as err:
        check_job_fits(cfg)
    assert "no theory.dmft.d_eff or samples" in validate_config(cfg)[0]  # a sweep's warning: that job is recorded failed
    # the horizon it names fits: the same run with it passes the check
    horizon = int(str(err.value).split("theory.dmft.max_steps=")[1].split()[0])
    check_job_fits(compose_config("trainer.steps=1000000000000", *exact, f"theory.dmft.max_steps={horizon}"))
    check_job_fits(compose_config("trainer.steps=1000000000000", "theory=[population,longtime]", *SMALL))
    # history=auto (the default) solves it in the compressed mode: its history grows as log(steps), its curves as steps
    check_job_fits(compose_config("trainer.steps=1000000", "theory=[dmft]", "record.points=10", *SMALL))
    with pytest.raises(InsufficientMemoryError, match="compressed .* fewer trainer.steps or theory.dmft.max_steps"):
        check_job_fits(compose_config("trainer.steps=1000000000000", "theory=[dmft]", "record.points=10", *SMALL))
    # RK4 has no compressed mode, and its DMFT has four kernel rows per step: its largest horizon is a quarter of GD's
    most = {}
    for optim in ("gd", "rk4"):
        with pytest.raises(InsufficientMemoryError) as err:
            check_job_fits(compose_config("trainer.steps=1000000000000", f"optim={optim}", *exact))
        most[optim] = int(str(err.value).split("at most trainer.steps=")[1].split()[0])
        assert ("history=compressed" in str(err.value)) == (optim == "gd")
    assert abs(most["rk4"] - most["gd"] / 4) <= 1
    with pytest.raises(InsufficientMemoryError, match="at most trainer.steps="):
        check_job_fits(compose_config("trainer.steps=1000000000000", "theory=[dmft]", "optim=rk4", *SMALL))


def test_an_unknown_problem_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"problem.kapa is not a key of problem \(d, kappa, "):
        Job(compose_config("+problem.kapa=1", *SMALL), tmp_path)



@contextmanager
def hydra_loader():
    """An initialised Hydra over conf/ (the app's schema registered); yields its config loader."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from quadflow.cli.app import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def preset(name: str):
    """``experiment=<name>`` composed with its ``hydra`` node (the sweeper's params); call inside hydra_loader()."""
    from hydra import compose

    return compose(config_name="config", overrides=[f"experiment={name}"], return_hydra_config=True)


def sweep_values(cfg) -> dict:
    """``{key: [values]}`` of the preset's sweeper params (one list per key, single values included)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.key_or_group: list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()] for o in parsed}


def grid(cfg) -> dict:
    """``{key: number of values}`` of the preset's sweep."""
    return {k: len(v) for k, v in sweep_values(cfg).items()}


def test_the_paper_figure_presets_compose_to_the_papers_protocol():
    # The paper's Fig. 7: d = 100, GOE design, kappa 0.3, kappa* 0.2, h 0.005 to t = 3000, 4 lam x 30 alpha x
    # 10 seeds (replicas, on a tensor axis in each job); the quick variant changes d, the step, the horizon and the
    # grid, and keeps the rest.
    with hydra_loader():
        full, quick, fig4, fig16, fig4_quick = map(preset, ("paper/fig7", "paper/fig7_quick", "paper/fig4",
                                                           "paper/fig16", "paper/fig4_quick"))
    p = full.problem
    assert (p.d, p.kappa, p.kappa_star, p.Delta, p.sigma0) == (100, 0.3, 0.2, 0.0, 1.0)
    assert full.data.design == "goe" and full.trainer.h == 0.005 and full.trainer.h * full.trainer.steps == 3000
    assert full.figure == "paper_fig7" and list(full.theory) == ["longtime"]
    assert grid(full) == {"problem.lam": 4, "problem.alpha": 30} and (full.seed, full.replicas) == (0, 10)
    assert (quick.problem.d, quick.trainer.h, quick.trainer.steps, quick.data.design) == (40, 0.01, 40000, "goe")
    assert quick.problem.kappa == 0.3 and quick.figure == "paper_fig7"
    assert grid(quick) == {"problem.lam": 2, "problem.alpha": 7} and quick.replicas == 2
    assert (fig4.problem.kappa, fig4.problem.kappa_star, fig4.trainer.h * fig4.trainer.steps) == (0.35, 0.3, 5000)
    assert (fig4.problem.d, fig4.data.design, fig4.figure) == (100, "goe", "paper_fig4")
    assert grid(fig4) == {"problem.lam": 3, "problem.alpha": 20} and fig4.replicas == 10
    assert grid(fig16) == {"problem.kappa": 4, "problem.lam": 3, "problem.alpha": 20} and fig16.replicas == 10
    assert fig16.figure == "paper_fig16" and fig4_quick.problem.d == 40


def _linspace(start, stop, count):
    return ("linspace", start, stop, count)


ALPHA_30, ALPHA_20 = _linspace(0.01, 0.6, 30), _linspace(0.01, 0.6, 20)
FIG17 = {"figure": "paper_fig17", "t_max": 2000, "problem.Delta": [0.0], "problem.lam": [0.5, 0.1, 0.05],
         "problem.alpha": ALPHA_30}
FIG20_RATIOS = (0.5, 0.6, 0.75, 0.9, 1.0)  # kappa* / kappa of the five pairs of each paper/fig20<x>
# The paper's protocol: GOE design, d = 100, h = 0.005, 10 seeds, sigma0 = 1 unless listed; values of
# the problem keys as the job grid has them (one value or the sweep), alpha grids as numpy linspace.
PROTOCOL = {
    "fig1": {"figure": "paper_fig1", "d": 150, "t_max": 200, "problem.kappa": [0.4], "problem.kappa_star": [0.3],
             "problem.alpha": [0.25, 0.4], "problem.lam": [0.0], "problem.Delta": [0.0]},
    "fig2": {"figure": "paper_fig2", "t_max": 2000, "problem.kappa": [0.7], "problem.kappa_star": [0.5],
             "problem.alpha": ALPHA_30, "problem.lam": [0.5, 0.1, 0.05], "problem.Delta": [0.0]},
    "fig5": {"figure": "paper_fig5", "t_max": 5000, "problem.kappa": [0.4], "problem.kappa_star": [0.3],
             "problem.alpha": _linspace(0.08, 0.5, 11), "problem.lam": [0.01], "problem.Delta": [0.25, 0.5]},
    "fig6a": {"figure": "paper_fig6", "t_max": 5000, "problem.kappa": [0.4], "problem.kappa_star": [0.3],
              "problem.alpha": ALPHA_20, "problem.lam": [0.01], "problem.Delta": [0.1, 0.25, 0.5]},
    "fig6b": {"figure": "paper_fig6", "t_max": 5000, "problem.kappa": [0.4], "problem.kappa_star": [0.3],
              "problem.alpha": ALPHA_20, "problem.lam": [0.1, 0.05, 0.01, 0.005], "problem.Delta": [1.0]},
    "fig9": {"figure": "paper_fig9", "t_max": 10000, "problem.kappa": [0.7], "problem.kappa_star": [0.5],
             "problem.alpha": _linspace(0.01, "alpha_PR + 0.1", 30), "problem.lam": [0.0], "problem.Delta": [0.0],
             "gamma": [1, 0.5, 0.1, 0.01]},
    "fig10": {"figure": "paper_fig10", "t_max": 2000, "seeds": 20, "problem.kappa": [0.7], "problem.kappa_star": [0.5],
              "problem.alpha": _linspace(0.01, 0.8, 40), "problem.lam": [0.0], "problem.Delta": [0.5],
              "gamma": [1, 0.1, 0.01]},
    "fig12": {"figure": "paper_fig12", "d": 150, "t_max": 1000, "design": ["gaussian", "goe"],
              "problem.kappa": [0.5], "problem.kappa_star": [0.2], "problem.alpha": _linspace(0.11, 0.47, 9),
              "problem.lam": [0.1, 0.0], "problem.Delta": [0.0]},
    "fig14": {"figure": "paper_fig14", "t_max": 5000, "problem.kappa": [0.4], "problem.kappa_star": [0.3],
              "problem.alpha": _linspace(0.02, 0.8, 14), "problem.lam": [0.01], "problem.Delta": [0.0]},
    "fig17a": {**FIG17, "problem.kappa": [0.5], "problem.kappa_star": [0.2, 0.3, 0.5]},
    "fig17b": {**FIG17, "problem.kappa": [0.7], "problem.kappa_star": [0.3, 0.5, 0.6, 0.7]},
    "fig18a": {**FIG17, "figure": "paper_fig18", "problem.Delta": [0.5], "problem.kappa": [0.5],
               "problem.kappa_star": [0.2, 0.3, 0.5]},
    "fig18b": {**FIG17, "figure": "paper_fig18", "problem.Delta": [0.5], "problem.kappa": [0.7],
               "problem.kappa_star": [0.3, 0.5, 0.6, 0.7]},
    "fig19": {"figure": "paper_fig19", "t_max": 5000, "problem.kappa": [0.7, 0.5, 0.4, 0.35],
              "problem.kappa_star": [0.3], "problem.alpha": ALPHA_20,
              "problem.lam": [0.1, 0.05, 0.025, 0.005, 0.002], "problem.Delta": [1.0]},
    **{f"fig20{x}": {"figure": "paper_fig20", "t_max": 10000, "seeds": 5, "problem.kappa": [k],
                     "problem.kappa_star": [round(k * r, 4) for r in FIG20_RATIOS], "problem.alpha": "around alpha_PR",
                     "problem.lam": [0.0], "problem.Delta": [0.0]}
       for x, k in zip("abcde", (0.2, 0.4, 0.6, 0.8, 1.0))},
}
QUICK = {"fig1_quick": "fig1", "fig2_quick": "fig2", "fig5_quick": "fig5", "fig6_quick": "fig6b", "fig9_quick": "fig9",
         "fig10_quick": "fig10", "fig12_quick": "fig12", "fig14_quick": "fig14", "fig17_quick": "fig17a",
         "fig18_quick": "fig18a", "fig19_quick": "fig19", "fig20_quick": "fig20c"}
THEORY_ONLY = (3, 8, 11, 13, 15, 21)


def values(cfg, key: str) -> list:
    """The values ``key`` takes over the preset's jobs: its sweep, else its one configured value."""
    return sweep_values(cfg).get(key) or [OmegaConf.select(cfg, key)]


def number_of_jobs(cfg) -> int:
    return math.prod(grid(cfg).values())


def check_alphas(alphas: list, expected, kappa: float, kappa_stars: list) -> None:
    """``alphas`` against a list, a ``_linspace`` (4 significant digits), or 40 values covering each pair's
    perfect-recovery threshold of the lam = 0 flow by at least 0.09 on both sides (Fig. 20)."""
    from quadflow.theory import perfect_recovery_threshold

    if expected == "around alpha_PR":
        thresholds = [perfect_recovery_threshold(kappa, ks, unregularized=True) for ks in kappa_stars]
        assert len(alphas) == 40 and min(alphas) <= max(0.01, min(thresholds) - 0.09)
        assert max(alphas) >= max(thresholds) + 0.09
    elif isinstance(expected, tuple):
        _, start, stop, count = expected
        if stop == "alpha_PR + 0.1":
            stop = perfect_recovery_threshold(kappa, kappa_stars[0], unregularized=True) + 0.1
        assert np.allclose(alphas, np.linspace(start, stop, count), rtol=1e-3, atol=0)
    else:
        assert alphas == expected


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_each_paper_preset_is_the_papers_protocol(name):
    from quadflow.viz.figures import FIGURES

    expected = PROTOCOL[name]
    with hydra_loader():
        cfg = preset(f"paper/{name}")
    assert cfg.problem.d == expected.get("d", 100) and cfg.trainer.h == 0.005
    assert cfg.trainer.h * cfg.trainer.steps == pytest.approx(expected["t_max"], rel=1e-12)
    assert values(cfg, "data.design") == expected.get("design", ["goe"])
    assert values(cfg, "seed") == [0] and cfg.replicas == expected.get("seeds", 10)  # seeds 0 ... R-1 in each job
    sigma0 = values(cfg, "problem.sigma0")
    assert [s ** 2 for s in sigma0] == pytest.approx(expected.get("gamma", [1.0]), rel=1e-4)  # gamma = sigma0^2
    for key in ("problem.kappa", "problem.kappa_star", "problem.lam", "problem.Delta"):
        assert values(cfg, key) == expected[key], key
    check_alphas(values(cfg, "problem.alpha"), expected["problem.alpha"], expected["problem.kappa"][0],
                 expected["problem.kappa_star"])
    assert cfg.figure == expected["figure"] and cfg.figure in FIGURES


@pytest.mark.parametrize("name", sorted(QUICK))
def test_each_quick_paper_preset_is_a_smaller_grid_of_its_figure_whose_every_job_is_valid(name):
    from quadflow.cli.sweeps import check_sweep

    with hydra_loader() as loader:
        quick, full = preset(f"paper/{name}"), preset(f"paper/{QUICK[name]}")
        errors, _ = check_sweep(quick, loader)  # every job's values in range (memory is this machine's business)
    assert not errors, errors
    assert 30 <= quick.problem.d <= 50 and quick.data.design == full.data.design and quick.figure == full.figure
    runs = lambda cfg: number_of_jobs(cfg) * cfg.replicas  # noqa: E731 - jobs x seeds
    assert quick.problem.kappa == full.problem.kappa and number_of_jobs(quick) <= 24 and runs(quick) < runs(full)
    assert quick.trainer.h * quick.trainer.steps < full.trainer.h * full.trainer.steps
    for key, swept in sweep_values(quick).items():
        assert set(swept) <= set(values(full, key)) or key == "problem.alpha", key  # a subset of the paper's values
    for key in ("problem.lam", "problem.Delta", "problem.kappa_star"):  # swept or fixed: the paper's values
        assert set(values(quick, key)) <= set(values(full, key)), key


@pytest.mark.parametrize("n", THEORY_ONLY)
def test_each_theory_only_paper_preset_is_one_zero_step_job_that_draws_its_figure(n):
    from quadflow.viz.figures import FIGURES

    with hydra_loader():
        cfg = preset(f"paper/fig{n}")
    assert cfg.figure == f"paper_fig{n}" and not FIGURES[cfg.figure].needs_jobs
    assert cfg.trainer.steps == 0 and list(cfg.theory) == [] and not cfg.hydra.sweeper.params


def test_settings_of_a_theory_left_out_are_ignored_with_a_warning():
    # a preset may set theory.dmft.max_steps; with theory=[longtime] that node has no _target_
    from quadflow.cli.build import build_theories

    cfg = compose_config("experiment=paper/fig14", "theory=[longtime]", "+theory.dmft.max_steps=4000")
    with pytest.warns(RuntimeWarning, match=r"theory.dmft has settings \(max_steps\) but dmft is not in theory"):
        theories = build_theories(cfg)
    assert list(theories) == ["longtime"]
