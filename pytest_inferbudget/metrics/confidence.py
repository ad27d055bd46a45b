"""Confident budget verdicts: pass, fail, or inconclusive, never a coin flip.

Two constructions, both distribution-free and pure standard library:

* :func:`quantile_ci` / :func:`quantile_verdict`: a fixed-sample confidence interval
  for a quantile (p50 ... p99 latency) from order statistics and the exact binomial
  distribution. Valid when the samples are looked at once.
* :func:`mean_confidence_sequence` / :func:`mean_verdict`: an anytime-valid confidence
  sequence for the mean of values bounded in ``[lo, hi]`` (accuracy, pass@k per problem,
  a clipped cost), by betting. Valid when looked at after every batch, so an
  inconclusive verdict may draw more samples and look again.
  :func:`quantile_sequential_verdict` applies it to quantile budgets through the
  indicators ``value <= limit``.

A verdict is wrong when it says "pass" while the true statistic is over the limit, or
"fail" while it is within. Every "pass" and "fail" returned here is wrong with
probability at most ``1 - confidence``; "inconclusive" is never wrong, only unhelpful.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

from pytest_inferbudget.vocabulary import Direction, Verdict

DIRECTIONS = tuple(d.value for d in Direction)
"""``at_most``: the budget asserts statistic <= limit (costs, latency).
``at_least``: statistic >= limit (accuracy floors)."""

_BET_TRUNCATION = 0.5
"""The constant c in WSR's truncation of bets to ``c / m`` (their suggestion: 1/2 or 3/4)."""

_BISECTION_STEPS = 48
"""Halvings of [0, 1] when inverting the capital process: bounds to within 2**-48."""


# ---------------------------------------------------------------- argument checks


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_confidence(confidence: float) -> float:
    if not (_is_real(confidence) and 0.0 < confidence < 1.0):
        raise ValueError(
            f"confidence must be a probability strictly between 0 and 1 (e.g. 0.95), "
            f"got {confidence!r}"
        )
    return float(confidence)


def _check_q(q: float) -> float:
    if not (_is_real(q) and 0.0 < q <= 1.0):
        raise ValueError(
            f"q must be in (0, 1] (0.95 for p95, 1 for max), got {q!r}; "
            "the 0-quantile (a minimum) is not estimable from a sample"
        )
    return float(q)


def _check_finite(name: str, value: float) -> float:
    if not (_is_real(value) and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(
            f"direction must be 'at_most' (statistic <= limit, for costs) or "
            f"'at_least' (statistic >= limit, for accuracy floors), got {direction!r}"
        )
    return direction


# ---------------------------------------------------------------- quantiles


def log_binomial_pmf(n: int, p: float, k: int) -> float:
    """log P(B = k) for B ~ Binomial(n, p), 0 < p < 1, by log-gamma: stable for large n."""
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def order_statistic_ranks(n: int, q: float, confidence: float) -> tuple[int | None, int | None]:
    """The 1-based ranks ``(l, u)`` of the order statistics bounding the q-quantile.

    With ``B ~ Binomial(n, q)`` (the count of samples at or below the true quantile),
    ``l`` is the largest rank with ``P(B <= l - 1) <= alpha / 2`` and ``u`` the smallest
    with ``P(B >= u) <= alpha / 2``, where ``alpha = 1 - confidence``; so
    ``P(X_(l) <= x_q <= X_(u)) >= 1 - alpha``. ``None`` where no rank in ``1..n``
    satisfies its tail condition: too few samples for that bound.

    Tails are summed from their far ends, in increasing order of terms, from the exact
    binomial probabilities in log space, so small tail masses keep full relative
    precision; n up to ~10**6 costs milliseconds to a second.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    return _ranks(n, _check_q(q), _check_confidence(confidence))


@functools.lru_cache(maxsize=512)
def _ranks(n: int, q: float, confidence: float) -> tuple[int | None, int | None]:
    half_alpha = (1.0 - confidence) / 2.0
    if n == 0:
        return None, None
    if q == 1.0:
        # B = n surely: X_(n) <= x_1 always (a sample never exceeds the distribution's
        # maximum), and no order statistic is above it with any probability.
        return n, None
    lower: int | None = None
    cumulative = 0.0  # P(B <= k - 1) before adding the term k - 1
    for k in range(1, n + 1):
        cumulative += math.exp(log_binomial_pmf(n, q, k - 1))
        if cumulative > half_alpha:
            break
        lower = k
    upper: int | None = None
    cumulative = 0.0  # P(B >= u)
    for u in range(n, 0, -1):
        cumulative += math.exp(log_binomial_pmf(n, q, u))
        if cumulative > half_alpha:
            break
        upper = u
    return lower, upper


def quantile_ci(
    values: Sequence[float], q: float, confidence: float
) -> tuple[float | None, float | None]:
    """A distribution-free two-sided confidence interval for the q-quantile.

    The target is the population quantile ``x_q = inf{x : F(x) >= q}``, estimated by the
    empirical quantile (:func:`pytest_inferbudget.metrics.stats.quantile`). The interval is
    ``[X_(l), X_(u)]``, the order statistics of ranks :func:`order_statistic_ranks`: the
    number of samples at or below ``x_q`` is ``Binomial(n, F(x_q))`` with ``F(x_q) >= q``
    (and the number strictly below is binomial with success rate ``<= q``), so

        P(X_(l) > x_q) <= P(B <= l - 1) <= alpha / 2,
        P(X_(u) < x_q) <= P(B >= u)     <= alpha / 2,   B ~ Binomial(n, q),

    for every distribution, continuous or not (ties only make it more conservative).
    The equal-tailed construction of Hahn & Meeker, "Statistical Intervals" (Wiley 1991;
    2nd ed. with Escobar 2017), in the chapter on distribution-free intervals, and
    David & Nagaraja, "Order Statistics" (3rd ed. 2003), chapter 7.

    A bound is ``None`` when too few samples exist for it: the upper bound of a p99 needs
    ``0.99**n <= alpha / 2``, i.e. 368 samples at 95% confidence (:func:`min_samples`).
    For ``q == 1`` (max) the lower bound is the sample maximum (certain) and the upper
    bound is always ``None``: a maximum is not estimable from a sample.
    """
    q = _check_q(q)
    confidence = _check_confidence(confidence)
    ordered = sorted(values)
    if any(math.isnan(v) for v in ordered):
        raise ValueError("quantile_ci of values containing NaN")
    lower, upper = order_statistic_ranks(len(ordered), q, confidence)
    return (
        None if lower is None else ordered[lower - 1],
        None if upper is None else ordered[upper - 1],
    )


def min_samples(q: float, confidence: float) -> int | None:
    """The fewest samples for which :func:`quantile_ci` has both bounds; None for max.

    That is the smallest n with ``q**n <= alpha/2`` (an upper bound exists, so "pass" is
    possible) and ``(1-q)**n <= alpha/2`` (a lower bound exists, so "fail" is possible).
    It is a floor: a confident pass at that n needs the largest sample within the limit,
    and a true quantile near the limit needs many more.
    """
    q = _check_q(q)
    half_alpha = (1.0 - _check_confidence(confidence)) / 2.0
    if q == 1.0:
        return None
    # Closed form from q**n <= alpha/2 and (1-q)**n <= alpha/2, then settled against
    # order_statistic_ranks itself so the two never disagree by a rounding.
    n = max(
        1,
        math.ceil(math.log(half_alpha) / math.log(q)),
        math.ceil(math.log(half_alpha) / math.log1p(-q)),
    )

    def has_both(size: int) -> bool:
        lower, upper = order_statistic_ranks(size, q, confidence)
        return lower is not None and upper is not None

    while not has_both(n):
        n += 1
    while n > 1 and has_both(n - 1):
        n -= 1
    return n


def quantile_verdict(values: Sequence[float], q: float, limit: float, confidence: float) -> Verdict:
    """Check the budget "q-quantile of the distribution <= limit" on one fixed sample.

    ``pass`` when the :func:`quantile_ci` upper bound is ``<= limit``, ``fail`` when its
    lower bound is ``> limit``, else ``inconclusive`` (also when a needed bound is None).
    Each wrong verdict has probability at most ``(1 - confidence) / 2`` (one tail of the
    interval), hence at most ``1 - confidence``.

    For ``q == 1`` (a ``max`` budget): ``fail`` when any value exceeds the limit (certain,
    since the true maximum is at least the sample maximum), otherwise ``inconclusive``,
    never ``pass``: no finite sample bounds a distribution's maximum with confidence.
    (What a clean sample does show: with confidence c, the fraction of requests over the
    limit is at most ``1 - (1 - c)**(1/n)``, about ``3/n`` at 95%.) Quantities that are
    deterministic (token counts under greedy decoding) are better compared exactly.

    This interval is for one look at one sample. To draw more samples after an
    inconclusive verdict and look again, use :func:`quantile_sequential_verdict`.
    """
    limit = _check_finite("limit", limit)
    lower, upper = quantile_ci(values, q, confidence)
    if lower is not None and lower > limit:
        return Verdict.FAIL
    if upper is not None and upper <= limit:
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def quantile_sequential_verdict(
    values: Sequence[float], q: float, limit: float, confidence: float
) -> Verdict:
    """Like :func:`quantile_verdict`, but valid when looked at after every batch.

    The budget ``x_q <= limit`` is equivalent to ``F(limit) >= q``, a statement about the
    mean of the indicators ``1{value <= limit}``. This runs :func:`mean_verdict` on them
    with ``direction="at_least"`` and floor ``q``: ``pass`` when the confidence sequence's
    lower bound on ``F(limit)`` reaches ``q``, ``fail`` when its upper bound is below
    ``q``. The construction of Howard & Ramdas, "Sequential estimation of quantiles with
    applications to A/B-testing and best-arm identification", Bernoulli 28(3), 2022,
    with the betting confidence sequence in place of their boundary. It needs more
    samples than the fixed-sample interval, the price of optional stopping.
    For ``q == 1`` it can only ``fail`` (any value over the limit) or be inconclusive.
    """
    q = _check_q(q)
    limit = _check_finite("limit", limit)
    if any(math.isnan(v) for v in values):
        raise ValueError("quantile_sequential_verdict of values containing NaN")
    if q == 1.0:
        if any(v > limit for v in values):
            return Verdict.FAIL
        return Verdict.INCONCLUSIVE
    indicators = [1.0 if v <= limit else 0.0 for v in values]
    return mean_verdict(
        indicators, lo=0.0, hi=1.0, limit=q, confidence=confidence, direction="at_least"
    )


# ---------------------------------------------------------------- means


def _predictable_bets(unit_values: Sequence[float], alpha: float) -> list[float]:
    """WSR's predictable plug-in bets for the hedged capital process, before truncation.

    ``lambda_t = sqrt(2 log(2/alpha) / (sigma2_{t-1} * t * log(1 + t)))`` with the
    regularized running estimates ``mu_t = (1/2 + sum_{i<=t} x_i) / (t + 1)`` and
    ``sigma2_t = (1/4 + sum_{i<=t} (x_i - mu_i)^2) / (t + 1)``; ``lambda_t`` uses only
    ``x_1 .. x_{t-1}``, which is what makes the capital process a martingale.
    """
    scale = 2.0 * math.log(2.0 / alpha)
    bets: list[float] = []
    total = 0.0
    squares = 0.25
    sigma2 = 0.25
    for t, x in enumerate(unit_values, start=1):
        bets.append(math.sqrt(scale / (sigma2 * t * math.log1p(t))))
        total += x
        mu = (0.5 + total) / (t + 1)
        squares += (x - mu) ** 2
        sigma2 = squares / (t + 1)
    return bets


def _ever_rich(
    unit_values: Sequence[float], bets: Sequence[float], m: float, sign: float, threshold: float
) -> bool:
    """Whether the one-sided capital ``prod (1 + sign * lambda_i(m) * (x_i - m))`` reaches
    ``threshold`` at any time, i.e. the candidate mean m is excluded at some time.

    Bets are truncated to ``c / m`` (sign +1) or ``c / (1 - m)`` (sign -1), so every factor
    is at least ``1 - c > 0`` and is monotone in m: the capital at each time, and its
    running maximum, is nonincreasing in m for sign +1 and nondecreasing for sign -1.
    A product that underflows to 0 can only miss an exclusion: conservative.
    """
    room = m if sign > 0 else 1.0 - m
    cap = _BET_TRUNCATION / room if room > 0.0 else math.inf
    capital = 1.0
    for x, bet in zip(unit_values, bets, strict=True):
        capital *= 1.0 + sign * (bet if bet < cap else cap) * (x - m)
        if capital >= threshold:
            return True
    return False


def _unit_values(values: Sequence[float], lo: float, hi: float) -> list[float]:
    """The values rescaled from [lo, hi] to [0, 1]; ValueError for one outside or NaN."""
    lo = _check_finite("lo", lo)
    hi = _check_finite("hi", hi)
    if not lo < hi:
        raise ValueError(f"need lo < hi, got lo={lo!r}, hi={hi!r}")
    width = hi - lo
    unit: list[float] = []
    for v in values:
        if not lo <= v <= hi:  # also rejects NaN
            raise ValueError(
                f"value {v!r} is outside the declared bounds [{lo!r}, {hi!r}]; "
                "clip it or widen the bounds"
            )
        unit.append(min(1.0, max(0.0, (v - lo) / width)))
    return unit


def mean_confidence_sequence(
    values: Sequence[float], *, lo: float, hi: float, confidence: float
) -> tuple[float, float]:
    """An anytime-valid confidence interval for the mean of values bounded in [lo, hi].

    Returns the running intersection, over times ``t = 1 .. n``, of the hedged betting
    confidence sequence of Waudby-Smith & Ramdas, "Estimating means of bounded random
    variables by betting", JRSS-B 86(1), 2024: their hedged capital process with
    predictable plug-in bets truncated at ``c / m``, ``c = 1/2``. After rescaling to
    [0, 1], a candidate mean m is excluded once either gambler's capital

        K+_t(m) = prod_{i<=t} (1 + lambda+_i(m) (x_i - m)),
        K-_t(m) = prod_{i<=t} (1 - lambda-_i(m) (x_i - m))

    reaches ``2 / alpha`` (the hedge with theta = 1/2). At the true mean both are
    nonnegative martingales, so by Ville's inequality the true mean is excluded at ANY
    time with probability at most ``alpha = 1 - confidence``: it is valid for i.i.d.
    draws (or any stream whose conditional mean given the past is constant) however
    often it is looked at, and however the decision to stop depends on what was seen.
    Being a running intersection, the interval only shrinks as values arrive, and the
    true mean lies outside it after the last value exactly when it left the sequence
    at some earlier time.

    Because each capital is monotone in m, the excluded sets are a prefix and a suffix
    of [0, 1], and the ends of the running intersection are found by bisection on each
    capital's running maximum: 48 halvings of O(n) each, ends rounded outwards. With no
    values it is ``(lo, hi)``. If the two excluded sets meet (an alpha-probability event,
    or a stream whose mean drifted) the interval is the single point where they meet.
    Raises ValueError for a value outside [lo, hi] or NaN.
    """
    alpha = 1.0 - _check_confidence(confidence)
    unit = _unit_values(values, lo, hi)
    if not unit:
        return float(lo), float(hi)
    bets = _predictable_bets(unit, alpha)
    threshold = 2.0 / alpha

    # Lower end: K+ excludes a prefix [0, L); bisect keeping `low` excluded, `high` not.
    low, high = 0.0, 1.0
    if not _ever_rich(unit, bets, 0.0, 1.0, threshold):
        low = 0.0
    else:
        for _ in range(_BISECTION_STEPS):
            mid = (low + high) / 2.0
            if _ever_rich(unit, bets, mid, 1.0, threshold):
                low = mid
            else:
                high = mid
    lower_unit = low  # every m < low is excluded; reporting `low` rounds outwards

    # Upper end: K- excludes a suffix (U, 1].
    low, high = 0.0, 1.0
    if not _ever_rich(unit, bets, 1.0, -1.0, threshold):
        high = 1.0
    else:
        for _ in range(_BISECTION_STEPS):
            mid = (low + high) / 2.0
            if _ever_rich(unit, bets, mid, -1.0, threshold):
                high = mid
            else:
                low = mid
    upper_unit = high

    if lower_unit > upper_unit:
        lower_unit = upper_unit = (lower_unit + upper_unit) / 2.0
    width = float(hi) - float(lo)
    return lo + lower_unit * width, lo + upper_unit * width


def mean_verdict(
    values: Sequence[float],
    *,
    lo: float,
    hi: float,
    limit: float,
    confidence: float,
    direction: str,
) -> Verdict:
    """Check a budget on the mean of bounded values, anytime-valid.

    ``direction="at_most"`` (the mean must be ``<= limit``, for costs): ``pass`` when the
    :func:`mean_confidence_sequence` lies below the limit, ``fail`` when it lies above.
    ``direction="at_least"`` (the mean must be ``>= limit``, for accuracy floors): ``pass``
    when it lies above, ``fail`` when it lies below. Otherwise ``inconclusive``.

    The limit itself is tested, in one O(n) pass: "lies below" means the sequence has
    excluded the limit from above at some time (``K-_t(limit)`` reached ``2/alpha``), and
    so on; this agrees with comparing the interval's ends except within their outward
    rounding. A limit the bounds alone decide needs no samples: ``at_most`` with
    ``limit >= hi`` passes and with ``limit < lo`` fails (``at_least`` mirrored).

    The probability that ANY look, after any batch, returns a wrong verdict is at most
    ``1 - confidence``; so a caller may stop at the first conclusive verdict
    (see :func:`needs_more`).
    """
    limit = _check_finite("limit", limit)
    direction = _check_direction(direction)
    alpha = 1.0 - _check_confidence(confidence)
    unit = _unit_values(values, lo, hi)
    at_most = direction == "at_most"
    # Limits the bounds alone decide, whatever the values.
    if (at_most and limit >= hi) or (not at_most and limit <= lo):
        return Verdict.PASS
    if (at_most and limit < lo) or (not at_most and limit > hi):
        return Verdict.FAIL
    if not unit:
        return Verdict.INCONCLUSIVE
    m = (limit - lo) / (hi - lo)
    bets = _predictable_bets(unit, alpha)
    threshold = 2.0 / alpha
    mean_above = _ever_rich(unit, bets, m, 1.0, threshold)
    mean_below = _ever_rich(unit, bets, m, -1.0, threshold)
    if mean_above == mean_below:  # neither, or (an alpha-event) both
        return Verdict.INCONCLUSIVE
    if mean_above:
        return Verdict.FAIL if at_most else Verdict.PASS
    return Verdict.PASS if at_most else Verdict.FAIL


# ---------------------------------------------------------------- stopping


def needs_more(verdicts: Iterable[str]) -> bool:
    """Whether a test should draw another batch of samples.

    True when at least one verdict is ``inconclusive`` and none is ``fail``: a failure
    already decides the test, and when every verdict is ``pass`` there is nothing left to
    learn. The cap on how many samples to draw is the caller's, as is the warning when the
    cap is reached still inconclusive. Only verdicts from anytime-valid constructions
    (:func:`mean_verdict`, :func:`quantile_sequential_verdict`) keep their error rate
    under this loop; re-checking :func:`quantile_verdict` after each batch does not.
    Raises ValueError for a string that is not a verdict.
    """
    seen: set[Verdict] = set()
    for verdict in verdicts:
        try:
            seen.add(Verdict(verdict))
        except ValueError:
            raise ValueError(
                f"unknown verdict {verdict!r}; expected one of "
                f"{', '.join(repr(v.value) for v in Verdict)}"
            ) from None
    return Verdict.INCONCLUSIVE in seen and Verdict.FAIL not in seen
