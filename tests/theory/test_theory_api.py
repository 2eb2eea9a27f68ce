"""The public API of quadflow.theory and its stable import paths."""
import subprocess
import sys


def test_public_api_and_compatibility_paths_name_the_same_functions():
    import quadflow.theory as theory
    from quadflow.theory import dmft, longtime, thresholds
    from quadflow.theory.dmft import solver
    from quadflow.theory.static import longtime as static_longtime
    from quadflow.theory.static import thresholds as static_thresholds

    assert theory.solve_dmft is dmft.solve_dmft is solver.solve_dmft
    assert dmft.MIN_D_EFF is solver.MIN_D_EFF and dmft.memory_bytes is solver.memory_bytes
    for name in ("solve_longtime", "longtime_curve", "LongTimeSolution"):
        assert getattr(theory, name) is getattr(longtime, name) is getattr(static_longtime, name)
    for name in ("interpolation_threshold", "perfect_recovery_threshold", "parameter_count"):
        assert getattr(theory, name) is getattr(thresholds, name) is getattr(static_thresholds, name)
    assert set(theory.__all__) <= set(dir(theory))


def test_import_needs_no_hydra_or_wandb_and_population_is_lazy():
    code = ("import sys, quadflow.theory as t\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'wandb'))\n"
            "assert not bad, bad\n"
            "assert 'quadflow.theory.population' not in sys.modules\n"
            "from quadflow.theory.population import solve_population\n"
            "assert t.solve_population is solve_population\n")
    subprocess.run([sys.executable, "-c", code], check=True)
