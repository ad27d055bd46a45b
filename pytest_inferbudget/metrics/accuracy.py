"""Accuracy-efficiency metrics over repeated samples: pass@k, eff@k, maj@k, cost-of-pass, E3.

Pure functions on builtin numbers (standard library only), so a figure in a report can be
recomputed by hand from the per-sample data in the JSON record. Each function checks its
inputs and raises ``ValueError`` naming the bad argument and the fix; none uses ``assert``.
Definitions follow DESIGN.md section 3 and the papers cited per function.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction
from statistics import fmean

from pytest_inferbudget.metrics.stats import quantile

__all__ = [
    "accuracy_per_token",
    "bootstrap_ci",
    "cost_of_pass",
    "e3",
    "eff_at_k",
    "eff_at_k_problems",
    "efficiency_score",
    "maj_at_k",
    "pass_at_k",
    "pass_at_k_problems",
]


# --------------------------------------------------------------------------- input checks


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}; pass a whole number")
    return value


def _check_k(k: int, n: int, what: str = "n") -> None:
    _check_int("k", k)
    if not 1 <= k <= n:
        raise ValueError(
            f"k must satisfy 1 <= k <= {what} (= {n}), got k={k}; "
            f"draw at least k samples per problem or lower k"
        )


def _check_finite(name: str, value: float, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}; drop or fix the bad sample")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples, drawn without replacement from n samples of
    which c are correct, is correct: ``1 - C(n-c, k) / C(n, k)``.

    The unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on
    Code", HumanEval), in its stable product form ``1 - prod(1 - k/i, i = n-c+1..n)``, which
    never forms the binomials and so stays accurate for n in the thousands.
    """
    _check_int("n", n)
    _check_int("c", c)
    if n < 1:
        raise ValueError(f"n must be >= 1 (the number of samples), got n={n}")
    if not 0 <= c <= n:
        raise ValueError(
            f"c must satisfy 0 <= c <= n (= {n}), got c={c}; c counts the correct samples among n"
        )
    _check_k(k, n)
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_problems(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems, each given as ``(n, c)``: the benchmark-level
    pass@k of Chen et al. 2021."""
    if len(counts) == 0:
        raise ValueError("counts is empty; pass one (n, c) pair per problem")
    return math.fsum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


# --------------------------------------------------------------------------- eff@k


def efficiency_score(
    cost: float, reference: float, alpha: float = 2.0, censored: bool = False
) -> float:
    """ENAMEL's per-sample efficiency score (Qiu et al. 2024, "How Efficient is LLM-Generated
    Code? A Rigorous & High-Standard Benchmark"): with the censoring limit
    ``T = alpha * reference``, ``e = max(0, T - cost) / (T - reference)``.

    1 at the reference cost, 0 at or beyond T, above 1 (up to ``alpha / (alpha - 1)``) when the
    sample beats the reference. ``cost`` is whatever was measured (seconds, tokens, joules) in
    the unit of ``reference``; ``math.inf`` means it never finished. A censored (timed-out)
    sample scores 0 whatever its cost: its true cost is unknown beyond T, so it is never
    extrapolated, and its cost is not checked. An incorrect sample should get 0 from the caller.
    """
    _check_finite("reference", reference)
    if reference <= 0:
        raise ValueError(f"reference must be > 0 (the reference cost), got {reference!r}")
    _check_finite("alpha", alpha)
    if alpha <= 1:
        raise ValueError(
            f"alpha must be > 1 so the limit T = alpha * reference exceeds the reference, "
            f"got {alpha!r}; ENAMEL uses 2"
        )
    if censored:
        return 0.0
    if isinstance(cost, bool) or not isinstance(cost, int | float) or math.isnan(cost):
        raise ValueError(f"cost must be a real number (math.inf if unfinished), got {cost!r}")
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {cost!r}")
    limit = alpha * reference
    return max(0.0, limit - cost) / (limit - reference)


def eff_at_k(scores: Sequence[float], k: int) -> float:
    """Expected best efficiency score among k samples drawn without replacement from the n
    scored samples of one problem: ENAMEL's eff@k (Qiu et al. 2024).

    Unbiased Rao-Blackwellized estimator: sort ascending ``e_(1) <= ... <= e_(n)``, then
    ``eff@k = sum_{r=k..n} C(r-1, k-1) / C(n, k) * e_(r)``, since ``e_(r)`` is the best of a
    k-subset exactly when the subset holds sample r and k-1 of the r-1 below it. The weights
    come from the recurrence ``w_n = k/n``, ``w_r = w_{r+1} * (1 - (k-1)/r)`` (as in ENAMEL's
    ``enam/evaluate.py``), never from raw binomials, so n in the thousands neither overflows
    nor loses precision; weights that underflow to 0 are below any float's resolution anyway.
    On 0/1 scores it equals :func:`pass_at_k`.
    """
    n = len(scores)
    if n == 0:
        raise ValueError("scores is empty; pass one efficiency score per sample")
    _check_k(k, n, "len(scores)")
    ordered = sorted(_check_finite(f"scores[{i}]", s, minimum=0.0) for i, s in enumerate(scores))
    weight = k / n
    terms = [weight * ordered[n - 1]]
    for r in range(n - 1, k - 1, -1):
        weight *= 1.0 - (k - 1) / r
        if weight == 0.0:
            break
        terms.append(weight * ordered[r - 1])
    return math.fsum(terms)


def eff_at_k_problems(scores_per_problem: Sequence[Sequence[float]], k: int) -> float:
    """Mean of :func:`eff_at_k` over problems: the benchmark-level eff@k of Qiu et al. 2024."""
    if len(scores_per_problem) == 0:
        raise ValueError("scores_per_problem is empty; pass one list of scores per problem")
    return math.fsum(eff_at_k(s, k) for s in scores_per_problem) / len(scores_per_problem)


# --------------------------------------------------------------------------- maj@k


def _majority_credit(sample: Sequence[Hashable | None], correct_answer: Hashable) -> float:
    """Credit of one k-sample: 1/t when the correct answer is among the t answers tied for the
    most votes, else 0. ``None`` (no answer extracted) never votes."""
    votes = Counter(a for a in sample if a is not None)
    mine = votes.get(correct_answer, 0)
    if mine == 0:
        return 0.0
    top = max(votes.values())
    if mine < top:
        return 0.0
    return 1.0 / sum(1 for v in votes.values() if v == top)


def _maj_at_k_exact(answers: Sequence[Hashable | None], correct_answer: Hashable, k: int) -> float:
    """Exact maj@k by counting k-subsets over answer multiplicities.

    A k-subset with ``x_a`` copies of each answer a occurs in ``prod_a C(m_a, x_a)`` ways out of
    ``C(n, k)``. For each count j >= 1 of the correct answer, a small dynamic program over the
    other answers counts the ways for every other answer to take at most j votes, keeping t, the
    number that tie at exactly j; those ways earn credit 1/(t+1). ``None`` takes any count.
    Integer and Fraction arithmetic throughout, so the result is exact before the final float.
    """
    n = len(answers)
    tally = Counter(a for a in answers if a is not None)
    n_none = n - sum(tally.values())
    m_correct = tally.pop(correct_answer, 0)
    others = list(tally.values())
    total = Fraction(0)
    for j in range(1, min(m_correct, k) + 1):
        rest = k - j
        # ways[s][t]: choices of s samples from the groups seen so far, each group <= j, t at j.
        ways = [[0] * (len(others) + 1) for _ in range(rest + 1)]
        ways[0][0] = 1
        for m in others:
            grown = [[0] * (len(others) + 1) for _ in range(rest + 1)]
            for s in range(rest + 1):
                for t in range(len(others) + 1):
                    if ways[s][t] == 0:
                        continue
                    for x in range(min(m, j, rest - s) + 1):
                        grown[s + x][t + (x == j)] += ways[s][t] * math.comb(m, x)
            ways = grown
        credit = Fraction(0)
        for s in range(rest + 1):
            fill = math.comb(n_none, rest - s)
            if fill == 0:
                continue
            for t in range(len(others) + 1):
                if ways[s][t]:
                    credit += Fraction(ways[s][t] * fill, t + 1)
        total += math.comb(m_correct, j) * credit
    return float(total / math.comb(n, k))


def maj_at_k(
    answers: Sequence[Hashable | None],
    correct_answer: Hashable,
    k: int,
    *,
    exact_limit: int = 20,
    draws: int = 2000,
    seed: int = 0,
) -> float:
    """Probability that the majority vote over k samples, drawn without replacement from the n
    extracted ``answers`` of one problem, is ``correct_answer`` (maj@k, the self-consistency
    vote of Wang et al. 2022 as Minerva, Lewkowycz et al. 2022, reports it).

    Ties: the vote is broken uniformly at random among the answers tied for the most votes, and
    the expected credit is taken, so a tie of t answers that includes the correct one counts
    1/t. ``None`` (answer extraction failed) never wins; a draw of only ``None`` scores 0.
    Answers are compared with ``==`` (and hashed), so normalize them first.

    Estimator: when n <= ``exact_limit``, exact, by counting k-subsets over answer
    multiplicities (hypergeometric counts, no enumeration of subsets); otherwise a Monte-Carlo
    mean over ``draws`` k-subsets drawn with ``random.Random(seed)``, whose standard error is
    at most ``0.5 / sqrt(draws)`` (about 0.011 at 2000 draws). Both estimate the same quantity.
    """
    n = len(answers)
    if n == 0:
        raise ValueError("answers is empty; pass one extracted answer (or None) per sample")
    if correct_answer is None:
        raise ValueError("correct_answer must not be None; None marks a failed extraction")
    _check_k(k, n, "len(answers)")
    _check_int("exact_limit", exact_limit)
    _check_int("draws", draws)
    _check_int("seed", seed)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}; 2000 gives about 0.01 precision")
    if n <= exact_limit:
        return _maj_at_k_exact(answers, correct_answer, k)
    if not any(a is not None and a == correct_answer for a in answers):
        return 0.0
    rng = random.Random(seed)
    pool = list(answers)
    return (
        math.fsum(_majority_credit(rng.sample(pool, k), correct_answer) for _ in range(draws))
        / draws
    )


# --------------------------------------------------------------------------- cost metrics


def cost_of_pass(costs: Sequence[float], successes: Sequence[bool]) -> float:
    """Expected cost of one correct answer: mean cost per attempt / success rate, which is
    total cost / number of successes (Erol et al. 2025, "Cost-of-Pass: An Economic Framework
    for Evaluating Language Models"). ``math.inf`` when no attempt succeeded.

    ``costs[i]`` is attempt i's cost in any one unit (tokens, seconds, joules, dollars), and
    ``successes[i]`` whether it was correct.
    """
    if len(costs) != len(successes):
        raise ValueError(
            f"costs and successes differ in length ({len(costs)} != {len(successes)}); "
            f"pass one cost and one success flag per attempt"
        )
    if len(costs) == 0:
        raise ValueError("costs is empty; pass one cost per attempt")
    checked = [_check_finite(f"costs[{i}]", c, minimum=0.0) for i, c in enumerate(costs)]
    passed = sum(1 for s in successes if s)
    if passed == 0:
        return math.inf
    return math.fsum(checked) / passed


def _check_accuracy_tokens(accuracy: float, mean_tokens: float) -> None:
    _check_finite("accuracy", accuracy)
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy!r}")
    _check_finite("mean_tokens", mean_tokens)
    if mean_tokens <= 0:
        raise ValueError(f"mean_tokens must be > 0 (mean generated tokens), got {mean_tokens!r}")


def e3(accuracy: float, mean_tokens: float) -> float:
    """E3 = A^2 / T, accuracy squared over mean generated tokens, as the Plan-and-Budget paper
    (2025) is quoted by reviewers: squaring A keeps a cheap but wrong model from scoring well.
    Its released script prints A / T instead; that is :func:`accuracy_per_token`."""
    _check_accuracy_tokens(accuracy, mean_tokens)
    return accuracy * accuracy / mean_tokens


def accuracy_per_token(accuracy: float, mean_tokens: float) -> float:
    """A / T, accuracy over mean generated tokens: what Plan-and-Budget's (2025) released
    script prints under the E3 name; named apart from :func:`e3` so reports do not mix them."""
    _check_accuracy_tokens(accuracy, mean_tokens)
    return accuracy / mean_tokens


# --------------------------------------------------------------------------- uncertainty


def bootstrap_ci(
    per_problem_values: Sequence[float],
    statistic: Callable[[Sequence[float]], float] = fmean,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval (Efron 1979) of ``statistic`` over problems.

    Problems, not samples, are resampled with replacement, since samples of one problem are
    correlated; pass per-problem values of any metric above (pass@k, eff@k, maj@k) and the
    interval reflects the benchmark's finite problem set. The bounds are the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled statistic
    (linear interpolation, as :func:`~pytest_inferbudget.metrics.stats.quantile`), drawn with
    ``random.Random(seed)`` so a report is reproducible.
    """
    n = len(per_problem_values)
    if n == 0:
        raise ValueError("per_problem_values is empty; pass one metric value per problem")
    values = [
        _check_finite(f"per_problem_values[{i}]", v) for i, v in enumerate(per_problem_values)
    ]
    _check_finite("confidence", confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    _check_int("resamples", resamples)
    _check_int("seed", seed)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}; 2000 is typical")
    rng = random.Random(seed)
    stats = [statistic(rng.choices(values, k=n)) for _ in range(resamples)]
    tail = (1.0 - confidence) / 2.0
    return quantile(stats, tail), quantile(stats, 1.0 - tail)
