"""Tokens saved and paired non-inferiority: hand-computed cases and R's PropCIs as oracle."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from pytest_inferbudget.metrics.noninferiority import (
    difference_bound,
    noninferiority,
    paired_outcomes,
    tango_score,
    tokens_saved,
    tokens_saved_ci,
)
from pytest_inferbudget.vocabulary import Verdict

Z95 = NormalDist().inv_cdf(0.95)


def test_paired_outcomes_count_the_discordant_problems() -> None:
    found = paired_outcomes([True, True, False, False, True], [True, False, True, False, False])
    assert (found.problems, found.wins, found.losses) == (5, 2, 1)
    assert (found.candidate_right, found.baseline_right) == (3, 2)
    assert found.difference == pytest.approx(1 / 5)


def test_at_margin_zero_the_score_is_mcnemars() -> None:
    # (wins - losses) / sqrt(wins + losses): 6 / sqrt(10)
    assert tango_score(8, 2, 20, 0.0) == pytest.approx(6 / math.sqrt(10))
    assert tango_score(0, 0, 20, 0.0) == 0.0  # no discordant pair: no evidence either way


def test_with_every_pair_concordant_the_lower_bound_has_a_closed_form() -> None:
    # wins = losses = 0: q = -d, so score(d) = sqrt(n) sqrt(-d / (1 + d)); it equals z at
    # d = -z^2 / (n + z^2)
    for n in (6, 12, 50):
        assert difference_bound(0, 0, n, 0.95, "lower") == pytest.approx(
            -(Z95**2) / (n + Z95**2), abs=1e-12
        )
        assert difference_bound(0, 0, n, 0.95, "upper") == pytest.approx(
            Z95**2 / (n + Z95**2), abs=1e-12
        )


def test_bounds_match_rs_propcis_scoreci_mp() -> None:
    # PropCIs::scoreci.mp(25, 28, 618, conf.level=0.90) -> [-0.0148, 0.0247]: the interval
    # of (28 - 25) / 618, so 28 wins and 25 losses; its ends are one-sided 0.95 bounds
    assert round(difference_bound(28, 25, 618, 0.95, "lower"), 4) == -0.0148
    assert round(difference_bound(28, 25, 618, 0.95, "upper"), 4) == 0.0247
    # scoreci.mp(60, 20, 1000) at 0.95 -> [-0.0584, -0.0231]
    assert round(difference_bound(20, 60, 1000, 0.975, "lower"), 4) == -0.0584
    assert round(difference_bound(20, 60, 1000, 0.975, "upper"), 4) == -0.0231


def test_a_bound_solves_the_score_equation_and_mirrors() -> None:
    lower = difference_bound(3, 1, 20, 0.95, "lower")
    assert tango_score(3, 1, 20, lower) == pytest.approx(Z95, abs=1e-9)
    assert difference_bound(1, 3, 20, 0.95, "upper") == pytest.approx(-lower)


def test_noninferiority_verdicts() -> None:
    twelve_ties = [True] * 6 + [False] * 6
    # all concordant, n = 12: lower bound -z^2 / (12 + z^2) = -0.184
    shown = noninferiority(twelve_ties, twelve_ties, margin=0.2, confidence=0.95)
    assert shown.verdict is Verdict.PASS
    assert shown.lower == pytest.approx(-(Z95**2) / (12 + Z95**2))
    assert noninferiority(twelve_ties, twelve_ties, margin=0.1, confidence=0.95).verdict is (
        Verdict.INCONCLUSIVE
    )
    # the candidate loses 8 of 12 problems the baseline got right: inferiority shown
    worse = noninferiority([False] * 8 + [True] * 4, [True] * 12, margin=0.1, confidence=0.95)
    assert worse.verdict is Verdict.FAIL and worse.upper < -0.1
    assert "0 right only with the candidate, 8 right only with the baseline" in worse.describe()
    with pytest.raises(ValueError, match="margin"):
        noninferiority([True], [True], margin=1.0, confidence=0.95)
    with pytest.raises(ValueError, match="confidence"):
        noninferiority([True], [True], margin=0.1, confidence=0.4)


def test_tokens_saved_is_a_ratio_of_totals() -> None:
    # 1 - (10 + 30) / (20 + 60): not the mean of per-problem ratios (which is also 0.5 here)
    assert tokens_saved([10, 30], [20, 60]) == pytest.approx(0.5)
    # a cheap problem cannot swing it: per-problem mean would be (0.9 - 1) / 2 = -0.05
    assert tokens_saved([1, 100], [10, 50]) == pytest.approx(1 - 101 / 60)
    assert tokens_saved([30], [20]) == pytest.approx(-0.5)  # spent more: negative
    with pytest.raises(ValueError, match="baseline spent no tokens"):
        tokens_saved([0], [0])
    with pytest.raises(ValueError, match="one candidate and one baseline"):
        tokens_saved([1, 2], [3])


def test_tokens_saved_interval_resamples_problems_in_pairs() -> None:
    low, high = tokens_saved_ci([5, 5, 5], [10, 10, 10], resamples=200)
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)  # every resample: half
    low, high = tokens_saved_ci([5, 20, 8, 30], [10, 20, 16, 30], resamples=500)
    assert low <= tokens_saved([5, 20, 8, 30], [10, 20, 16, 30]) <= high
    assert 0.0 <= low < high <= 0.5
