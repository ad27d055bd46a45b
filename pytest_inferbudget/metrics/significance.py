"""Significance of a change between two samples: Mann-Whitney U, Holm's step-down
correction, and a bootstrap interval of the log ratio of medians. Pure standard library.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate

from pytest_inferbudget.metrics.stats import quantile

EXACT_MAX_SAMPLES = 8
"""The exact permutation p-value is used when the smaller sample has at most this many
values and there are no ties, whatever the size of the larger one: scipy's
``method="auto"`` rule, so a report's p-value is what ``scipy.stats.mannwhitneyu`` gives
by default."""


def _finite_sample(name: str, values: Sequence[float]) -> list[float]:
    if len(values) == 0:
        raise ValueError(f"{name} is empty; a comparison needs at least one value per sample")
    checked = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}[{index}] must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name}[{index}] must be finite, got {value!r}")
        checked.append(float(value))
    return checked


def _midranks(pooled: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks 1..n of ``pooled``, ties sharing their mean rank; and the tie group sizes."""
    order = sorted(range(len(pooled)), key=pooled.__getitem__)
    ranks = [0.0] * len(pooled)
    groups = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and pooled[order[end + 1]] == pooled[order[start]]:
            end += 1
        rank = (start + end) / 2.0 + 1.0
        for position in range(start, end + 1):
            ranks[order[position]] = rank
        groups.append(end - start + 1)
        start = end + 1
    return ranks, groups


@lru_cache(maxsize=128)
def _u_cumulative_counts(n1: int, n2: int) -> tuple[int, ...]:
    """Cumulative counts of the orderings of n1 + n2 distinct values with U = 0, 1, ....

    ``f(m, n, u) = f(m - 1, n, u - n) + f(m, n - 1, u)``: the largest value is either
    from the first sample (beating all n of the second) or from the second. Exact integers;
    the total is ``comb(n1 + n2, n1)``.
    """
    previous = [[1] for _ in range(n1 + 1)]  # n = 0: U is 0 whatever m is
    for n in range(1, n2 + 1):
        current = [[1]]  # m = 0
        for m in range(1, n1 + 1):
            row = [0] * (m * n + 1)
            for u, count in enumerate(current[m - 1]):
                row[u + n] += count
            for u, count in enumerate(previous[m]):
                row[u] += count
            current.append(row)
        previous = current
    return tuple(accumulate(previous[n1]))


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mann-Whitney U of ``a`` against ``b`` and its two-sided p-value.

    ``U`` counts the pairs in which the value from ``a`` is larger, ties counting one half
    (``scipy.stats.mannwhitneyu``'s ``U1``); ``U`` below ``len(a) * len(b) / 2`` means
    ``b`` tends to be larger. Without ties and with the smaller sample of at most
    :data:`EXACT_MAX_SAMPLES` values the p-value is exact, from the permutation
    distribution of U (``2 * P(U <= min(U, n1 n2 - U))``, capped at 1). Otherwise it is the
    normal approximation with the tie-corrected variance and a continuity correction of
    one half. All values tied gives p = 1.
    """
    first = _finite_sample("a", a)
    second = _finite_sample("b", b)
    n1, n2 = len(first), len(second)
    ranks, ties = _midranks(first + second)
    u = math.fsum(ranks[:n1]) - n1 * (n1 + 1) / 2.0
    mean = n1 * n2 / 2.0
    if max(ties) == 1 and min(n1, n2) <= EXACT_MAX_SAMPLES:
        cumulative = _u_cumulative_counts(n1, n2)
        smaller = round(min(u, n1 * n2 - u))
        return u, min(1.0, 2.0 * cumulative[smaller] / cumulative[-1])
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0.0:
        return u, 1.0
    z = max(0.0, abs(u - mean) - 0.5) / math.sqrt(variance)
    return u, min(1.0, math.erfc(z / math.sqrt(2.0)))


def bootstrap_log_ratio(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """``log(median(b) / median(a))`` and its percentile bootstrap interval.

    The statistic is the log of the ratio of medians: 0 for no change, ``log(1.3)`` for
    ``b`` 30% above ``a``; ``exp(x) - 1`` turns any of the three numbers into a relative
    change. Each resample draws ``a`` and ``b`` independently with replacement
    (``random.Random(seed)``, so it is reproducible); the bounds are the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled
    statistic. Every value must be positive (latencies, token counts of non-empty answers).
    """
    first = _finite_sample("a", a)
    second = _finite_sample("b", b)
    for name, values in (("a", first), ("b", second)):
        if min(values) <= 0.0:
            raise ValueError(f"{name} has a value <= 0; a log ratio needs positive values")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}; 2000 is typical")
    if not (isinstance(confidence, int | float) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    rng = random.Random(seed)
    median = statistics.median
    estimate = math.log(median(second) / median(first))
    stats = [
        math.log(
            median(rng.choices(second, k=len(second))) / median(rng.choices(first, k=len(first)))
        )
        for _ in range(resamples)
    ]
    tail = (1.0 - confidence) / 2.0
    return estimate, quantile(stats, tail), quantile(stats, 1.0 - tail)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given.

    Sorted ascending, the i-th smallest (from 0) of m becomes ``(m - i) * p``, made
    non-decreasing along the order and capped at 1; rejecting where the adjusted value is
    at most alpha controls the family-wise error rate at alpha.
    """
    for index, p in enumerate(p_values):
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p_values[{index}] must be a probability in [0, 1], got {p!r}")
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted


def min_p_value(n1: int, n2: int) -> float:
    """The smallest two-sided p-value Mann-Whitney can give samples of these sizes (all of
    one sample above all of the other): ``2 / C(n1 + n2, n1)`` where it is exact, else
    the normal approximation's value at the extreme U. A comparison whose alpha (after
    Holm) is below it can never be significant: n is too small."""
    if min(n1, n2) <= EXACT_MAX_SAMPLES:
        return min(1.0, 2.0 / math.comb(n1 + n2, n1))
    n = n1 + n2
    variance = n1 * n2 * (n + 1) / 12.0
    z = max(0.0, n1 * n2 / 2.0 - 0.5) / math.sqrt(variance)
    return min(1.0, math.erfc(z / math.sqrt(2.0)))


PAIRED_EXACT_MAX = 16
"""Sign-flip permutation p-values are enumerated exactly up to this many non-zero pairs
(2**16 sign patterns); beyond it, 20,000 random patterns from a fixed seed."""


def paired_min_p(n: int, *, resamples: int = 20_000) -> float:
    """The smallest p-value :func:`paired_permutation_p` can give for ``n`` non-zero pairs:
    the two extreme sign patterns of ``2**n`` (exact), or one draw in ``resamples + 1``."""
    if n <= 0:
        return 1.0
    return 2.0 / (1 << n) if n <= PAIRED_EXACT_MAX else 1.0 / (resamples + 1)


def paired_permutation_p(differences: Sequence[float], *, resamples: int = 20_000) -> float:
    """Two-sided p-value of the paired sign-flip permutation test that the mean of
    ``differences`` (candidate minus baseline, per problem) is zero.

    Under the null each difference is as likely negative as positive, so the observed
    ``|sum(d)|`` is compared with ``|sum(s_i d_i)|`` over sign patterns ``s``. Zero
    differences carry no sign and are dropped (as the sign test does); none left gives 1.
    Exact for up to :data:`PAIRED_EXACT_MAX` non-zero pairs, else a Monte Carlo estimate
    from ``random.Random(0)`` (reproducible), counting the observed pattern as one draw.
    """
    values = [float(d) for d in _finite_sample("differences", differences) if d != 0.0]
    if not values:
        return 1.0
    observed = abs(math.fsum(values)) - 1e-12 * max(abs(v) for v in values)
    n = len(values)
    if n <= PAIRED_EXACT_MAX:
        extreme = 0
        for pattern in range(1 << n):
            total = math.fsum(-v if pattern >> i & 1 else v for i, v in enumerate(values))
            extreme += abs(total) >= observed
        return extreme / float(1 << n)
    rng = random.Random(0)
    extreme = 1
    for _ in range(resamples):
        total = math.fsum(v if rng.random() < 0.5 else -v for v in values)
        extreme += abs(total) >= observed
    return extreme / (resamples + 1)


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (no scipy): closed
    forms for 1 and 2 degrees, else bisection on the distribution function, integrated
    with Simpson's rule (exact to about 1e-9 for the spreads of a few saved runs)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df!r}")
    if df == 1:  # Cauchy
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))
    return _t_quantile(round(p, 12), df)


@lru_cache(maxsize=256)
def _t_quantile(p: float, df: int) -> float:
    if p < 0.5:
        return -_t_quantile(round(1.0 - p, 12), df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf(t: float, steps: int = 400) -> float:
        h = t / steps
        inner = math.fsum(density(i * h) * (4 if i % 2 else 2) for i in range(1, steps))
        return 0.5 + h / 3 * (density(0.0) + inner + density(t))

    low, high = 0.0, 1.0
    while cdf(high) < p:
        low, high = high, high * 2
    for _ in range(50):
        middle = (low + high) / 2
        if cdf(middle) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2
