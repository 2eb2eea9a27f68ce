"""Every file of every config group composes and instantiates; users' students and optimisers by one override."""
import pytest
import torch
from conftest import CONF, compose_config
from hydra.utils import instantiate

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

    cfg = compose_config("trainer.steps=1000000000000", "theory=[dmft]", "record.points=10", *SMALL)
    with pytest.raises(InsufficientMemoryError, match=r"no theory.dmft setting brings it below .* at most "
                                                      r"trainer.steps=\d+ with dmft here"):
        check_job_fits(cfg)
    assert "no theory.dmft setting" in validate_config(cfg)[0]  # a sweep's warning: that job is recorded failed
    check_job_fits(compose_config("trainer.steps=1000000000000", "theory=[population,longtime]", *SMALL))
    # RK4's DMFT has four kernel rows per step: its largest horizon is a quarter of GD's
    most = {}
    for optim in ("gd", "rk4"):
        with pytest.raises(InsufficientMemoryError) as err:
            check_job_fits(compose_config("trainer.steps=1000000000000", "theory=[dmft]", f"optim={optim}", *SMALL))
        most[optim] = int(str(err.value).split("at most trainer.steps=")[1].split()[0])
    assert abs(most["rk4"] - most["gd"] / 4) <= 1


def test_an_unknown_problem_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"problem.kapa is not a key of problem \(d, kappa, "):
        Job(compose_config("+problem.kapa=1", *SMALL), tmp_path)



def test_the_paper_figure_presets_compose_to_the_papers_protocol():
    # The paper's Fig. 7: d = 100, GOE design, kappa 0.3, kappa* 0.2, h 0.005 to t = 3000, 4 lam x 30 alpha x
    # 10 seeds; the quick variant changes d, the step, the horizon and the grid, and keeps the rest.
    from hydra.core.override_parser.overrides_parser import OverridesParser

    def grid(cfg) -> dict:
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
        return {o.key_or_group: len(list(o.sweep_iterator())) for o in parsed}

    def composed(name):
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        from quadflow.cli.app import register_configs

        register_configs()
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="config", overrides=[f"experiment={name}"], return_hydra_config=True)

    full = composed("paper/fig7")
    p = full.problem
    assert (p.d, p.kappa, p.kappa_star, p.Delta, p.sigma0) == (100, 0.3, 0.2, 0.0, 1.0)
    assert full.data.design == "goe" and full.trainer.h == 0.005 and full.trainer.h * full.trainer.steps == 3000
    assert full.figure == "paper_fig7" and list(full.theory) == ["longtime"]
    assert grid(full) == {"problem.lam": 4, "problem.alpha": 30, "seed": 10}
    quick = composed("paper/fig7_quick")
    assert (quick.problem.d, quick.trainer.h, quick.trainer.steps, quick.data.design) == (40, 0.01, 40000, "goe")
    assert quick.problem.kappa == 0.3 and quick.figure == "paper_fig7"
    assert grid(quick) == {"problem.lam": 2, "problem.alpha": 7, "seed": 2}
    fig4, fig16 = composed("paper/fig4"), composed("paper/fig16")
    assert (fig4.problem.kappa, fig4.problem.kappa_star, fig4.trainer.h * fig4.trainer.steps) == (0.35, 0.3, 5000)
    assert (fig4.problem.d, fig4.data.design, fig4.figure) == (100, "goe", "paper_fig4")
    assert grid(fig4) == {"problem.lam": 3, "problem.alpha": 20, "seed": 10}
    assert grid(fig16) == {"problem.kappa": 4, "problem.lam": 3, "problem.alpha": 20, "seed": 10}
    assert fig16.figure == "paper_fig16" and composed("paper/fig4_quick").problem.d == 40
