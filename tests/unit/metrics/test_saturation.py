"""Saturation of repeated sampling: the coverage fit and N*, on data with known answers."""

from __future__ import annotations

import math
import random

import pytest

from pytest_inferbudget.metrics.saturation import (
    coverage_curve,
    fit_coverage,
    samples_for_coverage,
    saturation,
    saturation_samples,
)


def test_the_fit_recovers_the_parameters_of_an_exact_curve() -> None:
    a, b = -0.8, -0.45
    curve = [(k, math.exp(a * k**b)) for k in range(1, 40)]
    fit = fit_coverage(curve)
    assert fit is not None
    assert fit.a == pytest.approx(a, rel=1e-9) and fit.b == pytest.approx(b, rel=1e-9)
    k = samples_for_coverage(fit, 0.9)
    assert fit.coverage(k) == pytest.approx(0.9, rel=1e-9)
    assert fit_coverage([(1, 0.0), (2, 1.0)]) is None  # nothing strictly inside (0, 1)


def test_the_fit_from_sampled_problems_is_close_to_the_truth() -> None:
    """Problems of varied difficulty (success p_i from a Beta law) give a coverage curve of
    the Monkeys' shape; the unbiased pass@k curve of 64 samples recovers it."""
    rng = random.Random(4)
    ps = [rng.betavariate(0.3, 1.5) for _ in range(400)]
    counts = [(64, sum(rng.random() < p for _ in range(64))) for p in ps]
    fit = fit_coverage(coverage_curve(counts))
    assert fit is not None and fit.a < 0 and -1 < fit.b < 0
    truth_at_32 = sum(1 - (1 - p) ** 32 for p in ps) / len(ps)
    assert fit.coverage(32) == pytest.approx(truth_at_32, abs=0.05)


def test_n_star_is_where_one_more_sample_adds_under_epsilon() -> None:
    for p in (0.05, 0.3, 0.6, 0.9):
        n = saturation_samples(p, 0.01)
        assert p * (1 - p) ** n < 0.01 <= p * (1 - p) ** (n - 1) or p <= 0.01
    assert saturation_samples(0.3, 0.01) == 10  # 0.3 * 0.7**10 = 0.0085 < 0.01 <= 0.0121
    assert saturation_samples(1.0) == 1 and saturation_samples(0.0) == 0
    with pytest.raises(ValueError, match="epsilon"):
        saturation_samples(0.5, 0.0)


def test_saturation_flags_samples_past_n_star() -> None:
    easy = saturation([(8, 8), (8, 7), (8, 8)])  # pass@1 0.96: N* = 2
    assert easy is not None and easy.needed == 2 and easy.wasted == 6
    assert "N* = 2" in easy.describe()
    hard = saturation([(4, 1), (4, 0), (4, 1)])  # pass@1 0.17: N* = 17 > 4
    assert hard is not None and hard.wasted == 0
    assert saturation([(1, 1), (1, 0)]) is None  # one sample each: nothing repeated
