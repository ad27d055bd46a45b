"""How one metric of one test is judged between two runs: the thresholds, the unpaired
(Mann-Whitney) and paired (same requests) tests with Holm across metrics, exact greedy
token counts, and accuracy per problem. :mod:`~pytest_inferbudget.compare.runs` applies
them test by test."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_inferbudget.budget import COMPARED_KEYS, KEYS
from pytest_inferbudget.errors import ComparisonError
from pytest_inferbudget.metrics.significance import (
    bootstrap_log_ratio,
    holm,
    mann_whitney_u,
    min_p_value,
    paired_min_p,
    paired_permutation_p,
)
from pytest_inferbudget.records import (
    BudgetResult,
    MetricChange,
    TestRecord,
)
from pytest_inferbudget.verdicts import samples_of
from pytest_inferbudget.vocabulary import Change, Direction

__all__ = [
    "DEFAULT_THRESHOLD",
    "Gates",
    "accuracy_changes",
    "beyond_threshold",
    "check_thresholds",
    "exact_change",
    "exact_counts",
    "relative",
    "statistical_changes",
]

DEFAULT_THRESHOLD = 0.05
"""Relative change tolerated for a timed metric no --inferbudget-compare-fail (or
``compare_fail=``) names: beyond it a significant change is shown as a regression, but
only named (gated) metrics fail the run. Deterministic counts (tokens) default to 0."""


def relative(baseline: float, candidate: float) -> float:
    if baseline == 0.0:
        return 0.0 if candidate == 0.0 else math.copysign(math.inf, candidate)
    return (candidate - baseline) / abs(baseline)


class Gates:
    """The thresholds of one test: named ones (gated: they fail the run) over the default."""

    def __init__(
        self,
        nodeid: str,
        gates: Mapping[str, float],
        per_test: Mapping[str, Mapping[str, float]],
        default: float,
    ) -> None:
        self.named = {**gates, **per_test.get(nodeid, {})}
        self.default = default

    def threshold(self, metric: str) -> float:
        """A named threshold; else 0 for a deterministic count (token counts carry no
        noise, so any change is real), else the default."""
        default = 0.0 if KEYS[metric].deterministic else self.default
        return float(self.named.get(metric, default))

    def gated(self, metric: str) -> bool:
        return metric in self.named


def check_thresholds(name: str, thresholds: Mapping[str, float]) -> None:
    for metric, value in thresholds.items():
        if metric not in COMPARED_KEYS:
            raise ComparisonError(
                f"{name} names unknown metric {metric!r}; compared metrics are "
                f"{', '.join(COMPARED_KEYS)}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ComparisonError(
                f"{name}[{metric!r}] must be a relative change >= 0 (0.10 is 10%), got {value!r}"
            )


def beyond_threshold(change: float, threshold: float, direction: Direction) -> Change | None:
    """REGRESSION or IMPROVEMENT when ``change`` is beyond ``threshold``; else None."""
    if direction is Direction.AT_LEAST:
        change = -change
    if change > threshold:
        return Change.REGRESSION
    if change < -threshold:
        return Change.IMPROVEMENT
    return None


def exact_change(
    nodeid: str, metric: str, before: list[int], after: list[int], gates: Gates
) -> MetricChange:
    """A deterministic count compared request by request (greedy decoding, same requests)."""
    differing = sum(x != y for x, y in zip(before, after, strict=True))
    total_before, total_after = sum(before), sum(after)
    change = relative(float(total_before), float(total_after))
    threshold = gates.threshold(metric)
    if differing == 0:
        verdict = Change.EXACT_EQUAL
    else:
        verdict = beyond_threshold(change, threshold, Direction.AT_MOST) or Change.EXACT_CHANGED
    return MetricChange(
        nodeid=nodeid,
        metric=metric,
        unit=KEYS[metric].unit,
        baseline_median=float(statistics.median(before)),
        candidate_median=float(statistics.median(after)),
        relative_change=change,
        p_value=None,
        p_adjusted=None,
        n_baseline=len(before),
        n_candidate=len(after),
        threshold=threshold,
        verdict=verdict,
        detail=(
            f"greedy, compared exactly: {differing} of {len(before)} requests differ; "
            f"total {total_before} -> {total_after} tokens"
        ),
        method="exact",
        gated=gates.gated(metric),
    )


def exact_counts(test: TestRecord, metric: str) -> list[int]:
    return [int(v) for v in samples_of(metric, test.traces)]


def statistical_changes(
    nodeid: str,
    metrics: Sequence[str],
    before: Mapping[str, list[float]],
    after: Mapping[str, list[float]],
    gates: Gates,
    alpha: float,
    resamples: int,
    pairs: Mapping[str, list[float]] | None = None,
) -> list[MetricChange]:
    """Mann-Whitney with Holm across ``metrics``; or, where the samples are too few for
    any of them ever to be significant, the point change (deterministic quantities) or
    ``inconclusive``; ``equal`` where both sides hold the same values.

    A metric in ``pairs`` (the log ratios of the same requests, candidate over baseline)
    is judged paired instead: a sign-flip permutation test on the log ratios, its change
    the geometric mean ratio. The same requests differ among themselves far more than one
    request between two runs, so pairing is what lets a 25% slowdown stand out of a dozen
    requests of different lengths.
    """
    pairs = pairs or {}
    tested = [m for m in metrics if sorted(before[m]) != sorted(after[m])]
    results = [
        (0.0, paired_permutation_p(pairs[m])) if m in pairs else mann_whitney_u(before[m], after[m])
        for m in tested
    ]
    adjusted = dict(zip(tested, holm([p for _, p in results]), strict=True))
    raw = dict(zip(tested, results, strict=True))
    changes = []
    for metric in metrics:
        a, b = before[metric], after[metric]
        base_median, cand_median = statistics.median(a), statistics.median(b)
        change = relative(base_median, cand_median)
        threshold = gates.threshold(metric)
        key = KEYS[metric]
        method: Any = "mann-whitney"
        p_value = p_adj = None
        detail = ""
        if metric not in raw:
            verdict, method = Change.EQUAL, "equal"
            detail = f"the same {len(a)} value(s) on both sides"
        else:
            u, p_value = raw[metric]
            p_adj = adjusted[metric]
            if metric in pairs:
                ratios = pairs[metric]
                method = "paired"
                change = math.expm1(statistics.fmean(ratios))
                detail = f"the same {len(ratios)} requests on both sides, paired"
                reachable = paired_min_p(len(ratios)) * len(tested) <= alpha
                shift = -statistics.fmean(ratios)  # < 0: the candidate is slower
            else:
                reachable = min_p_value(len(a), len(b)) * len(tested) <= alpha
                shift = u - len(a) * len(b) / 2.0  # < 0: the candidate ranks higher
            if not reachable and key.deterministic:
                mean_change = relative(statistics.fmean(a), statistics.fmean(b))
                verdict = (
                    beyond_threshold(mean_change, threshold, Direction.AT_MOST) or Change.UNCHANGED
                )
                change, method = mean_change, "point"
                detail = (
                    f"n too small for a test ({len(a)} vs {len(b)}): the point change of "
                    "the mean of a deterministic quantity judged against the threshold"
                )
            elif not reachable:
                verdict = Change.INCONCLUSIVE
                n_pairs = (
                    f"{len(pairs[metric])} paired" if metric in pairs else f"{len(a)} vs {len(b)}"
                )
                detail = (
                    f"n too small: {n_pairs} requests can never reach "
                    f"significance at alpha {alpha:g} over {len(tested)} metric(s)"
                )
            elif p_adj > alpha:
                verdict = Change.INSIGNIFICANT
            else:
                worse = beyond_threshold(change, threshold, Direction.AT_MOST)
                agrees = (worse is Change.REGRESSION and shift < 0) or (
                    worse is Change.IMPROVEMENT and shift > 0
                )
                verdict = worse if worse is not None and agrees else Change.UNCHANGED
        ci_low = ci_high = None
        if method == "mann-whitney" and resamples > 0 and min(a) > 0 and min(b) > 0:
            _, low, high = bootstrap_log_ratio(a, b, resamples=resamples, confidence=1.0 - alpha)
            ci_low, ci_high = math.expm1(low), math.expm1(high)
        elif method == "paired" and resamples > 0:
            from pytest_inferbudget.metrics.accuracy import bootstrap_ci

            low, high = bootstrap_ci(pairs[metric], confidence=1.0 - alpha, resamples=resamples)
            ci_low, ci_high = math.expm1(low), math.expm1(high)
        changes.append(
            MetricChange(
                nodeid=nodeid,
                metric=metric,
                unit=key.unit,
                baseline_median=base_median,
                candidate_median=cand_median,
                relative_change=change,
                p_value=p_value,
                p_adjusted=p_adj,
                n_baseline=len(a),
                n_candidate=len(b),
                threshold=threshold,
                verdict=verdict,
                ci_low=ci_low,
                ci_high=ci_high,
                detail=detail,
                method=method,
                gated=gates.gated(metric),
            )
        )
    return changes


def accuracy_changes(
    nodeid: str, base: TestRecord, cand: TestRecord, gates: Gates, alpha: float
) -> list[MetricChange]:
    """The accuracy budgets both runs judged (matched by label, e.g. ``pass_at_k@3``):
    per-problem values paired by problem where both runs scored the same problems."""
    before = {b.key: b for b in base.budgets if accuracy_key(b)}
    changes = []
    for result in cand.budgets:
        earlier = before.get(result.key)
        if earlier is None or earlier.measured is None or result.measured is None:
            continue
        metric = accuracy_key(result)
        key = KEYS[metric]
        threshold = gates.threshold(metric)
        change = relative(earlier.measured, result.measured)
        common = sorted(set(earlier.per_problem) & set(result.per_problem))
        p_value = None
        if key.ratio or not common:
            method: Any = "point"
            verdict = beyond_threshold(change, threshold, key.direction) or Change.UNCHANGED
            detail = "a ratio over all samples: judged on its point change"
        else:
            diffs = [result.per_problem[p] - earlier.per_problem[p] for p in common]
            method = "paired"
            if not any(diffs):
                verdict, method = Change.EQUAL, "equal"
                detail = f"equal on all {len(common)} problems"
            else:
                p_value = paired_permutation_p(diffs)
                smallest = paired_permutation_p([1.0] * len(diffs))
                if smallest > alpha:
                    verdict = Change.INCONCLUSIVE
                    detail = (
                        f"n too small: {len(common)} paired problem(s) can never reach "
                        f"significance at alpha {alpha:g}"
                    )
                elif p_value > alpha:
                    verdict = Change.INSIGNIFICANT
                    detail = f"paired over {len(common)} problems"
                else:
                    verdict = beyond_threshold(change, threshold, key.direction) or Change.UNCHANGED
                    detail = f"paired over {len(common)} problems"
        changes.append(
            MetricChange(
                nodeid=nodeid,
                metric=metric,
                unit=result.unit,
                baseline_median=earlier.measured,
                candidate_median=result.measured,
                relative_change=change,
                p_value=p_value,
                p_adjusted=p_value,
                n_baseline=len(earlier.per_problem) or earlier.samples,
                n_candidate=len(result.per_problem) or result.samples,
                threshold=threshold,
                verdict=verdict,
                detail=f"{result.key}: {detail}",
                method=method,
                gated=gates.gated(metric),
            )
        )
    return changes


def accuracy_key(result: BudgetResult) -> str:
    """``pass_at_k@3`` -> ``pass_at_k``; "" for a cost key or a per-hardware variant."""
    name = result.key.partition("@")[0]
    key = KEYS.get(name)
    return name if key is not None and key.accuracy and key.compared else ""
