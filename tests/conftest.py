"""Shared test settings: highest fp32 matmul precision, one BLAS thread, W&B off."""
import os
import sys
from pathlib import Path

import pytest
import torch

CONF = Path(__file__).resolve().parents[1] / "conf"
sys.path.insert(0, str(Path(__file__).parent / "cli"))  # users' students of the tests (tests/cli/students.py)

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(1)  # test problems are tiny: extra BLAS threads only add sync cost


@pytest.fixture(autouse=True)
def _highest_matmul_precision():
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(old)


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests are skipped (not failed) on machines without CUDA, e.g. under ``-m gpu`` in CI."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def compose_config(*overrides: str):
    """conf/config.yaml composed by Hydra (no job started) with ``key=value`` overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from quadflow.cli.app import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
