"""The public API of quadflow.theory and its stable import paths."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def test_theory_imports_neither_the_training_loop_nor_the_app():
    """Every module under quadflow.theory, imported in a fresh interpreter, loads no quadflow.train, quadflow.cli,
    Hydra, OmegaConf or W&B module."""
    code = ("import importlib, pkgutil, sys\n"
            "import quadflow.theory as t\n"
            "names = [m.name for m in pkgutil.walk_packages(t.__path__, 'quadflow.theory.')]\n"
            "assert {'quadflow.theory.population', 'quadflow.theory.predictions', 'quadflow.theory.results',\n"
            "        'quadflow.theory.dmft.solver', 'quadflow.theory.static.longtime'} <= set(names), names\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'wandb')\n"
            "             or m.startswith(('quadflow.train', 'quadflow.cli')))\n"
            "assert not bad, bad\n"
            "from quadflow.theory.population import solve_population\n"
            "assert t.solve_population is solve_population\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_deprecated_predictions_path_warns_and_serves_the_app_classes():
    """quadflow.theory.predictions (the one test that imports it) gives quadflow.cli.theories' classes with a
    DeprecationWarning naming the new path, by attribute and as a Hydra ``_target_``; conf/ names the new path."""
    from hydra.utils import get_class

    import quadflow.cli.theories as theories
    import quadflow.theory.predictions as old

    for name in ("RunInfo", "Prediction", "Population", "LongTime", "DMFT"):
        with pytest.warns(DeprecationWarning, match=rf"import {name} from quadflow\.cli\.theories"):
            assert getattr(old, name) is getattr(theories, name)
    with pytest.warns(DeprecationWarning, match=r"_target_: quadflow\.cli\.theories\.DMFT"):
        assert get_class("quadflow.theory.predictions.DMFT") is theories.DMFT
    with pytest.raises(AttributeError):
        old.solve_dmft  # noqa: B018
    targets = [line.split(":", 1)[1].strip() for f in sorted((ROOT / "conf" / "theory").glob("*.yaml"))
               for line in f.read_text().splitlines() if line.strip().startswith("_target_:")]
    assert targets and all(t.startswith("quadflow.cli.theories.") for t in targets), targets
