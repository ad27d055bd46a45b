"""History-aware comparison: a timing change is called only when it exceeds the
run-to-run variation that earlier saved runs of the same test on the same hardware key
show, as well as the threshold.

A test on per-request samples models the noise *within* a session; every request of a
session shares the machine's state (other load, clock frequency, caches), which moves a
whole session at once. The spread of a test's run-level statistic (the median of its
per-request samples) across saved runs measures that between-run noise directly, as asv's
and CodSpeed's history-based detection do: with ``n`` runs giving log-medians of sample
standard deviation ``s``, the log ratio of two independent runs has standard deviation
``s * sqrt(2)``, and a change within ``t(1 - alpha/2, n - 1) * s * sqrt(2)`` of zero is
what two runs of the same code are expected to show. ``s`` is estimated from the median
absolute successive difference of the log-medians in commit order (as the change-point
search does), not their standard deviation: a real step in the history moves one
difference, where it would inflate the standard deviation and hide every later change.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence

from pytest_inferbudget.budget import KEYS
from pytest_inferbudget.metrics.changepoint import step_robust_sd
from pytest_inferbudget.metrics.significance import student_t_quantile
from pytest_inferbudget.records import MetricChange, RunRecord, TestRecord
from pytest_inferbudget.verdicts import samples_of
from pytest_inferbudget.vocabulary import Change

__all__ = ["HISTORY_MIN_RUNS", "History", "history_of", "judge_against_history"]

HISTORY_MIN_RUNS = 3
"""Fewer saved runs of a test than this estimate no spread: the comparison is judged as
without history."""

History = Mapping[str, Mapping[str, Sequence[float]]]
"""Per test node id, per metric: the run-level medians of the saved runs, oldest first."""

_CLAIMS = (Change.REGRESSION, Change.IMPROVEMENT, Change.UNCHANGED)


def history_of(runs: Sequence[RunRecord]) -> dict[str, dict[str, list[float]]]:
    """The run-level median of every history-judged metric of every test in ``runs``
    (metrics a run did not measure are left out of that run)."""
    found: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for test in run.tests:
            for metric, value in _run_medians(test).items():
                found.setdefault(test.nodeid, {}).setdefault(metric, []).append(value)
    return found


def _run_medians(test: TestRecord) -> dict[str, float]:
    traces = [t for t in test.traces if t.generations]
    medians = {}
    for name, key in KEYS.items():
        if not (key.compared and key.load_sensitive):
            continue
        values = [v for v in samples_of(name, traces) if math.isfinite(v) and v > 0]
        if values:
            medians[name] = statistics.median(values)
    return medians


def run_to_run_spread(medians: Sequence[float], alpha: float) -> float | None:
    """The largest relative change two runs of the same code are expected to show, at
    level ``1 - alpha`` (``0.2``: +-20% in log terms); None below :data:`HISTORY_MIN_RUNS`."""
    logs = [math.log(m) for m in medians if m > 0 and math.isfinite(m)]
    if len(logs) < HISTORY_MIN_RUNS:
        return None
    spread = step_robust_sd(logs) * math.sqrt(2.0)
    return math.expm1(student_t_quantile(1.0 - alpha / 2.0, len(logs) - 1) * spread)


def judge_against_history(
    change: MetricChange, medians: Sequence[float], alpha: float
) -> MetricChange:
    """Within the run-to-run variation of ``medians``: ``insignificant`` (method
    ``history``); beyond it, the verdict stands and says so. Either way the change records
    on how many runs it was judged. Deterministic counts are left as they are, and so are
    verdicts that claim nothing (inconclusive, insignificant, equal)."""
    if not KEYS[change.metric].load_sensitive:
        return change
    allowed = run_to_run_spread(medians, alpha)
    if allowed is None:
        return change
    runs = len(medians)
    if change.verdict not in _CLAIMS:
        return dataclasses.replace(change, history_runs=runs)
    ratio = change.candidate_median / change.baseline_median if change.baseline_median else 0.0
    moved = abs(math.log(ratio)) if ratio > 0 else math.inf
    within = f"+-{allowed:.0%} run-to-run variation of {runs} saved runs"
    if change.verdict is not Change.UNCHANGED and moved > math.log1p(allowed):
        return dataclasses.replace(
            change,
            history_runs=runs,
            detail=f"beyond the {within}" + (f"; {change.detail}" if change.detail else ""),
        )
    if change.verdict is Change.UNCHANGED:
        return dataclasses.replace(change, history_runs=runs)
    return dataclasses.replace(
        change,
        verdict=Change.INSIGNIFICANT,
        method="history",
        history_runs=runs,
        detail=(
            f"within the {within}; would have been {change.verdict.value}"
            + (f" ({change.detail})" if change.detail else "")
        ),
    )
