"""Two runs compared test by test (matched by node id), after checking that they ran on
the same hardware and engine; the verdicts come from
:mod:`~pytest_inferbudget.compare.judge`, made load-aware by
:mod:`pytest_inferbudget.contention`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_inferbudget.budget import COMPARED_KEYS, KEYS
from pytest_inferbudget.compare.history import History, history_of, judge_against_history
from pytest_inferbudget.compare.judge import (
    DEFAULT_THRESHOLD,
    Gates,
    accuracy_changes,
    check_thresholds,
    exact_change,
    exact_counts,
    statistical_changes,
)
from pytest_inferbudget.contention import LOAD_TOLERANCE, judge_under_load
from pytest_inferbudget.errors import ComparisonError
from pytest_inferbudget.hardware import Machine
from pytest_inferbudget.records import (
    Comparison,
    RunRecord,
    TestComparison,
    TestRecord,
)
from pytest_inferbudget.verdicts import samples_of

__all__ = [
    "check_comparable",
    "compare_runs",
    "compare_test",
    "describe_run",
    "hardware_key",
]


def hardware_key(run: Mapping[str, Any]) -> str:
    """The key saved runs are kept under: :attr:`Machine.run_key` of the run's machine."""
    return Machine.from_run(run).run_key


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
    history: Mapping[str, Sequence[float]] | None = None,
) -> TestComparison:
    """One test of the candidate against the same test of the baseline (see the module);
    ``history`` (per metric, the run-level medians of earlier saved runs of this test)
    makes timings history-aware (:mod:`~pytest_inferbudget.compare.history`)."""
    nodeid = cand.nodeid
    limits = Gates(nodeid, gates, per_test_gates or {}, default_threshold)
    before, after = _samples(base), _samples(cand)
    plan = _request_plan(base)
    exact = plan is not None and plan == _request_plan(cand)
    deterministic = [m for m in before if KEYS[m].deterministic]
    exact_metrics = [m for m in deterministic if exact and before[m] and after[m]]
    statistical = [m for m in before if before[m] and after[m] and m not in exact_metrics]
    pairs = _log_ratios(base, cand, statistical) if exact else {}
    changes = {
        c.metric: c
        for c in statistical_changes(
            nodeid, statistical, before, after, limits, alpha, resamples, pairs
        )
    }
    for metric in exact_metrics:
        changes[metric] = exact_change(
            nodeid, metric, exact_counts(base, metric), exact_counts(cand, metric), limits
        )
    history = history or {}
    ordered = [
        judge_against_history(
            judge_under_load(changes[m], base.machine, cand.machine, load_tolerance),
            history.get(m, ()),
            alpha,
        )
        for m in before
        if m in changes
    ]
    return TestComparison(nodeid, (*ordered, *accuracy_changes(nodeid, base, cand, limits, alpha)))


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
    history: Sequence[Mapping[str, Any]] = (),
) -> Comparison:
    """Compare two saved runs (``RunRecord.to_dict()``) test by test, matched by nodeid.

    ``thresholds`` are the gated ones (--inferbudget-compare-fail): a metric of
    ``budget.COMPARED_KEYS`` to the relative change tolerated (``0.10``: 10%); a regression
    beyond it fails the run. Metrics not named use ``default_threshold`` and are shown,
    not gated. ``per_test_thresholds[nodeid]`` (the marker's ``compare_fail=``) override
    per test, and gate too. ``resamples`` bootstrap resamples give each statistical change
    an interval (0 skips it; the verdict does not depend on it). A wall-clock change
    between tests whose machine load differed by more than ``load_tolerance`` (share of the
    machine's CPU used by other processes) is ``inconclusive``. ``history``: earlier saved
    runs on the same hardware key (the baseline among them); with
    :data:`~pytest_inferbudget.compare.history.HISTORY_MIN_RUNS` or more runs of a test, a
    timing change within their run-to-run variation is ``insignificant`` (``history``).

    Raises :class:`ComparisonError` if the runs ran on different hardware or engines
    (unless ``allow_different_hardware``), or for a malformed run or setting.
    """
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ComparisonError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ComparisonError(f"resamples must be an integer >= 0, got {resamples!r}")
    per_test = per_test_thresholds or {}
    check_thresholds("thresholds", thresholds)
    for nodeid, overrides in per_test.items():
        check_thresholds(f"per_test_thresholds[{nodeid!r}]", overrides)
    base_run, cand_run = _parse(baseline, "baseline"), _parse(candidate, "candidate")
    mismatch = check_comparable(baseline, candidate, allow_different_hardware)
    past: History = history_of([_parse(run, "history") for run in history])
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
            history=past.get(test.nodeid),
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
