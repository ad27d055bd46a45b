"""Speculative-decoding figures: the counts' ratios, and the i.i.d. model checked against
a simulation of it."""

from __future__ import annotations

import random

import pytest

from pytest_inferbudget.metrics.speculative import (
    accept_length,
    acceptance_rate,
    expected_tokens_per_step,
)


def test_acceptance_rate_is_accepted_over_drafted_and_none_without_a_draft() -> None:
    assert acceptance_rate(30, 40) == pytest.approx(0.75)
    assert acceptance_rate(0, 12) == 0.0
    assert acceptance_rate(0, 0) is None
    with pytest.raises(ValueError, match="exceed drafted"):
        acceptance_rate(5, 4)
    with pytest.raises(ValueError, match="drafted must be an integer >= 0"):
        acceptance_rate(0, -1)


def test_accept_length_counts_the_target_models_own_token_per_step() -> None:
    assert accept_length(0, 10) == 1.0  # every draft rejected: one token per step
    assert accept_length(40, 10) == 5.0  # gamma=4, all accepted: 4 + the bonus token
    assert accept_length(7, 4) == pytest.approx(11 / 4)
    assert accept_length(0, 0) is None


def test_expected_tokens_per_step_at_its_ends_and_against_the_closed_form() -> None:
    assert expected_tokens_per_step(0.0, 4) == 1.0
    assert expected_tokens_per_step(1.0, 4) == 5.0
    for alpha in (0.1, 0.5, 0.8, 0.999999):
        for gamma in (1, 3, 7):
            closed = (1 - alpha ** (gamma + 1)) / (1 - alpha)
            assert expected_tokens_per_step(alpha, gamma) == pytest.approx(closed, rel=1e-9)
    # continuous at alpha -> 1
    assert expected_tokens_per_step(1 - 1e-12, 4) == pytest.approx(5.0, rel=1e-9)
    for bad_alpha in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match="alpha must be a probability"):
            expected_tokens_per_step(bad_alpha, 4)
    with pytest.raises(ValueError, match="gamma"):
        expected_tokens_per_step(0.5, 0)


def test_the_formula_matches_a_simulated_iid_drafter() -> None:
    """Each step drafts gamma tokens, accepted one by one with probability alpha until the
    first rejection; the step emits the accepted ones plus one. The simulated counts give
    back alpha-hat and an accept length that the formula predicts from it (but note: the
    measured alpha-hat of such a drafter is below alpha, since tokens after a rejection are
    drafted and never accepted; the formula takes the per-token probability)."""
    rng = random.Random(7)
    alpha, gamma, steps = 0.6, 4, 20_000
    accepted = 0
    for _ in range(steps):
        for _ in range(gamma):
            if rng.random() >= alpha:
                break
            accepted += 1
    measured = accept_length(accepted, steps)
    assert measured == pytest.approx(expected_tokens_per_step(alpha, gamma), rel=0.02)
    rate = acceptance_rate(accepted, steps * gamma)
    assert rate is not None and rate < alpha
