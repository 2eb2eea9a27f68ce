"""Students other than the built-in network train at the default step: their loss is scaled for h."""
import pytest
import torch

from quadflow import Problem, QuadraticNetwork, Simulation
from quadflow.models import SecondLayerQuadratic
from quadflow.models.objective import STEP_MARGIN
from students import TanhMLP  # tests/cli/students.py

# the default problem (conf/problem/default.yaml) at d = 24, where GD at h = 0.05 on the unscaled loss
# diverges for both autograd students (top Hessian eigenvalues 82 and 700 at initialisation)
P = Problem(d=24, kappa=1.5, kappa_star=0.5, alpha=2.0, Delta=0.0, lam=0.05, sigma0=1.0)


@pytest.mark.parametrize("student", [QuadraticNetwork, SecondLayerQuadratic, TanhMLP])
def test_students_train_at_the_default_settings(student):
    """h = 0.05 and 600 steps, the defaults of conf/trainer/default.yaml: no divergence, the loss goes down
    tenfold, and the run is not marked unstable; the built-in network is never scaled."""
    sim = Simulation(P, h=0.05, student=student)
    records = []
    sim.run(600, record_steps=[0, 300, 600], on_record=records.append)
    losses = [r["train_loss"] for r in records]
    assert losses[2] < losses[1] < losses[0] and losses[2] < 0.1 * losses[0]
    assert sim.guard.unstable is None
    top, _ = sim.objective.sharpness(sim.student)
    if student is QuadraticNetwork:
        assert sim.objective.loss_scale == 1.0
    else:
        assert sim.objective.loss_scale < 0.3 and 0.05 * sim.objective.loss_scale * top < 2 * STEP_MARGIN


def test_the_built_in_network_is_not_scaled_even_where_its_step_is_too_large():
    """The paper's GD at any h: a too-large h oscillates or diverges, it is not slowed down."""
    sim = Simulation(P, h=0.2)
    assert sim.objective.loss_scale == 1.0
    assert sim.objective.sharpness(sim.student)[0] * 0.2 > STEP_MARGIN


def test_scaled_student_resumes_bitwise():
    """The loss scale and the power-iteration vector are in the checkpoint state."""
    p = Problem(d=12, kappa=1.5, kappa_star=0.5, alpha=2.0, lam=0.05)
    full = Simulation(p, h=0.05, precision="fp64", student=TanhMLP)
    full.run(60, record_steps=[])
    first = Simulation(p, h=0.05, precision="fp64", student=TanhMLP)
    first.run(35, record_steps=[])
    resumed = Simulation(p, h=0.05, precision="fp64", student=TanhMLP)
    assert resumed.objective.loss_scale > full.objective.loss_scale  # it sharpened: the scale went down
    resumed.load_state_dict(first.state_dict())
    resumed.run(60, record_steps=[])
    assert resumed.objective.loss_scale == full.objective.loss_scale
    for a, b in zip(resumed.student.parameters(), full.student.parameters()):
        assert torch.equal(a, b)
