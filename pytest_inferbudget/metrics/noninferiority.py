"""Non-inferiority of one strategy against a baseline on the same problems.

Two figures, both paired by problem (the two strategies answered the same questions, so
a problem's difficulty cancels):

* **tokens saved**: ``1 - sum(candidate tokens) / sum(baseline tokens)``, a ratio of
  totals over the problems (a problem that costs many tokens weighs more, as it does on
  the bill), with a percentile bootstrap interval that resamples problems in pairs.
* **accuracy not worse**: only the discordant problems (one strategy right, the other
  wrong) carry information about the difference ``d = p_candidate - p_baseline``.
  Tango's score test (Tango 1998, Statistics in Medicine 17:891) tests ``d <= -margin``
  with the variance taken under the null, at the restricted maximum-likelihood estimate
  of the "only the baseline right" cell; at ``margin = 0`` it is McNemar's test, and
  unlike the Wald interval it behaves when a discordant cell is empty. Inverting it gives
  one-sided bounds: non-inferiority is shown when the lower bound is above ``-margin``,
  inferiority when the upper bound is below it.

Pure standard library, as every module of :mod:`pytest_inferbudget.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal, NamedTuple

from pytest_inferbudget.metrics.accuracy import bootstrap_ci
from pytest_inferbudget.vocabulary import Verdict

_BISECTION_STEPS = 60
"""Halvings of the search interval when inverting the score test: well past float
precision on [-1, 1]."""


class PairedOutcomes(NamedTuple):
    """Right/wrong of two strategies on the same problems, as the test needs them."""

    problems: int
    wins: int
    """Problems the candidate got right and the baseline wrong."""
    losses: int
    """Problems the candidate got wrong and the baseline right."""
    candidate_right: int
    baseline_right: int

    @property
    def difference(self) -> float:
        """Candidate accuracy minus baseline accuracy: ``(wins - losses) / problems``."""
        return (self.wins - self.losses) / self.problems


def paired_outcomes(candidate: Sequence[bool], baseline: Sequence[bool]) -> PairedOutcomes:
    """Count the pairs; ``candidate[i]`` and ``baseline[i]`` are the same problem."""
    if len(candidate) != len(baseline):
        raise ValueError(
            f"paired outcomes need one candidate and one baseline result per problem; got "
            f"{len(candidate)} and {len(baseline)}"
        )
    if not candidate:
        raise ValueError("paired outcomes need at least one problem")
    for name, values in (("candidate", candidate), ("baseline", baseline)):
        for index, value in enumerate(values):
            if not isinstance(value, bool):
                raise ValueError(f"{name}[{index}] must be True or False, got {value!r}")
    pairs = list(zip(candidate, baseline, strict=True))
    return PairedOutcomes(
        problems=len(pairs),
        wins=sum(c and not b for c, b in pairs),
        losses=sum(b and not c for c, b in pairs),
        candidate_right=sum(candidate),
        baseline_right=sum(baseline),
    )


def _check_counts(wins: int, losses: int, problems: int) -> None:
    for name, value in (("wins", wins), ("losses", losses), ("problems", problems)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if problems < 1 or wins + losses > problems:
        raise ValueError(
            f"need problems >= 1 and wins + losses <= problems; got wins={wins}, "
            f"losses={losses}, problems={problems}"
        )


def _check_confidence(confidence: float) -> float:
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not 0.5 <= confidence < 1
    ):
        raise ValueError(f"confidence must be in [0.5, 1), such as 0.95; got {confidence!r}")
    return float(confidence)


def tango_score(wins: int, losses: int, problems: int, d0: float) -> float:
    """Tango's score statistic for ``H0: p_candidate - p_baseline = d0``.

    ``(wins - losses - n d0) / sqrt(n (2 q + d0 (1 - d0)))`` with ``q`` the restricted
    MLE of P(only the baseline right) under ``H0``: the root of ``2n q^2 + B q + C = 0``,
    ``B = -wins - losses + (2n - wins + losses) d0``, ``C = -losses d0 (1 - d0)`` (the
    parametrisation of R's ``PropCIs::scoreci.mp``). Large values speak for ``d > d0``.
    At ``d0 = 0`` it is McNemar's ``(wins - losses) / sqrt(wins + losses)``.
    """
    _check_counts(wins, losses, problems)
    if isinstance(d0, bool) or not isinstance(d0, int | float) or not -1 < d0 < 1:
        raise ValueError(f"d0 must be a difference of proportions in (-1, 1), got {d0!r}")
    n = problems
    a = 2.0 * n
    b = -wins - losses + (2.0 * n - wins + losses) * d0
    c = -losses * d0 * (1.0 - d0)
    q = (math.sqrt(max(0.0, b * b - 4.0 * a * c)) - b) / (2.0 * a)
    variance = n * (2.0 * q + d0 * (1.0 - d0))
    numerator = wins - losses - n * d0
    if variance <= 0.0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def difference_bound(
    wins: int, losses: int, problems: int, confidence: float, side: Literal["lower", "upper"]
) -> float:
    """One-sided ``confidence`` bound on ``p_candidate - p_baseline`` from Tango's test.

    The lower bound is the smallest ``d0`` the one-sided test at level ``1 - confidence``
    does not reject in favour of ``d > d0``; the score falls as ``d0`` rises, so it is
    found by bisection. Two one-sided bounds at ``confidence`` make a two-sided interval
    at ``2 confidence - 1`` (0.95 each: the 90% interval of ``scoreci.mp``).
    """
    _check_counts(wins, losses, problems)
    z = NormalDist().inv_cdf(_check_confidence(confidence))
    estimate = (wins - losses) / problems
    sign = 1.0 if side == "lower" else -1.0
    # lower: the bound is where score = z, between -1 and the estimate (score 0 there)
    inside, edge = estimate, -sign
    for _ in range(_BISECTION_STEPS):
        middle = (inside + edge) / 2.0
        if middle in (inside, edge):
            break
        if sign * tango_score(wins, losses, problems, middle) < z:
            inside = middle
        else:
            edge = middle
    return inside


@dataclass(frozen=True, slots=True)
class NonInferiority:
    """The paired accuracy comparison and what it shows at the margin."""

    outcomes: PairedOutcomes
    margin: float
    confidence: float
    lower: float
    """One-sided ``confidence`` lower bound on ``p_candidate - p_baseline``."""
    upper: float
    """One-sided ``confidence`` upper bound."""
    verdict: Verdict
    """PASS: non-inferior (``lower > -margin``); FAIL: inferior (``upper < -margin``);
    INCONCLUSIVE: the interval holds ``-margin``."""

    def describe(self) -> str:
        o = self.outcomes
        shown = {
            Verdict.PASS: "not worse by the margin or more (non-inferiority shown)",
            Verdict.FAIL: "worse by more than the margin (inferiority shown)",
            Verdict.INCONCLUSIVE: "neither non-inferiority nor inferiority shown: "
            "score more problems, or widen the margin",
        }[self.verdict]
        return (
            f"accuracy {o.candidate_right}/{o.problems} vs {o.baseline_right}/{o.problems}; "
            f"discordant problems: {o.wins} right only with the candidate, {o.losses} right "
            f"only with the baseline; difference {o.difference:+.3f}, one-sided "
            f"{self.confidence:g} bounds [{self.lower:+.3f}, {self.upper:+.3f}] against "
            f"-margin {-self.margin:+.3f} (Tango's paired score test): {shown}"
        )


def noninferiority(
    candidate: Sequence[bool], baseline: Sequence[bool], *, margin: float, confidence: float
) -> NonInferiority:
    """Whether the candidate's accuracy is not worse than the baseline's by ``margin``
    (in accuracy points, ``0 <= margin < 1``), paired by problem."""
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
        raise ValueError(f"margin must be an accuracy difference in [0, 1), got {margin!r}")
    outcomes = paired_outcomes(candidate, baseline)
    lower = difference_bound(outcomes.wins, outcomes.losses, outcomes.problems, confidence, "lower")
    upper = difference_bound(outcomes.wins, outcomes.losses, outcomes.problems, confidence, "upper")
    if lower > -margin:
        verdict = Verdict.PASS
    elif upper < -margin:
        verdict = Verdict.FAIL
    else:
        verdict = Verdict.INCONCLUSIVE
    return NonInferiority(outcomes, float(margin), float(confidence), lower, upper, verdict)


def _check_tokens(name: str, values: Sequence[float]) -> list[float]:
    checked = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name}[{index}] must be a token count >= 0, got {value!r}")
        checked.append(float(value))
    return checked


def tokens_saved(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """``1 - sum(candidate) / sum(baseline)``: the share of the baseline's tokens the
    candidate did without (negative when it spent more). A ratio of totals, not a mean of
    per-problem ratios, so a cheap problem cannot swing it."""
    cand = _check_tokens("candidate", candidate)
    base = _check_tokens("baseline", baseline)
    if len(cand) != len(base) or not cand:
        raise ValueError(
            f"tokens saved needs one candidate and one baseline count per problem; got "
            f"{len(cand)} and {len(base)}"
        )
    total = math.fsum(base)
    if total == 0:
        raise ValueError("the baseline spent no tokens, so no share of them can be saved")
    return 1.0 - math.fsum(cand) / total


def tokens_saved_ci(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`tokens_saved`, resampling problems with
    both strategies' counts kept together (the pairing); a resample whose baseline spent
    nothing saves nothing."""
    cand = _check_tokens("candidate", candidate)
    base = _check_tokens("baseline", baseline)
    tokens_saved(cand, base)  # the same checks as the point estimate

    def statistic(picked: Sequence[float]) -> float:
        total = math.fsum(base[int(i)] for i in picked)
        if total == 0:
            return 0.0
        return 1.0 - math.fsum(cand[int(i)] for i in picked) / total

    indices = [float(i) for i in range(len(cand))]
    return bootstrap_ci(indices, statistic, confidence=confidence, resamples=resamples, seed=seed)
