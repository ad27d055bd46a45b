"""Statistics behind confident verdicts: exactness, coverage, and wrong-verdict rates.

Simulations use seeded ``random.Random`` generators, so every run draws the same samples
and the asserted rates are reproducible. Monte-Carlo slack is three binomial standard
deviations of the estimated rate, ``3 * sqrt(p * (1 - p) / reps)``, stated per test.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from pytest_inferbudget.metrics.confidence import (
    mean_confidence_sequence,
    mean_verdict,
    min_samples,
    needs_more,
    order_statistic_ranks,
    quantile_ci,
    quantile_sequential_verdict,
    quantile_verdict,
)
from pytest_inferbudget.metrics.stats import quantile
from pytest_inferbudget.vocabulary import Verdict

Sampler = Callable[[random.Random], float]


def _slack(rate: float, reps: int) -> float:
    """Three standard deviations of a Monte-Carlo estimate of a rate near ``rate``."""
    return 3.0 * math.sqrt(rate * (1.0 - rate) / reps)


def _binomial_cdf_exact(n: int, q: float, k: int) -> Fraction:
    """P(B <= k) for B ~ Binomial(n, q), exactly, with q taken as the exact binary float."""
    p = Fraction(q)
    return sum(
        (math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1)),
        start=Fraction(0),
    )


# ---------------------------------------------------------------- quantile_ci: exactness


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_ranks_are_the_optimal_equal_tailed_binomial_ranks(q: float, confidence: float) -> None:
    """For every n, each tail is within alpha/2 exactly, and one rank further would not be."""
    half_alpha = Fraction(1 - confidence) / 2
    tol = Fraction(1, 10**9)  # float tail sums against exact rationals
    for n in range(1, 61):
        lower, upper = order_statistic_ranks(n, q, confidence)
        # lower tail: P(B <= l - 1); the rank l + 1 (if any) must break the bound
        if lower is None:
            assert _binomial_cdf_exact(n, q, 0) > half_alpha * (1 - tol)
        else:
            assert _binomial_cdf_exact(n, q, lower - 1) <= half_alpha * (1 + tol)
            if lower < n:
                assert _binomial_cdf_exact(n, q, lower) > half_alpha * (1 - tol)
        # upper tail: P(B >= u) = 1 - P(B <= u - 1); the rank u - 1 must break it
        if upper is None:
            assert 1 - _binomial_cdf_exact(n, q, n - 1) > half_alpha * (1 - tol)
        else:
            assert 1 - _binomial_cdf_exact(n, q, upper - 1) <= half_alpha * (1 + tol)
            if upper > 1:
                assert 1 - _binomial_cdf_exact(n, q, upper - 2) > half_alpha * (1 - tol)
        if lower is not None and upper is not None:
            coverage = _binomial_cdf_exact(n, q, upper - 1) - _binomial_cdf_exact(n, q, lower - 1)
            assert lower < upper
            assert coverage >= Fraction(confidence) * (1 - tol)


def test_ranks_for_large_n_agree_with_the_normal_approximation() -> None:
    n, q = 100_000, 0.99
    lower, upper = order_statistic_ranks(n, q, 0.95)
    assert lower is not None and upper is not None
    sd = math.sqrt(n * q * (1 - q))
    assert abs(lower - (n * q - 1.96 * sd)) < 3
    assert abs(upper - (n * q + 1.96 * sd + 1)) < 3


@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=300
    ),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
    confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
@settings(max_examples=200, deadline=None)
def test_quantile_ci_is_the_pair_of_order_statistics(
    values: list[float], q: float, confidence: float
) -> None:
    lower, upper = quantile_ci(values, q, confidence)
    lower_rank, upper_rank = order_statistic_ranks(len(values), q, confidence)
    ordered = sorted(values)
    assert lower == (None if lower_rank is None else ordered[lower_rank - 1])
    assert upper == (None if upper_rank is None else ordered[upper_rank - 1])
    if lower is not None and upper is not None:
        assert lower <= upper
    # a higher confidence never gives a narrower interval
    wider_lower, wider_upper = order_statistic_ranks(len(values), q, 1 - (1 - confidence) / 2)
    if wider_lower is not None:
        assert lower_rank is not None and wider_lower <= lower_rank
    if upper_rank is None:
        assert wider_upper is None
    elif wider_upper is not None:
        assert wider_upper >= upper_rank


def test_quantile_ci_coverage_matches_the_exact_binomial_value() -> None:
    """Uniform(0, 1) samples: the true q-quantile is q, and the exact coverage is
    P(l <= B <= u - 1). The simulated coverage must match it (and it is >= confidence)."""
    n, q, confidence, reps = 40, 0.9, 0.9, 4000
    lower_rank, upper_rank = order_statistic_ranks(n, q, confidence)
    assert lower_rank is not None and upper_rank is not None
    exact = float(
        _binomial_cdf_exact(n, q, upper_rank - 1) - _binomial_cdf_exact(n, q, lower_rank - 1)
    )
    assert exact >= confidence
    rng = random.Random(20240601)
    covered = 0
    for _ in range(reps):
        lower, upper = quantile_ci([rng.random() for _ in range(n)], q, confidence)
        assert lower is not None and upper is not None
        covered += lower <= q <= upper
    assert abs(covered / reps - exact) <= _slack(exact, reps)


def test_quantile_ci_stays_valid_with_ties() -> None:
    """A discrete distribution (ties everywhere): coverage of x_q = inf{x : F(x) >= q}
    is at least the confidence; ties only make the interval conservative."""
    support = [1.0, 2.0, 3.0, 4.0, 5.0]
    weights = [0.5, 0.3, 0.1, 0.07, 0.03]  # F = 0.5, 0.8, 0.9, 0.97, 1.0
    q, confidence, n, reps = 0.9, 0.9, 60, 3000
    true_quantile = 3.0  # F(3) = 0.9 >= q, F(2) = 0.8 < q
    rng = random.Random(7)
    covered = 0
    for _ in range(reps):
        lower, upper = quantile_ci(rng.choices(support, weights, k=n), q, confidence)
        assert lower is not None and upper is not None
        covered += lower <= true_quantile <= upper
    assert covered / reps >= confidence - _slack(1 - confidence, reps)


# ---------------------------------------------------------------- quantile_verdict: wrong rates


def _exponential(mean_ms: float) -> tuple[Sampler, Callable[[float], float]]:
    return (lambda rng: rng.expovariate(1.0 / mean_ms)), (lambda q: -mean_ms * math.log1p(-q))


def _lognormal(median_ms: float, sigma: float) -> tuple[Sampler, Callable[[float], float]]:
    from statistics import NormalDist

    return (lambda rng: rng.lognormvariate(math.log(median_ms), sigma)), (
        lambda q: median_ms * math.exp(sigma * NormalDist().inv_cdf(q))
    )


DISTRIBUTIONS = {
    "exponential": _exponential(40.0),
    "lognormal": _lognormal(100.0, 0.6),
}

# Where the limit sits relative to the true quantile x_q, and which verdict is wrong there.
PLACEMENTS = {
    "just_outside": (1 - 1e-9, Verdict.PASS),  # truth over the limit: "pass" is wrong
    "outside_2pct": (0.98, Verdict.PASS),
    "at_limit": (1.0, Verdict.FAIL),  # x_q <= limit holds: "fail" is wrong
    "just_inside": (1 + 1e-9, Verdict.FAIL),
    "inside_2pct": (1.02, Verdict.FAIL),
}


def quantile_wrong_verdict_rate(
    distribution: str, q: float, placement: str, *, n: int, confidence: float, reps: int, seed: int
) -> float:
    sample, true_quantile = DISTRIBUTIONS[distribution]
    factor, wrong = PLACEMENTS[placement]
    limit = true_quantile(q) * factor
    rng = random.Random(seed)
    wrong_count = 0
    for _ in range(reps):
        values = [sample(rng) for _ in range(n)]
        wrong_count += quantile_verdict(values, q, limit, confidence) == wrong
    return wrong_count / reps


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("q", [0.5, 0.95])
@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
def test_quantile_verdict_is_rarely_wrong(distribution: str, q: float, placement: str) -> None:
    """Each wrong verdict is one tail of the interval: rate <= (1 - c)/2 <= 1 - c.
    Worst at the limit itself, where the exact rate is the binomial tail."""
    confidence, reps = 0.9, 1500
    rate = quantile_wrong_verdict_rate(
        distribution,
        q,
        placement,
        n=150,
        confidence=confidence,
        reps=reps,
        seed=zlib.crc32(f"{distribution}/{q}/{placement}".encode()),
    )
    half_alpha = (1 - confidence) / 2
    assert rate <= 1 - confidence
    assert rate <= half_alpha + _slack(half_alpha, reps)  # slack about 0.017


def test_quantile_verdict_decides_when_the_truth_is_far() -> None:
    sample, true_quantile = DISTRIBUTIONS["lognormal"]
    rng = random.Random(3)
    values = [sample(rng) for _ in range(2000)]
    p95 = true_quantile(0.95)
    assert quantile_verdict(values, 0.95, p95 * 1.3, 0.95) == Verdict.PASS
    assert quantile_verdict(values, 0.95, p95 * 0.7, 0.95) == Verdict.FAIL


@given(
    values=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=120),
    limit=st.integers(min_value=-1, max_value=21),
    q=st.sampled_from([0.5, 0.9]),
)
@settings(max_examples=200, deadline=None)
def test_one_look_verdict_depends_only_on_the_count_within_the_limit(
    values: list[int], limit: int, q: float
) -> None:
    """pass iff at least u values are <= limit, fail iff at most l - 1 are: so the chance
    of each verdict on n i.i.d. draws is a Binomial(n, F(limit)) tail, which is how
    tests/bench/sequential_vs_fixed.py computes the fixed design exactly. Ties included."""
    lower, upper = order_statistic_ranks(len(values), q, 0.95)
    within = sum(v <= limit for v in values)
    if upper is not None and within >= upper:
        expected = Verdict.PASS
    elif lower is not None and within <= lower - 1:
        expected = Verdict.FAIL
    else:
        expected = Verdict.INCONCLUSIVE
    assert quantile_verdict([float(v) for v in values], q, float(limit), 0.95) == expected


# ---------------------------------------------------------------- quantiles: edge cases


def test_too_few_samples_give_none_bounds_and_inconclusive() -> None:
    values = [float(v) for v in range(1, 21)]  # 20 samples
    lower, upper = quantile_ci(values, 0.99, 0.95)
    assert upper is None  # 0.99**20 > 0.025: no order statistic reaches above a p99
    assert lower == 19.0  # P(B <= 18) = 0.017 <= 0.025 for B ~ Binomial(20, 0.99)
    assert quantile_verdict(values, 0.99, 1e9, 0.95) == Verdict.INCONCLUSIVE
    assert quantile_verdict(values, 0.99, 18.5, 0.95) == Verdict.FAIL  # 19 > 18.5
    assert quantile_ci([], 0.5, 0.95) == (None, None)
    assert quantile_verdict([], 0.5, 1.0, 0.95) == Verdict.INCONCLUSIVE
    assert quantile_ci([5.0, 6.0], 0.5, 0.95) == (None, None)  # 0.5**2 > 0.025


def test_min_samples_is_where_both_bounds_first_exist() -> None:
    assert min_samples(0.95, 0.95) == 72
    assert min_samples(0.99, 0.95) == 368
    assert min_samples(1.0, 0.95) is None
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        for confidence in (0.9, 0.95, 0.99):
            n = min_samples(q, confidence)
            assert n is not None
            assert None not in order_statistic_ranks(n, q, confidence)
            assert n == 1 or None in order_statistic_ranks(n - 1, q, confidence)


def test_max_never_passes_and_fails_on_any_exceedance() -> None:
    values = [1.0, 2.0, 3.0]
    assert quantile_ci(values, 1.0, 0.95) == (3.0, None)
    assert quantile_verdict(values, 1.0, 2.5, 0.95) == Verdict.FAIL
    assert quantile_verdict(values, 1.0, 3.0, 0.95) == Verdict.INCONCLUSIVE
    assert quantile_verdict(values * 10_000, 1.0, 100.0, 0.95) == Verdict.INCONCLUSIVE
    assert quantile_sequential_verdict(values, 1.0, 2.5, 0.95) == Verdict.FAIL
    assert quantile_sequential_verdict(values, 1.0, 3.0, 0.95) == Verdict.INCONCLUSIVE


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5, math.nan, True])
def test_bad_q_is_a_clear_value_error(q: float) -> None:
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\]"):
        quantile_ci([1.0, 2.0], q, 0.95)
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\]"):
        quantile_verdict([1.0, 2.0], q, 1.0, 0.95)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95, -0.5, math.nan])
def test_bad_confidence_is_a_clear_value_error(confidence: float) -> None:
    message = "confidence must be a probability strictly between 0 and 1"
    with pytest.raises(ValueError, match=message):
        quantile_ci([1.0, 2.0], 0.5, confidence)
    with pytest.raises(ValueError, match=message):
        mean_confidence_sequence([0.5], lo=0.0, hi=1.0, confidence=confidence)
    with pytest.raises(ValueError, match=message):
        min_samples(0.95, confidence)


def test_other_bad_arguments() -> None:
    with pytest.raises(ValueError, match="NaN"):
        quantile_ci([1.0, math.nan], 0.5, 0.9)
    with pytest.raises(ValueError, match="limit must be a finite number"):
        quantile_verdict([1.0], 0.5, math.inf, 0.9)
    with pytest.raises(ValueError, match="non-negative integer"):
        order_statistic_ranks(-1, 0.5, 0.9)
    with pytest.raises(ValueError, match=r"outside the declared bounds \[0.0, 1.0\]"):
        mean_confidence_sequence([0.5, 1.5], lo=0.0, hi=1.0, confidence=0.9)
    with pytest.raises(ValueError, match="outside the declared bounds"):
        mean_verdict([math.nan], lo=0.0, hi=1.0, limit=0.5, confidence=0.9, direction="at_most")
    with pytest.raises(ValueError, match="need lo < hi"):
        mean_confidence_sequence([], lo=1.0, hi=1.0, confidence=0.9)
    with pytest.raises(ValueError, match="direction must be 'at_most'"):
        mean_verdict([0.5], lo=0.0, hi=1.0, limit=0.5, confidence=0.9, direction="below")


def test_empirical_quantile_lies_inside_the_interval() -> None:
    rng = random.Random(11)
    values = [rng.lognormvariate(4.0, 1.0) for _ in range(1000)]
    for q in (0.5, 0.9, 0.95, 0.99):
        lower, upper = quantile_ci(values, q, 0.95)
        assert lower is not None and upper is not None
        assert lower <= quantile(values, q) <= upper


# ---------------------------------------------------------------- confidence sequence


def _bernoulli(p: float) -> Sampler:
    return lambda rng: 1.0 if rng.random() < p else 0.0


MEAN_STREAMS: dict[str, tuple[Sampler, float, float, float]] = {
    # name: (sampler, lo, hi, true mean)
    "bernoulli_0.5": (_bernoulli(0.5), 0.0, 1.0, 0.5),
    "bernoulli_0.9": (_bernoulli(0.9), 0.0, 1.0, 0.9),
    "beta_2_5": (lambda rng: rng.betavariate(2.0, 5.0), 0.0, 1.0, 2.0 / 7.0),
    # a right-skewed cost in [0, 200] ms, mode 20, mean (0 + 200 + 20) / 3
    "triangular_cost": (lambda rng: rng.triangular(0.0, 200.0, 20.0), 0.0, 200.0, 220.0 / 3.0),
}


def mean_sequence_miss_rate(
    stream: str, *, steps: int, confidence: float, reps: int, seed: int
) -> float:
    """The fraction of streams whose true mean leaves the sequence at any time <= steps.

    The interval returned is the running intersection over all times, so the true mean
    is outside it after the last value exactly when it was outside at some time
    (checked directly in :func:`test_running_intersection_is_the_any_time_event`).
    """
    sample, lo, hi, truth = MEAN_STREAMS[stream]
    rng = random.Random(seed)
    misses = 0
    for _ in range(reps):
        lower, upper = mean_confidence_sequence(
            [sample(rng) for _ in range(steps)], lo=lo, hi=hi, confidence=confidence
        )
        misses += not lower <= truth <= upper
    return misses / reps


@pytest.mark.parametrize("stream", list(MEAN_STREAMS))
def test_confidence_sequence_is_time_uniformly_valid(stream: str) -> None:
    """P(true mean outside the sequence at ANY of 300 steps) <= 1 - c; slack 3 sd (0.052)."""
    confidence, reps = 0.9, 300
    rate = mean_sequence_miss_rate(stream, steps=300, confidence=confidence, reps=reps, seed=1)
    alpha = 1 - confidence
    assert rate <= alpha + _slack(alpha, reps)


def _naive_z_interval_ever_misses(values: Sequence[float], truth: float, z: float) -> bool:
    """Whether a fixed-n 90% normal interval, recomputed after every value, ever misses."""
    total = squares = 0.0
    for t, x in enumerate(values, start=1):
        total += x
        squares += x * x
        if t >= 10:
            mean = total / t
            sd = math.sqrt(max(squares / t - mean * mean, 1e-12))
            if abs(mean - truth) > z * sd / math.sqrt(t):
                return True
    return False


def test_the_validity_check_catches_a_peeking_interval() -> None:
    """Negative control: the same check, run on a fixed-n 90% interval looked at after every
    value, finds it far above 10%; so the check above has the power to see a failure."""
    sample, _, _, truth = MEAN_STREAMS["bernoulli_0.5"]
    rng = random.Random(1)
    reps = 300
    misses = sum(
        _naive_z_interval_ever_misses([sample(rng) for _ in range(300)], truth, 1.645)
        for _ in range(reps)
    )
    assert misses / reps > 0.3


def test_running_intersection_is_the_any_time_event() -> None:
    """Interval after every prefix: nested (only shrinks), and the final interval misses the
    truth exactly when some prefix did."""
    sample, lo, hi, truth = MEAN_STREAMS["bernoulli_0.9"]
    rng = random.Random(5)
    for _ in range(20):
        values = [sample(rng) for _ in range(80)]
        previous = (lo, hi)
        ever_missed = False
        for t in range(81):
            lower, upper = mean_confidence_sequence(values[:t], lo=lo, hi=hi, confidence=0.8)
            assert previous[0] <= lower <= upper <= previous[1]
            ever_missed = ever_missed or not lower <= truth <= upper
            previous = (lower, upper)
        assert ever_missed == (not previous[0] <= truth <= previous[1])


def test_confidence_sequence_shrinks_around_the_mean() -> None:
    rng = random.Random(2)
    values = [1.0 if rng.random() < 0.7 else 0.0 for _ in range(5000)]
    lower, upper = mean_confidence_sequence(values, lo=0.0, hi=1.0, confidence=0.95)
    assert lower <= sum(values) / len(values) <= upper
    assert upper - lower < 0.06
    costs = [200.0 * v for v in values]
    scaled = mean_confidence_sequence(costs, lo=0.0, hi=200.0, confidence=0.95)
    assert scaled == pytest.approx((200.0 * lower, 200.0 * upper))
    assert mean_confidence_sequence([], lo=-1.0, hi=3.0, confidence=0.95) == (-1.0, 3.0)


# ---------------------------------------------------------------- sequential verdicts


def sequential_wrong_verdict_rate(
    verdict_of: Callable[[list[float]], Verdict],
    sample: Sampler,
    wrong: Verdict,
    *,
    batch: int,
    cap: int,
    reps: int,
    seed: int,
) -> float:
    """Draw a batch, look, repeat while inconclusive (needs_more) up to the cap; the
    fraction of runs that stopped on the wrong verdict."""
    rng = random.Random(seed)
    wrong_count = 0
    for _ in range(reps):
        values: list[float] = []
        verdict = Verdict.INCONCLUSIVE
        while len(values) < cap and needs_more([verdict]):
            values.extend(sample(rng) for _ in range(batch))
            verdict = verdict_of(values)
        wrong_count += verdict == wrong
    return wrong_count / reps


SEQUENTIAL_MEAN_CASES = {
    # name: (sampler, lo, hi, limit, direction, wrong verdict)
    "accuracy_at_floor": (_bernoulli(0.8), 0.0, 1.0, 0.8, "at_least", Verdict.FAIL),
    "accuracy_just_under_floor": (_bernoulli(0.79), 0.0, 1.0, 0.8, "at_least", Verdict.PASS),
    "cost_at_limit": (_bernoulli(0.3), 0.0, 1.0, 0.3, "at_most", Verdict.FAIL),
    "cost_just_over_limit": (_bernoulli(0.31), 0.0, 1.0, 0.3, "at_most", Verdict.PASS),
}


def sequential_mean_wrong_rate(case: str, *, confidence: float, reps: int, seed: int) -> float:
    sample, lo, hi, limit, direction, wrong = SEQUENTIAL_MEAN_CASES[case]
    return sequential_wrong_verdict_rate(
        lambda values: mean_verdict(
            values, lo=lo, hi=hi, limit=limit, confidence=confidence, direction=direction
        ),
        sample,
        wrong,
        batch=20,
        cap=400,
        reps=reps,
        seed=seed,
    )


@pytest.mark.parametrize("case", list(SEQUENTIAL_MEAN_CASES))
def test_mean_verdict_with_a_look_after_every_batch_is_rarely_wrong(case: str) -> None:
    """20 looks, stopping at the first conclusive one: wrong <= 1 - c; slack 3 sd (0.052)."""
    confidence, reps = 0.9, 300
    rate = sequential_mean_wrong_rate(case, confidence=confidence, reps=reps, seed=17)
    alpha = 1 - confidence
    assert rate <= alpha + _slack(alpha, reps)


SEQUENTIAL_QUANTILE_CASES = {
    # name: (limit as a multiple of the true p90, wrong verdict)
    "p90_at_limit": (1.0, Verdict.FAIL),
    "p90_just_over_limit": (1 - 1e-9, Verdict.PASS),
}


def sequential_quantile_wrong_rate(case: str, *, confidence: float, reps: int, seed: int) -> float:
    factor, wrong = SEQUENTIAL_QUANTILE_CASES[case]
    sample, true_quantile = DISTRIBUTIONS["exponential"]
    limit = true_quantile(0.9) * factor
    return sequential_wrong_verdict_rate(
        lambda values: quantile_sequential_verdict(values, 0.9, limit, confidence),
        sample,
        wrong,
        batch=20,
        cap=400,
        reps=reps,
        seed=seed,
    )


@pytest.mark.parametrize("case", list(SEQUENTIAL_QUANTILE_CASES))
def test_sequential_quantile_verdict_is_rarely_wrong(case: str) -> None:
    """Same loop for a p90 latency budget: wrong <= 1 - c; slack 3 sd (0.052)."""
    confidence, reps = 0.9, 300
    rate = sequential_quantile_wrong_rate(case, confidence=confidence, reps=reps, seed=23)
    alpha = 1 - confidence
    assert rate <= alpha + _slack(alpha, reps)


def test_sequential_verdicts_decide_when_the_truth_is_far() -> None:
    rng = random.Random(4)
    accuracy = [1.0 if rng.random() < 0.9 else 0.0 for _ in range(400)]
    kwargs = {"lo": 0.0, "hi": 1.0, "confidence": 0.95}
    assert mean_verdict(accuracy, limit=0.8, direction="at_least", **kwargs) == Verdict.PASS
    assert mean_verdict(accuracy, limit=0.97, direction="at_least", **kwargs) == Verdict.FAIL
    assert mean_verdict(accuracy, limit=0.97, direction="at_most", **kwargs) == Verdict.PASS
    assert mean_verdict(accuracy, limit=0.8, direction="at_most", **kwargs) == Verdict.FAIL
    assert mean_verdict(accuracy, limit=0.9, direction="at_most", **kwargs) == (
        Verdict.INCONCLUSIVE
    )
    latencies = [rng.expovariate(1 / 40.0) for _ in range(2000)]
    p90 = -40.0 * math.log(0.1)
    assert quantile_sequential_verdict(latencies, 0.9, p90 * 1.3, 0.95) == Verdict.PASS
    assert quantile_sequential_verdict(latencies, 0.9, p90 * 0.7, 0.95) == Verdict.FAIL


@given(
    values=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=0, max_size=200),
    limit=st.floats(min_value=0.0, max_value=1.0),
    direction=st.sampled_from(["at_most", "at_least"]),
)
@settings(max_examples=150, deadline=None)
def test_mean_verdict_agrees_with_the_interval(
    values: list[float], limit: float, direction: str
) -> None:
    """The verdict tests the limit exactly; the interval's ends are rounded outwards by at
    most 2**-48, so the two agree except within that rounding."""
    lower, upper = mean_confidence_sequence(values, lo=0.0, hi=1.0, confidence=0.9)
    verdict = mean_verdict(values, lo=0.0, hi=1.0, limit=limit, confidence=0.9, direction=direction)
    eps = 2.0**-40
    if lower == upper:
        return  # the two excluded sets met: documented to report their meeting point
    below = Verdict.PASS if direction == "at_most" else Verdict.FAIL
    above = Verdict.FAIL if direction == "at_most" else Verdict.PASS
    if upper < limit - eps:
        assert verdict == below
    elif lower > limit + eps:
        assert verdict == above
    elif lower + eps < limit < upper - eps:
        assert verdict == Verdict.INCONCLUSIVE


def test_limits_outside_the_bounds_decide_without_samples() -> None:
    def verdict(limit: float, direction: str) -> Verdict:
        return mean_verdict([], lo=0.0, hi=1.0, limit=limit, confidence=0.95, direction=direction)

    assert verdict(1.0, "at_most") == Verdict.PASS
    assert verdict(-0.1, "at_most") == Verdict.FAIL
    assert verdict(0.0, "at_least") == Verdict.PASS
    assert verdict(1.1, "at_least") == Verdict.FAIL
    assert verdict(0.5, "at_most") == Verdict.INCONCLUSIVE


# ---------------------------------------------------------------- needs_more


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], False),
        (["pass"], False),
        (["pass", "pass"], False),
        (["inconclusive"], True),
        (["pass", "inconclusive"], True),
        (["fail", "inconclusive"], False),
        ([Verdict.FAIL], False),
        ([Verdict.INCONCLUSIVE, Verdict.PASS], True),
    ],
)
def test_needs_more(verdicts: list[str], expected: bool) -> None:
    assert needs_more(verdicts) is expected


def test_needs_more_rejects_unknown_verdicts() -> None:
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        needs_more(["pass", "maybe"])


def test_verdicts_are_plain_strings() -> None:
    assert Verdict("pass") is Verdict.PASS
    assert isinstance(Verdict.FAIL, str)
    assert f"{Verdict.FAIL}" == "fail"
    assert str(Verdict.INCONCLUSIVE) == "inconclusive"
    assert {v.value for v in Verdict} == {"pass", "fail", "inconclusive", "unmeasured"}
