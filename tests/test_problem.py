"""Problem and its d-free Ratios: validation, and the way from one to the other."""
import dataclasses

import pytest

import quadflow
import quadflow.theory
from quadflow.problem import Problem, Ratios, as_ratios

GOOD = dict(kappa=1.5, kappa_star=0.5, alpha=1.0, Delta=0.1, lam=0.05, sigma0=1.0)


@pytest.mark.parametrize("key, value, allowed", [
    ("kappa", -1.0, "> 0"), ("kappa_star", 0, "> 0"), ("alpha", float("nan"), "> 0"), ("sigma0", float("inf"), "> 0"),
    ("Delta", -0.1, ">= 0"), ("lam", -1e-3, ">= 0"), ("kappa", "1.5", "> 0"),
])
def test_a_bad_ratio_is_one_line_naming_key_value_and_range(key, value, allowed):
    with pytest.raises(ValueError) as err:
        Ratios(**{**GOOD, key: value})
    message = str(err.value)
    assert message == f"{key} must be a finite number {allowed}, got {value!r}" and "\n" not in message
    with pytest.raises(ValueError) as same:  # the Problem's own check, word for word
        Problem(d=16, **{**GOOD, key: value})
    assert str(same.value) == message


def test_ratios_and_problem_go_from_one_to_the_other():
    r = Ratios(**GOOD)
    p = r.at(32)
    assert p == Problem(d=32, **GOOD) and p.ratios == r and p.ratios.at(32) == p
    assert Ratios(kappa=1.0, kappa_star=0.5, alpha=2.0) == Ratios(1.0, 0.5, 2.0, 0.0, 0.0, 1.0)
    assert as_ratios(p) == as_ratios(r) == r
    with pytest.raises(TypeError, match="expected a quadflow Ratios or Problem, got dict"):
        as_ratios(GOOD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.alpha = 2.0
    with pytest.raises(ValueError, match="d must be an integer >= 2, got 1"):
        r.at(1)


def test_ratios_is_exported_from_quadflow_and_quadflow_theory():
    assert quadflow.Ratios is quadflow.theory.Ratios is Ratios
    assert "Ratios" in quadflow.__all__ and "Ratios" in quadflow.theory.__all__
