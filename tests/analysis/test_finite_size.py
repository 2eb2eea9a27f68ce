"""quadflow.analysis.extrapolate on synthetic data with a known d -> infinity limit.

Coverage tolerance: with 200 independent draws, the fraction of draws whose band holds the
true limit is binomial around its nominal 0.9545 with standard deviation 0.015. The accepted
range [0.92, 0.985] is about 2.3 sd below and 2 sd above it: a correct error passes (the draws
are seeded, so each test is deterministic; a correct error would pass for about 97 % of seeds),
while errors 1.5x too small (coverage 0.78-0.89 here) or 2x too large (0.995-1.0) fail, and
1.5x too large fails where the errors are known (coverage 1.0). Measured with the seeds used:
0.955 (given errors), 0.935 (seed errors), 0.965 (residuals), 0.94 (power-law p), 0.925 (gap p).
"""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from quadflow.analysis import Extrapolation, extrapolate, extrapolate_or_explain
from quadflow.io import dumps

SIZES = np.array([16.0, 24, 32, 48, 64])
A, B = 0.3, 2.0
DRAWS, NOMINAL, LOW, HIGH = 200, 0.9545, 0.92, 0.985


def one_over_d(d):
    return A + B / d


def power_half(d):
    return A + B / np.sqrt(d)


def seeds_of(law, rng, seeds=6, sizes=SIZES, noise=0.2):
    """``seeds`` values at each size: the law plus Gaussian noise of std ``noise / d`` (shrinking with d)."""
    d = np.repeat(sizes, seeds)
    return d, law(d) + rng.normal(size=d.size) * noise / d


def test_given_errors_cover_the_limit_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    sem = 0.05 / SIZES
    hits = [abs(ex.value - A) < 2 * ex.error for ex in
            (extrapolate(SIZES, one_over_d(SIZES) + rng.normal(size=5) * sem, sem, model="1/d")
             for _ in range(DRAWS))]
    assert LOW <= np.mean(hits) <= HIGH, np.mean(hits)


def test_seed_errors_cover_the_limit_at_the_nominal_rate():
    # Errors from 6 seeds per size: the band is Student's t on the seeds' degrees of freedom
    # (5 sizes x 5 - 2 = 23); +-2 s.e. alone covers about 93 %.
    rng = np.random.default_rng(1)
    fits = [extrapolate(*seeds_of(one_over_d, rng)) for _ in range(DRAWS)]
    assert all(ex.errors_from == "seeds" and ex.error_dof == 23 for ex in fits)
    hits = [lo < A < hi for lo, hi in (ex.interval() for ex in fits)]
    assert LOW <= np.mean(hits) <= HIGH, np.mean(hits)
    # pure 1/d data: the power law is chosen only by chance, at about the 5 % level of the test
    # (binomial sd 1.5 % over 200 draws: 10 % is 3 sd above it)
    assert np.mean([ex.model == "power" for ex in fits]) <= 0.10


def test_one_seed_per_size_takes_its_errors_from_the_residuals():
    rng = np.random.default_rng(2)
    fits = [extrapolate(*seeds_of(one_over_d, rng, seeds=1, noise=0.02 * SIZES), model="1/d")
            for _ in range(DRAWS)]  # constant noise 0.02: the residual scatter is the right model
    assert all(ex.errors_from == "residuals" and ex.error_dof == 3 for ex in fits)
    assert LOW <= np.mean([lo < A < hi for lo, hi in (ex.interval() for ex in fits)]) <= HIGH


def test_a_power_law_is_recognised_with_its_exponent():
    rng = np.random.default_rng(3)
    sizes = np.array([16.0, 24, 32, 48, 64, 96, 128])
    fits = [extrapolate(*seeds_of(power_half, rng, sizes=sizes, noise=0.05)) for _ in range(DRAWS)]
    assert all(ex.model == "power" for ex in fits)
    assert LOW <= np.mean([abs(ex.p - 0.5) < 2 * ex.p_err for ex in fits]) <= HIGH
    ex = fits[0]
    assert ex.selection["p_value"] < 1e-6 and ex.alternatives["1/d"].chi2 > 100 * ex.fit.chi2
    assert abs(ex.value - A) < 3 * ex.error and ex.p == ex.fit.p


def test_exact_data_are_fitted_exactly():
    ex = extrapolate(SIZES, power_half(SIZES), np.full(5, 1e-6), model="power")
    assert ex.value == pytest.approx(A, abs=1e-8) and ex.p == pytest.approx(0.5, abs=1e-6)
    ex = extrapolate(SIZES, one_over_d(SIZES), np.full(5, 1e-3))
    assert ex.model == "1/d" and ex.fit.b == pytest.approx(B, rel=1e-10) and ex.p_err == 0


def test_gap_law_exponent_is_recovered():
    theory = 0.8
    law = lambda d: theory * (1 + 0.5 * d ** -0.7)  # noqa: E731
    exact = extrapolate(SIZES, law(SIZES), np.full(5, 1e-6), theory=theory)
    assert exact.gap_law.p == pytest.approx(0.7, abs=1e-6) and exact.gap_law.b == pytest.approx(0.5, rel=1e-5)
    rng = np.random.default_rng(4)
    fits = [extrapolate(*seeds_of(law, rng, noise=0.05), theory=theory) for _ in range(DRAWS)]
    # the gap law's errors rest on the seeds' 23 degrees of freedom: a Student-t band, as in interval()
    t = stats.t.isf((1 - NOMINAL) / 2, fits[0].error_dof)
    assert LOW <= np.mean([abs(ex.gap_law.p - 0.7) < t * ex.gap_law.p_err for ex in fits]) <= HIGH
    assert np.median([ex.gap for ex in fits]) == pytest.approx(0, abs=0.01)


def test_sizes_at_2_and_5_percent_gap():
    theory = 0.8
    ex = extrapolate(SIZES, theory * (1 + 0.5 * SIZES ** -0.5), np.full(5, 1e-7), theory=theory, model="power")
    # gap(d) = 0.5 d^-1/2: 2 % at d = (0.5/0.02)^2 = 625, 5 % at (0.5/0.05)^2 = 100
    for law in ("gap", "value"):
        sizes = ex.gap_sizes(law=law)
        assert sizes[0.02] == pytest.approx(625, rel=1e-4) and sizes[0.05] == pytest.approx(100, rel=1e-4)
    off = extrapolate(SIZES, theory * (1.03 + 0.5 / SIZES), np.full(5, 1e-7), theory=theory, model="1/d")
    # the limit is 3 % off: never within 2 %; within 5 % from 0.5/d = 0.02, d = 25
    assert off.size_at_gap(0.02, law="value") is None
    assert off.size_at_gap(0.05, law="value") == pytest.approx(25, rel=1e-6)
    assert off.gap == pytest.approx(0.03, abs=1e-6)
    growing = extrapolate(SIZES, theory * (1 + 1e-3 * SIZES), np.full(5, 1e-7), theory=theory, model="1/d")
    assert growing.gap_law.p < 0 and growing.size_at_gap(0.05) is None  # a gap that opens up
    with pytest.raises(ValueError, match="size_at_gap needs the theory value"):
        extrapolate(SIZES, one_over_d(SIZES), np.full(5, 1e-3)).size_at_gap(0.02)


def test_summary_is_plain_json():
    rng = np.random.default_rng(5)
    ex = extrapolate(*seeds_of(one_over_d, rng), theory=A)
    out = json.loads(dumps(ex.to_dict()))
    assert out["model"] == ex.model and out["fit"]["a"] == ex.value and out["sizes"] == list(SIZES)
    assert set(out["gap_sizes"]) == {"gap", "value"} and "0.02" in out["gap_sizes"]["gap"]
    assert len(out["std"]) == 5 and out["seed_law"]["r"] == pytest.approx(1, abs=0.3)
    assert isinstance(ex, Extrapolation)


@pytest.mark.parametrize("args, kwargs, message", [
    (([64, 128], [0.1, 0.2], [0.01, 0.01]), {},
     "extrapolate needs at least 3 distinct sizes d for the power law a + b d^-p (got 2: 64, 128); "
     "add a size or use model='1/d'"),
    (([64, 64, 64], [0.1, 0.2, 0.3]), {"model": "1/d"},
     "extrapolate needs at least 2 distinct sizes d for a + b/d (got 1: 64); add a size"),
    (([64, 128], [0.1, 0.2]), {"model": "1/d"},
     "extrapolate needs an error estimate for a + b/d (2 values at sizes 64, 128): give sem, "
     "add seeds (>= 2 at some size) or add a size"),
    (([64, 128, 256], [0.1, 0.2, 0.3]), {},
     "extrapolate needs an error estimate for the power law a + b d^-p (3 values at sizes 64, 128, 256): "
     "give sem, add seeds (>= 2 at some size) or add a size"),
    (([64, 128, 256], [0.1, math.nan, 0.3]), {}, "extrapolate: values must be finite numbers, got values[1] = nan"),
    (([64, 0, 256], [0.1, 0.2, 0.3]), {}, "extrapolate: d must be finite numbers > 0, got d[1] = 0.0"),
    (([64, 128, 256], [0.1, 0.2]), {}, "extrapolate: d and values must have the same length, got 3 and 2"),
    (([64, 128, 256], [0.1, 0.2, 0.3], [0.1, 0.1]), {},
     "extrapolate: sem must have the length of values (3), got 2"),
    (([64, 128, 256], [0.1, 0.2, 0.3], [0.1, 0.0, 0.1]), {},
     "extrapolate: sem must be finite numbers > 0, got sem[1] = 0.0"),
    (([64, 64, 256], [0.1, 0.2, 0.3], [0.1, 0.1, 0.1]), {},
     "extrapolate: with sem, values are per-size means and d must be distinct, got d = 64, 64, 256"),
    (([64, 128, 256], [0.1, 0.2, 0.3], [0.1] * 3), {"model": "exp"},
     "extrapolate: model must be one of 'auto', '1/d', 'power', got 'exp'"),
    (([64, 128, 256], [0.1, 0.2, 0.3], [0.1] * 3), {"theory": 0.0},
     "extrapolate: theory must be a finite non-zero number or None, got 0.0"),
    (([64, 128, 256], [0.1, 0.2, 0.3], [0.1] * 3), {"p_range": (0, 2)},
     "extrapolate: p_range must be (low, high) with 0 < low < high, got (0, 2)"),
])
def test_refusals_name_the_argument_and_what_is_needed(args, kwargs, message):
    with pytest.raises(ValueError) as err:
        extrapolate(*args, **kwargs)
    assert str(err.value) == message


def test_extrapolate_or_explain_falls_back_and_says_why():
    d, y = np.repeat([64.0, 128], 4), np.array([0.2, 0.21, 0.19, 0.2, 0.15, 0.16, 0.14, 0.15])
    ex, refused = extrapolate_or_explain(d, y)
    assert ex.model == "1/d" and list(refused) == ["auto"] and "at least 3 distinct sizes" in refused["auto"]
    ex, refused = extrapolate_or_explain([64], [0.1])
    assert ex is None and set(refused) == {"auto", "1/d"}


def test_analysis_imports_without_hydra_wandb_or_matplotlib():
    code = ("import sys, quadflow.analysis\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'wandb', 'matplotlib'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
