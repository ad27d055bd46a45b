"""The accuracy-efficiency metrics against brute force over k-subsets and exact arithmetic."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Hashable, Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from pytest_inferbudget.metrics.accuracy import (
    accuracy_per_token,
    bootstrap_ci,
    cost_of_pass,
    e3,
    eff_at_k,
    eff_at_k_problems,
    efficiency_score,
    maj_at_k,
    pass_at_k,
    pass_at_k_problems,
)

FAST = settings(max_examples=60, deadline=None)

scores_strategy = st.lists(
    st.floats(min_value=0.0, max_value=3.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=8,
)


def brute_eff(scores: Sequence[float], k: int) -> float:
    subsets = list(itertools.combinations(scores, k))
    return math.fsum(max(s) for s in subsets) / len(subsets)


def brute_pass(n: int, c: int, k: int) -> float:
    flags = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(flags, k))
    return sum(any(s) for s in subsets) / len(subsets)


def brute_maj(answers: Sequence[Hashable | None], correct: Hashable, k: int) -> Fraction:
    total = Fraction(0)
    subsets = list(itertools.combinations(answers, k))
    for subset in subsets:
        votes = Counter(a for a in subset if a is not None)
        if votes.get(correct, 0) == 0:
            continue
        top = max(votes.values())
        if votes[correct] == top:
            total += Fraction(1, sum(1 for v in votes.values() if v == top))
    return total / len(subsets)


# --------------------------------------------------------------------------- pass@k


@FAST
@given(st.data())
def test_pass_at_k_equals_brute_force(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 8))
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass(n, c, k), abs=1e-12)


def test_pass_at_k_known_values() -> None:
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 8) == 1.0  # n - c < k
    assert pass_at_k_problems([(10, 3), (10, 0)], 1) == pytest.approx(0.15)


def test_pass_at_k_exact_at_large_n() -> None:
    n = 5000
    for c, k in [(1, 1), (7, 100), (250, 2500), (4000, 10), (0, 5000), (1, 5000)]:
        value = pass_at_k(n, c, k)
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert math.isfinite(value)
        assert value == pytest.approx(float(exact), rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- eff@k


@FAST
@given(scores_strategy, st.data())
def test_eff_at_k_equals_brute_force(scores: list[float], data: st.DataObject) -> None:
    k = data.draw(st.integers(1, len(scores)))
    assert eff_at_k(scores, k) == pytest.approx(brute_eff(scores, k), rel=1e-9, abs=1e-12)


@FAST
@given(scores_strategy)
def test_eff_at_k_monotone_mean_and_max(scores: list[float]) -> None:
    n = len(scores)
    values = [eff_at_k(scores, k) for k in range(1, n + 1)]
    for lower, higher in itertools.pairwise(values):
        assert higher >= lower - 1e-12
    assert values[0] == pytest.approx(math.fsum(scores) / n, rel=1e-12, abs=1e-12)
    assert values[-1] == max(scores)


@FAST
@given(st.lists(st.booleans(), min_size=1, max_size=40), st.data())
def test_pass_at_k_equals_eff_at_k_on_binary_scores(flags: list[bool], data: st.DataObject) -> None:
    k = data.draw(st.integers(1, len(flags)))
    scores = [1.0 if f else 0.0 for f in flags]
    assert eff_at_k(scores, k) == pytest.approx(
        pass_at_k(len(flags), sum(flags), k), rel=1e-9, abs=1e-12
    )


def test_eff_at_k_exact_at_n_5000() -> None:
    n, scale = 5000, 2**18
    rng = random.Random(1)
    # Multiples of 2**-18 below 4: exact floats, so an integer sum is the exact answer.
    units = [rng.randrange(0, 4 * scale) for _ in range(n)]
    scores = [u / scale for u in units]
    ordered = sorted(units)
    for k in [1, 2, 10, 100, 2500, 4999, 5000]:
        value = eff_at_k(scores, k)
        numerator = sum(math.comb(r - 1, k - 1) * ordered[r - 1] for r in range(k, n + 1))
        exact = Fraction(numerator, math.comb(n, k) * scale)
        assert math.isfinite(value)
        assert value == pytest.approx(float(exact), rel=1e-10)


def test_eff_at_k_problems_is_the_mean() -> None:
    problems = [[0.0, 1.0, 2.0], [1.0, 1.0]]
    expected = (eff_at_k(problems[0], 2) + eff_at_k(problems[1], 2)) / 2
    assert eff_at_k_problems(problems, 2) == pytest.approx(expected)


# --------------------------------------------------------------------------- efficiency_score


def test_efficiency_score_edges() -> None:
    assert efficiency_score(10.0, 10.0) == 1.0
    assert efficiency_score(20.0, 10.0) == 0.0  # at T = 2 * reference
    assert efficiency_score(35.0, 10.0) == 0.0
    assert efficiency_score(math.inf, 10.0) == 0.0
    assert efficiency_score(1.0, 10.0, censored=True) == 0.0
    assert efficiency_score(5.0, 10.0) == pytest.approx(1.5)
    assert efficiency_score(0.0, 10.0) == pytest.approx(2.0)  # alpha / (alpha - 1)
    assert efficiency_score(15.0, 10.0, alpha=3.0) == pytest.approx(0.75)
    assert efficiency_score(100, 100, alpha=1.5) == 1.0  # tokens, ints


@FAST
@given(
    st.floats(0.0, 1e6, allow_nan=False),
    st.floats(1e-3, 1e5, allow_nan=False),
    st.floats(1.01, 10.0, allow_nan=False),
)
def test_efficiency_score_range(cost: float, reference: float, alpha: float) -> None:
    e = efficiency_score(cost, reference, alpha)
    assert 0.0 <= e <= alpha / (alpha - 1) + 1e-9
    assert (e > 1.0) == (cost < reference) or math.isclose(cost, reference, rel_tol=1e-9)


# --------------------------------------------------------------------------- maj@k

answers_strategy = st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=8)


@FAST
@given(answers_strategy, st.data())
def test_maj_at_k_exact_equals_brute_force(answers: list[str | None], data: st.DataObject) -> None:
    k = data.draw(st.integers(1, len(answers)))
    correct = data.draw(st.sampled_from(["a", "b", "z"]))
    assert maj_at_k(answers, correct, k) == pytest.approx(
        float(brute_maj(answers, correct, k)), abs=1e-12
    )


def test_maj_at_k_ties_and_none() -> None:
    assert maj_at_k(["a", "b"], "a", 2) == 0.5  # a tie of two counts half
    assert maj_at_k(["a", "b", "c"], "a", 3) == pytest.approx(1 / 3)
    assert maj_at_k([None, None, "a"], "a", 3) == 1.0  # None never outvotes
    assert maj_at_k([None, None, "a"], "a", 1) == pytest.approx(1 / 3)  # all-None draw: 0
    assert maj_at_k(["b", "b"], "a", 1) == 0.0
    assert maj_at_k(["a"] * 5, "a", 5) == 1.0


def test_maj_at_k_monte_carlo_near_exact() -> None:
    rng = random.Random(7)
    answers: list[Hashable | None] = [
        rng.choices(["42", "41", "7", None], weights=[4, 3, 2, 1])[0] for _ in range(23)
    ]
    for k in [1, 3, 5, 10]:
        exact = maj_at_k(answers, "42", k, exact_limit=len(answers))
        if k <= 5:  # C(23, 10) subsets would take seconds to enumerate
            assert exact == pytest.approx(float(brute_maj(answers, "42", k)), abs=1e-12)
        estimate = maj_at_k(answers, "42", k)  # n = 23 > exact_limit = 20
        assert estimate == pytest.approx(exact, abs=0.05)
        assert maj_at_k(answers, "42", k, seed=3) == maj_at_k(answers, "42", k, seed=3)


# --------------------------------------------------------------------------- cost metrics


def test_cost_of_pass() -> None:
    assert cost_of_pass([10.0, 20.0, 30.0], [False, False, False]) == math.inf
    assert cost_of_pass([10.0, 20.0, 30.0], [True, False, False]) == pytest.approx(60.0)
    # mean cost per attempt (20) / success rate (2/3)
    assert cost_of_pass([10.0, 20.0, 30.0], [True, True, False]) == pytest.approx(30.0)


def test_e3_and_accuracy_per_token_differ() -> None:
    assert e3(0.8, 400.0) == pytest.approx(0.64 / 400)
    assert accuracy_per_token(0.8, 400.0) == pytest.approx(0.8 / 400)
    assert e3(0.0, 10.0) == 0.0


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_point_and_narrows() -> None:
    rng = random.Random(11)
    small = [rng.random() for _ in range(20)]
    large = [rng.random() for _ in range(2000)]
    widths = []
    for values in (small, large):
        low, high = bootstrap_ci(values, resamples=500)
        point = math.fsum(values) / len(values)
        assert low <= point <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 4
    assert bootstrap_ci(small, seed=5) == bootstrap_ci(small, seed=5)


def test_bootstrap_ci_any_statistic() -> None:
    per_problem = [eff_at_k([0.0, 0.5, 1.2, 0.9], 2), eff_at_k([0.0, 0.0, 1.0, 1.1], 2)] * 10
    low, high = bootstrap_ci(per_problem, max, confidence=0.9, resamples=200)
    assert low <= max(per_problem) == high
    constant = bootstrap_ci([0.5] * 10)
    assert constant == (0.5, 0.5)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: pass_at_k(5, 6, 1), r"c must satisfy 0 <= c <= n"),
        (lambda: pass_at_k(5, -1, 1), r"c must satisfy"),
        (lambda: pass_at_k(5, 2, 0), r"k must satisfy 1 <= k"),
        (lambda: pass_at_k(5, 2, 6), r"k must satisfy 1 <= k"),
        (lambda: pass_at_k(0, 0, 1), r"n must be >= 1"),
        (lambda: pass_at_k(5, 2, 1.5), r"k must be an int"),  # type: ignore[arg-type]
        (lambda: pass_at_k_problems([], 1), r"counts is empty"),
        (lambda: eff_at_k([], 1), r"scores is empty"),
        (lambda: eff_at_k([1.0, 2.0], 3), r"k must satisfy"),
        (lambda: eff_at_k([1.0, math.nan], 1), r"scores\[1\] must be finite"),
        (lambda: eff_at_k([1.0, -0.5], 1), r"scores\[1\] must be >= 0"),
        (lambda: eff_at_k_problems([], 1), r"scores_per_problem is empty"),
        (lambda: efficiency_score(1.0, 0.0), r"reference must be > 0"),
        (lambda: efficiency_score(1.0, 1.0, alpha=1.0), r"alpha must be > 1"),
        (lambda: efficiency_score(math.nan, 1.0), r"cost must be a real number"),
        (lambda: efficiency_score(-1.0, 1.0), r"cost must be >= 0"),
        (lambda: maj_at_k([], "a", 1), r"answers is empty"),
        (lambda: maj_at_k(["a"], None, 1), r"correct_answer must not be None"),
        (lambda: maj_at_k(["a"], "a", 2), r"k must satisfy"),
        (lambda: maj_at_k(["a"] * 30, "a", 2, draws=0), r"draws must be >= 1"),
        (lambda: cost_of_pass([1.0], [True, False]), r"differ in length"),
        (lambda: cost_of_pass([], []), r"costs is empty"),
        (lambda: cost_of_pass([math.inf], [True]), r"costs\[0\] must be finite"),
        (lambda: e3(1.5, 10.0), r"accuracy must be a fraction"),
        (lambda: accuracy_per_token(0.5, 0.0), r"mean_tokens must be > 0"),
        (lambda: bootstrap_ci([]), r"per_problem_values is empty"),
        (lambda: bootstrap_ci([1.0], confidence=1.0), r"confidence must be in \(0, 1\)"),
        (lambda: bootstrap_ci([1.0], resamples=0), r"resamples must be >= 1"),
    ],
)
def test_bad_inputs_raise_value_error(call: object, match: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=match):
        call()
