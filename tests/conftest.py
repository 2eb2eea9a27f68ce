"""Shared test settings: highest fp32 matmul precision, one BLAS thread, W&B off."""
import os

import pytest
import torch

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
