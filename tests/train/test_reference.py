"""The torch.optim loop reproduces the trajectories of quadflow's former home-made integrators (fp64).

tests/data/trajectories_9a5c334.npz was written by quadflow at commit 9a5c334 (GD on both routes and
the GOE design, heavy-ball momentum, Adam, RK4, and the population flow), every step recorded, seed 3.
The new code reorders no sum and changes no draw, so the gap is rounding: measured <= 5e-15; tolerance 1e-10.
"""
from pathlib import Path

import numpy as np
import pytest

from quadflow import Problem, simulate
from quadflow.theory.population import solve_population

REF = np.load(Path(__file__).resolve().parents[1] / "data" / "trajectories_9a5c334.npz")
CASES = {
    "gd_W": (dict(d=12, kappa=0.5, kappa_star=0.5, alpha=2.0, Delta=0.2, lam=0.05), dict(route="W"), 0.05, 60),
    "gd_S": (dict(d=12, kappa=1.5, kappa_star=0.5, alpha=2.0, Delta=0.2, lam=0.05), dict(route="S"), 0.05, 60),
    "gd_goe": (dict(d=8, kappa=1.0, kappa_star=0.5, alpha=2.0, Delta=0.1, lam=0.05), dict(design="goe"), 0.05, 40),
    "momentum": (dict(d=12, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.05),
                 dict(optim="momentum", optim_params={"momentum": 0.9}), 0.01, 60),
    "adam": (dict(d=12, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.05),
             dict(optim="adam", optim_params={"betas": (0.9, 0.999), "eps": 1e-8}), 0.01, 60),
    "rk4": (dict(d=12, kappa=1.0, kappa_star=0.5, alpha=2.0, lam=0.05), dict(optim="rk4"), 0.2, 30),
}


@pytest.mark.parametrize("name", CASES)
def test_trajectory_equals_9a5c334(name):
    problem, options, h, steps = CASES[name]
    run = simulate(Problem(**problem), h=h, steps=steps, seed=3, precision="fp64", record_steps=range(steps + 1),
                   rank_tol=1e-3, **options)
    for key in ("mse", "train_loss", "in_sample_error"):
        np.testing.assert_allclose(run[key], REF[f"{name}/{key}"], rtol=1e-10, err_msg=key)
    np.testing.assert_array_equal(run["rank_fraction"], REF[f"{name}/rank_fraction"])


@pytest.mark.parametrize("optim,h", [("gd", 0.05), ("rk4", 0.2)])
def test_population_flow_equals_9a5c334(optim, h):
    p = Problem(d=12, kappa=1.5, kappa_star=0.5, alpha=2.0, Delta=0.2, lam=0.05)
    run = solve_population(p, h=h, steps=40, seed=3, optim=optim, record_steps=range(41))
    for key in ("mse", "train_loss", "in_sample_error"):
        np.testing.assert_allclose(run[key], REF[f"population_{optim}/{key}"], rtol=1e-10, err_msg=key)
