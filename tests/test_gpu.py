"""CUDA checks of the simulation (run with ``pytest -m gpu`` on a machine with a GPU)."""
import numpy as np
import pytest
import torch

from quadflow import Problem, Simulation, simulate

pytestmark = pytest.mark.gpu


def test_cuda_trajectory_matches_cpu_in_fp64():
    """Same seeds, same counter-based streams: CUDA draws differ from CPU draws, so the
    datasets are two realisations; the curves must agree within finite-size spread
    (d = 48: seed-to-seed mse spread ~5 %; tolerance 15 %), and the teacher/init are identical."""
    p = Problem(d=48, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.05)
    cpu = simulate(p, steps=200, precision="fp64", device="cpu")
    gpu = simulate(p, steps=200, precision="fp64", device="cuda")
    assert gpu["mse"][0] == pytest.approx(cpu["mse"][0], rel=1e-10)  # S* and W0 are drawn on the CPU
    np.testing.assert_allclose(gpu["mse"], cpu["mse"], rtol=0.15)


@pytest.mark.parametrize("precision,tol", [("fp32", 1e-4), ("tf32", 0.05), ("bf16", 0.1)])
def test_cuda_precisions_against_fp64(precision, tol):
    """On CUDA every precision sees the same data; tf32 (10-bit mantissa) and bf16 (7-bit) round the matmuls."""
    p = Problem(d=256, kappa=2.0, kappa_star=0.5, alpha=1.0, lam=0.05)
    ref = simulate(p, steps=100, precision="fp64", device="cuda")
    run = simulate(p, steps=100, precision=precision, device="cuda")
    np.testing.assert_allclose(run["mse"], ref["mse"], rtol=tol)


@pytest.mark.parametrize("kappa", [0.5, 2.0])
def test_cuda_peak_memory_close_to_dataset(kappa):
    """Peak GPU memory of set-up + steps <= 1.15 x the stored inputs at d = 1024, alpha = 1 (fp32)."""
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    p = Problem(d=1024, kappa=kappa, kappa_star=0.5, alpha=1.0, lam=0.05)
    sim = Simulation(p, device="cuda", precision="fp32")
    sim.run(2, record_steps=[])
    dataset = sim.data.inputs.numel() * sim.data.inputs.element_size()
    assert torch.cuda.max_memory_allocated() - base <= 1.15 * dataset
