"""Comparing a run against a saved baseline: which changes are regressions.

A change is a *regression* only when it is both statistically significant and larger than
a tolerance: two-sided Mann-Whitney U on the per-request samples of each compared metric
(the rows of ``budget.KEYS`` marked ``compared``), Holm-corrected across the metrics of one
test, and a relative change of the median above the metric's threshold. Beside it:

- greedy token counts of matching requests are deterministic, so they are compared
  request by request (``exact``);
- when the samples are too few for Mann-Whitney ever to reach significance (3 against 3
  requests cannot go below p = 0.1), a deterministic quantity (token counts) is judged on
  its point change (``point``) and anything else is ``inconclusive (n too small)``, never
  silently passed;
- identical samples are ``equal``;
- accuracy (pass@k, maj@k, eff@k) is compared per problem, paired where the problems
  match (``paired``: a sign-flip permutation test); cost-of-pass and E3 on their point
  change.

The statistics are pure functions in :mod:`pytest_inferbudget.metrics.significance`; the
result is a :class:`~pytest_inferbudget.records.Comparison`; reports render it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_inferbudget.budget import COMPARED_KEYS, KEYS
from pytest_inferbudget.contention import LOAD_TOLERANCE, judge_under_load
from pytest_inferbudget.errors import ComparisonError
from pytest_inferbudget.hardware import Machine
from pytest_inferbudget.metrics.significance import (
    bootstrap_log_ratio,
    holm,
    mann_whitney_u,
    min_p_value,
    paired_permutation_p,
)
from pytest_inferbudget.records import (
    BudgetResult,
    Comparison,
    MetricChange,
    RunRecord,
    TestComparison,
    TestRecord,
)
from pytest_inferbudget.verdicts import samples_of
from pytest_inferbudget.vocabulary import Change, Direction

__all__ = [
    "DEFAULT_THRESHOLD",
    "LOAD_TOLERANCE",
    "ComparisonError",
    "compare_runs",
    "compare_test",
    "hardware_key",
]

DEFAULT_THRESHOLD = 0.05
"""Relative change tolerated for a timed metric no --inferbudget-compare-fail (or
``compare_fail=``) names: beyond it a significant change is shown as a regression, but
only named (gated) metrics fail the run. Deterministic counts (tokens) default to 0."""


def hardware_key(run: Mapping[str, Any]) -> str:
    """The key saved runs are kept under: :attr:`Machine.run_key` of the run's machine."""
    return Machine.from_run(run).run_key


# --------------------------------------------------------------------------- comparison


def _parse(run: Mapping[str, Any], which: str) -> RunRecord:
    if not isinstance(run, Mapping):
        raise ComparisonError(f"the {which} run must be a dict (RunRecord.to_dict()), got {run!r}")
    try:
        return RunRecord.from_dict(dict(run))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ComparisonError(f"the {which} run is not a valid saved run: {exc!r}") from exc


def _samples(test: TestRecord) -> dict[str, list[float]]:
    """Per-trace samples of each compared cost key; what was not measured is left out."""
    traces = [t for t in test.traces if t.generations]
    return {
        name: [v for v in samples_of(name, traces) if math.isfinite(v)]
        for name, key in COMPARED_KEYS.items()
        if not key.accuracy
    }


def _log_ratios(
    base: TestRecord, cand: TestRecord, metrics: Sequence[str]
) -> dict[str, list[float]]:
    """Per metric, ``log(candidate / baseline)`` of each request both runs made alike
    (same greedy requests, same order) and both measured; metrics with fewer than two
    such pairs, or non-positive values, are left to the unpaired test."""
    base_traces = [t for t in base.traces if t.generations]
    cand_traces = [t for t in cand.traces if t.generations]
    if len(base_traces) != len(cand_traces):
        return {}
    found = {}
    for metric in metrics:
        if KEYS[metric].deterministic:
            continue
        ratios = []
        for b, c in zip(base_traces, cand_traces, strict=True):
            x, y = samples_of(metric, [b]), samples_of(metric, [c])
            if len(x) == len(y) == 1 and x[0] > 0 and y[0] > 0:
                ratios.append(math.log(y[0] / x[0]))
        if len(ratios) >= 2:
            found[metric] = ratios
    return found


def _request_plan(test: TestRecord) -> list[tuple[str, list[dict[str, Any]]]] | None:
    """Each trace's strategy and requests, when every request was greedy; else None."""
    plan = []
    for trace in test.traces:
        if not trace.responses or not all(r.request.greedy for r in trace.responses):
            return None
        plan.append((trace.strategy, [r.request.to_dict() for r in trace.responses]))
    return plan or None


def _relative(baseline: float, candidate: float) -> float:
    if baseline == 0.0:
        return 0.0 if candidate == 0.0 else math.copysign(math.inf, candidate)
    return (candidate - baseline) / abs(baseline)


class _Gates:
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


def _check_thresholds(name: str, thresholds: Mapping[str, float]) -> None:
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


def _worse(change: float, threshold: float, direction: Direction) -> Change | None:
    """REGRESSION or IMPROVEMENT when ``change`` is beyond ``threshold``; else None."""
    if direction is Direction.AT_LEAST:
        change = -change
    if change > threshold:
        return Change.REGRESSION
    if change < -threshold:
        return Change.IMPROVEMENT
    return None


def _exact(
    nodeid: str, metric: str, before: list[int], after: list[int], gates: _Gates
) -> MetricChange:
    """A deterministic count compared request by request (greedy decoding, same requests)."""
    differing = sum(x != y for x, y in zip(before, after, strict=True))
    total_before, total_after = sum(before), sum(after)
    change = _relative(float(total_before), float(total_after))
    threshold = gates.threshold(metric)
    if differing == 0:
        verdict = Change.EXACT_EQUAL
    else:
        verdict = _worse(change, threshold, Direction.AT_MOST) or Change.EXACT_CHANGED
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


def _exact_counts(test: TestRecord, metric: str) -> list[int]:
    return [int(v) for v in samples_of(metric, test.traces)]


def _statistical(
    nodeid: str,
    metrics: Sequence[str],
    before: Mapping[str, list[float]],
    after: Mapping[str, list[float]],
    gates: _Gates,
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
        change = _relative(base_median, cand_median)
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
                smallest = paired_permutation_p([1.0] * len(ratios))
                reachable = smallest * len(tested) <= alpha
                shift = -statistics.fmean(ratios)  # < 0: the candidate is slower
            else:
                reachable = min_p_value(len(a), len(b)) * len(tested) <= alpha
                shift = u - len(a) * len(b) / 2.0  # < 0: the candidate ranks higher
            if not reachable and key.deterministic:
                mean_change = _relative(statistics.fmean(a), statistics.fmean(b))
                verdict = _worse(mean_change, threshold, Direction.AT_MOST) or Change.UNCHANGED
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
                worse = _worse(change, threshold, Direction.AT_MOST)
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


def _accuracy(
    nodeid: str, base: TestRecord, cand: TestRecord, gates: _Gates, alpha: float
) -> list[MetricChange]:
    """The accuracy budgets both runs judged (matched by label, e.g. ``pass_at_k@3``):
    per-problem values paired by problem where both runs scored the same problems."""
    before = {b.key: b for b in base.budgets if _accuracy_key(b)}
    changes = []
    for result in cand.budgets:
        earlier = before.get(result.key)
        if earlier is None or earlier.measured is None or result.measured is None:
            continue
        metric = _accuracy_key(result)
        key = KEYS[metric]
        threshold = gates.threshold(metric)
        change = _relative(earlier.measured, result.measured)
        common = sorted(set(earlier.per_problem) & set(result.per_problem))
        p_value = None
        if key.ratio or not common:
            method: Any = "point"
            verdict = _worse(change, threshold, key.direction) or Change.UNCHANGED
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
                    verdict = _worse(change, threshold, key.direction) or Change.UNCHANGED
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


def _accuracy_key(result: BudgetResult) -> str:
    """``pass_at_k@3`` -> ``pass_at_k``; "" for a cost key or a per-hardware variant."""
    name = result.key.partition("@")[0]
    key = KEYS.get(name)
    return name if key is not None and key.accuracy and key.compared else ""


def compare_test(
    base: TestRecord,
    cand: TestRecord,
    *,
    gates: Mapping[str, float] = {},
    per_test_gates: Mapping[str, Mapping[str, float]] | None = None,
    default_threshold: float = DEFAULT_THRESHOLD,
    alpha: float = 0.05,
    resamples: int = 1000,
    load_tolerance: float = LOAD_TOLERANCE,
) -> TestComparison:
    """One test of the candidate against the same test of the baseline (see the module)."""
    nodeid = cand.nodeid
    limits = _Gates(nodeid, gates, per_test_gates or {}, default_threshold)
    before, after = _samples(base), _samples(cand)
    plan = _request_plan(base)
    exact = plan is not None and plan == _request_plan(cand)
    deterministic = [m for m in before if KEYS[m].deterministic]
    exact_metrics = [m for m in deterministic if exact and before[m] and after[m]]
    statistical = [m for m in before if before[m] and after[m] and m not in exact_metrics]
    pairs = _log_ratios(base, cand, statistical) if exact else {}
    changes = {
        c.metric: c
        for c in _statistical(nodeid, statistical, before, after, limits, alpha, resamples, pairs)
    }
    for metric in exact_metrics:
        changes[metric] = _exact(
            nodeid, metric, _exact_counts(base, metric), _exact_counts(cand, metric), limits
        )
    ordered = [
        judge_under_load(changes[m], base.machine, cand.machine, load_tolerance)
        for m in before
        if m in changes
    ]
    return TestComparison(nodeid, (*ordered, *_accuracy(nodeid, base, cand, limits, alpha)))


def compare_runs(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    *,
    thresholds: Mapping[str, float] = {},
    default_threshold: float = DEFAULT_THRESHOLD,
    alpha: float = 0.05,
    allow_different_hardware: bool = False,
    per_test_thresholds: Mapping[str, Mapping[str, float]] | None = None,
    resamples: int = 1000,
    baseline_label: str = "",
    load_tolerance: float = LOAD_TOLERANCE,
) -> Comparison:
    """Compare two saved runs (``RunRecord.to_dict()``) test by test, matched by nodeid.

    ``thresholds`` are the gated ones (--inferbudget-compare-fail): a metric of
    ``budget.COMPARED_KEYS`` to the relative change tolerated (``0.10``: 10%); a regression
    beyond it fails the run. Metrics not named use ``default_threshold`` and are shown,
    not gated. ``per_test_thresholds[nodeid]`` (the marker's ``compare_fail=``) override
    per test, and gate too. ``resamples`` bootstrap resamples give each statistical change
    an interval (0 skips it; the verdict does not depend on it). A wall-clock change
    between tests whose machine load differed by more than ``load_tolerance`` (share of the
    machine's CPU used by other processes) is ``inconclusive``.

    Raises :class:`ComparisonError` if the runs ran on different hardware or engines
    (unless ``allow_different_hardware``), or for a malformed run or setting.
    """
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ComparisonError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ComparisonError(f"resamples must be an integer >= 0, got {resamples!r}")
    per_test = per_test_thresholds or {}
    _check_thresholds("thresholds", thresholds)
    for nodeid, overrides in per_test.items():
        _check_thresholds(f"per_test_thresholds[{nodeid!r}]", overrides)
    base_run, cand_run = _parse(baseline, "baseline"), _parse(candidate, "candidate")
    mismatch = check_comparable(baseline, candidate, allow_different_hardware)
    base_tests = {t.nodeid: t for t in base_run.tests}
    cand_tests = {t.nodeid: t for t in cand_run.tests}
    compared = tuple(
        compare_test(
            base_tests[test.nodeid],
            test,
            gates=thresholds,
            per_test_gates=per_test,
            default_threshold=default_threshold,
            alpha=float(alpha),
            resamples=resamples,
            load_tolerance=load_tolerance,
        )
        for test in cand_run.tests
        if test.nodeid in base_tests
    )
    return Comparison(
        baseline_run_id=base_run.run_id,
        candidate_run_id=cand_run.run_id,
        alpha=float(alpha),
        tests=compared,
        added=tuple(t.nodeid for t in cand_run.tests if t.nodeid not in base_tests),
        removed=tuple(t.nodeid for t in base_run.tests if t.nodeid not in cand_tests),
        hardware_mismatch=mismatch,
        baseline_label=baseline_label or describe_run(baseline),
    )


def check_comparable(
    baseline: Mapping[str, Any], candidate: Mapping[str, Any], allow_different_hardware: bool
) -> str:
    """What differs between the runs' hardware or engine ("" when nothing does); raises
    :class:`ComparisonError` naming it unless different hardware is allowed."""
    mismatch = Machine.from_run(baseline).difference(Machine.from_run(candidate))
    if mismatch and not allow_different_hardware:
        raise ComparisonError(
            f"baseline run {baseline.get('run_id')} (hardware key {hardware_key(baseline)}) "
            f"and this run (hardware key {hardware_key(candidate)}) ran on different "
            f"hardware or engines: {mismatch}; compare runs from the same machine and engine, "
            "or allow different hardware (--inferbudget-compare-any-hardware)"
        )
    return mismatch


def describe_run(run: Mapping[str, Any]) -> str:
    """``NAME (commit abc123def456 on main, 2026-12-01T09:00:00+00:00, run 1f2e...)``."""
    commit = run.get("commit") or {}
    parts = []
    if commit:
        where = f" on {commit['branch']}" if commit.get("branch") else ""
        dirty = " (dirty)" if commit.get("dirty") else ""
        parts.append(f"commit {str(commit.get('id', ''))[:12]}{dirty}{where}")
    parts.append(str(run.get("started_at", "")))
    parts.append(f"run {str(run.get('run_id', ''))[:12]}")
    name = run.get("name")
    return (f"{name} " if name else "") + "(" + ", ".join(p for p in parts if p) + ")"
