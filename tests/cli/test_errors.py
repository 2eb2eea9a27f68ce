"""Overrides Hydra would refuse (or accept and then ignore or fail on) are one `error:` line, exit code 2, with
the nearest valid key or group option; valid command lines, sweeps and Hydra's own flags pass."""
import pytest
from conftest import CONF
from test_app import run_app

from quadflow.cli.app import register_configs
from quadflow.cli.errors import CommandLineError, check_command_line


def check(*argv: str) -> None:
    register_configs()
    check_command_line(list(argv), str(CONF), "config")


@pytest.mark.parametrize("argv,message", [
    (["problem.kapa=1"], "problem.kapa=1: no key problem.kapa; did you mean problem.kappa?"),
    (["+problem.kapa=1"], "+problem.kapa=1: no key problem.kapa; did you mean problem.kappa?"),
    (["+seeed=1"], "+seeed=1: no key seeed; did you mean seed?"),
    (["optim.momentum=0.9"], "optim.momentum=0.9: optim=gd (torch.optim.SGD) has no key momentum; torch.optim.SGD "
                             "takes it: write +optim.momentum=0.9 (optim=momentum sets it)"),
    (["optim=adam", "+optim.momentum=0.9"], "+optim.momentum=0.9: optim=adam (torch.optim.Adam) takes no momentum "
                                            "(optim=momentum sets it)"),
    (["optim=adam", "optim.beta=[0.9,0.99]"], "takes no beta; did you mean optim.betas?"),
    (["optim=adamw"], "optim=adamw: no option adamw in group optim (adam, gd, momentum, rk4); did you mean "
                      "optim=adam? (or optim._target_=torch.optim.AdamW)"),
    (["optim=RMSprop"], "no option RMSprop in group optim (adam, gd, momentum, rk4); for torch.optim.RMSprop: "
                        "optim._target_=torch.optim.RMSprop"),
    (["theory=[dmtf]"], "theory=[dmtf]: no option dmtf in group theory (dmft, longtime, population); did you mean "
                        "theory=[dmft]?"),
    (["experiment=paper/fig77"], "no option paper/fig77 in group experiment (agreement_map, double_descent, "
                                 "finite_size, learning_curves, optuna_step_size, overparam, spectrum, universality, "
                                 "paper/fig1, paper/fig10, paper/fig10_quick, paper/fig11, paper/fig12, "
                                 "paper/fig12_quick, paper/fig13, paper/fig14, paper/fig14_quick, paper/fig15, "
                                 "paper/fig16, paper/fig17_quick, paper/fig17a, paper/fig17b, paper/fig18_quick, "
                                 "paper/fig18a, paper/fig18b, paper/fig19, paper/fig19_quick, paper/fig1_quick, "
                                 "paper/fig2, paper/fig20_quick, paper/fig20a, paper/fig20b, paper/fig20c, "
                                 "paper/fig20d, paper/fig20e, paper/fig21, paper/fig2_quick, paper/fig3, paper/fig4, "
                                 "paper/fig4_quick, paper/fig5, paper/fig5_quick, paper/fig6_quick, paper/fig6a, "
                                 "paper/fig6b, paper/fig7, paper/fig7_quick, paper/fig8, paper/fig9, "
                                 "paper/fig9_quick); did you mean experiment=paper/fig7?"),
    (["-m", "theory=[dmft],[dmtf]"], "did you mean theory=[dmft],[dmft]?"),
    (["theory=[population]", "theory.dmft.d_eff=96"], "theory dmft is not selected: add it to theory=[...]"),
    (["theory.dmft.d_ef=96"], "theory.dmft (quadflow.cli.theories.DMFT) takes no d_ef; did you mean "
                              "theory.dmft.d_eff?"),
    (["trainer.lam=0.1"], "did you mean problem.lam?"),
    (["optm=adam"], "optm=adam: no key optm; did you mean optim?"),
    (["problem.foo=1"], "(problem has d, kappa, kappa_star, alpha, Delta, lam, sigma0)"),
    (["problem.d=1e9"], "problem.d=1e9: Value '1000000000.0' of type 'float' could not be converted to Integer; "
                        "write problem.d=1000000000"),
    (["problem.alpha=0.5,1"], "problem.alpha=0.5,1 gives several values: add -m"),
    (["-m", "problem.alpha=0.5,abc"], "problem.alpha=abc: Value 'abc' of type 'str' could not be converted to Float"),
    (["hydra/launcher=slrum"], "did you mean hydra/launcher=slurm?"),
    (["hydra.run.dri=x"], "did you mean hydra.run.dir?"),
    (["hydra.sweeper.n_trials=3"], "takes no n_trials (hydra/sweeper=optuna sets it)"),
    (["problem.d=[1"], "cannot parse the overrides"),
])
def test_bad_override_is_one_line_naming_the_nearest(argv, message):
    with pytest.raises(CommandLineError) as err:
        check(*argv)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["--cfg", "job", "--resolve", "problem.d=8"],
    ["+optim.momentum=0.9"], ["optim=momentum", "optim.momentum=0.5"],
    ["optim._target_=torch.optim.AdamW", "+optim.weight_decay=0.01", "optim.lr=1e-3"],
    ["student._target_=mypkg.MyStudent"], ["+callbacks.mine._target_=mypkg.MyCallback"],
    ["~seed"], ["theory=[]"], ["experiment=double_descent", "trainer.h=0.01"], ["-m", "experiment=paper/fig7_quick"],
    ["-m", "problem.alpha=0.5,1", "optim=gd,adam", "seed=range(3)"],
    ["-m", "experiment=optuna_step_size", "hydra.sweeper.n_trials=30", "trainer.h=tag(log,interval(0.01,0.3))"],
    ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "problem.d=1024,2048"],
    ["hydra.run.dir=/tmp/x", "hydra.job.chdir=false"],
])
def test_valid_command_lines_pass(argv):
    check(*argv)


def test_the_app_prints_one_error_line_with_exit_code_2(tmp_path):
    """Hydra's own errors and a key added with + that nothing takes: one line on stderr, nothing run."""
    for argv, message in [(["problem.kapa=1"], "did you mean problem.kappa?"),
                          (["+seeed=1"], "did you mean seed?"),
                          (["-m", "optim=gd,adamw"], "did you mean optim=gd,adam?")]:
        proc = run_app([*argv, f"hydra.run.dir={tmp_path}", f"hydra.sweep.dir={tmp_path}"], check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [f"error: {proc.stderr[7:].strip()}"] and message in proc.stderr
        assert proc.stdout == "" and not any(tmp_path.iterdir())
