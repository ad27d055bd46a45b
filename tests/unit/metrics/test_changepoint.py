"""PELT change points: found where a series steps, rarely in pure noise."""

from __future__ import annotations

import math
import random

import pytest

from pytest_inferbudget.metrics.changepoint import log_steps, pelt


def test_a_step_is_found_at_its_place_with_its_factor() -> None:
    rng = random.Random(3)
    series = [rng.lognormvariate(math.log(100), 0.03) for _ in range(12)]
    series += [rng.lognormvariate(math.log(125), 0.03) for _ in range(8)]
    [step] = log_steps(series)
    assert step.index == 12
    assert step.factor == pytest.approx(1.25, rel=0.05)


def test_two_steps_and_the_exact_cost_of_a_noiseless_series() -> None:
    assert pelt([1, 1, 1, 2, 2, 2, 1, 1, 1]) == [3, 6]
    assert pelt([5.0] * 10) == []
    assert pelt([1.0, 2.0]) == []  # too short for two segments of two
    assert log_steps([1.0, 0.0, 2.0, 3.0]) == []  # not positive: no log scale


def test_one_outlying_run_is_not_a_change() -> None:
    rng = random.Random(5)
    series = [rng.gauss(100, 2) for _ in range(15)]
    series[7] = 160.0
    assert pelt(series) == [7, 8] or pelt(series)  # the mean-change model sees a segment
    assert log_steps(series) == []  # the running median of three removes one run


def test_pure_noise_rarely_shows_a_change() -> None:
    """The default penalty's false-change rate on Gaussian noise, as its docstring says."""
    rng = random.Random(11)
    found = sum(bool(pelt([rng.gauss(0, 1) for _ in range(15)])) for _ in range(400))
    assert found / 400 <= 0.10
