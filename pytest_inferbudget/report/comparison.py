"""How a comparison with a baseline reads: the table rows and the one-line summary shared
by the terminal, Markdown and HTML reports and ``inferbudget compare``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_inferbudget.records import Comparison, MetricChange
from pytest_inferbudget.report.terminal import format_value
from pytest_inferbudget.vocabulary import Change


def format_change(change: MetricChange) -> str:
    """``+12.3%``; ``+inf%`` from a zero baseline; a paired change (the geometric mean of
    the per-request ratios, as interleaved A/B gives) with its bootstrap interval,
    ``-35.0% [-40.1%, -29.6%]``: the ratio B/A is one plus it."""
    if math.isinf(change.relative_change):
        return "+inf%" if change.relative_change > 0 else "-inf%"
    text = f"{change.relative_change:+.1%}"
    if change.method == "paired" and change.ci_low is not None and change.ci_high is not None:
        text += f" [{change.ci_low:+.1%}, {change.ci_high:+.1%}]"
    return text


def format_p(change: MetricChange) -> str:
    """``0.0012 (Holm 0.0048)`` for Mann-Whitney; else the method that judged it; and the
    number of saved runs whose run-to-run variation it was held against."""
    if change.method == "mann-whitney" and change.p_value is not None:
        text = f"{change.p_value:.2g} (Holm {change.p_adjusted or change.p_value:.2g})"
    elif change.method == "paired" and change.p_value is not None:
        text = f"{change.p_value:.2g} (paired)"
    else:
        text = change.method
    return text + (f", history of {change.history_runs} runs" if change.history_runs else "")


def format_verdict(change: MetricChange) -> str:
    """Regressions in capitals, gated ones marked: what the reader looks for first."""
    if change.verdict is Change.REGRESSION:
        return "REGRESSION (gated)" if change.gated else "REGRESSION"
    if change.verdict is Change.INCONCLUSIVE:
        why = change.detail.split(":", 1)[0]
        if why == "n too small":
            why += f": {change.n_baseline} vs {change.n_candidate}"
        return f"inconclusive ({why})" if why else "inconclusive"
    return change.verdict.value


def format_threshold(change: MetricChange) -> str:
    text = f"{change.threshold:.0%}" if change.threshold else "0"
    return text + (" gate" if change.gated else "")


COMPARISON_HEADER = (
    "test",
    "metric",
    "baseline",
    "current",
    "change",
    "n",
    "threshold",
    "p",
    "verdict",
)


def comparison_rows(comparison: Comparison, *, grouped: bool = False) -> list[tuple[str, ...]]:
    """One row per compared metric, for the terminal, Markdown and HTML tables; grouped,
    a test's id is on its first row only (its metrics beneath it)."""
    rows: list[tuple[str, ...]] = []
    for test in comparison.tests:
        for position, change in enumerate(test.changes):
            rows.append(
                (
                    "" if grouped and position else test.nodeid,
                    change.metric,
                    format_value(change.baseline_median, change.unit),
                    format_value(change.candidate_median, change.unit),
                    format_change(change),
                    f"{change.n_baseline} vs {change.n_candidate}",
                    format_threshold(change),
                    format_p(change),
                    format_verdict(change),
                )
            )
    return rows


def gate_failure_lines(changes: Sequence[MetricChange]) -> list[str]:
    """One line per failing gate: test, metric, baseline and current, change, threshold,
    p and method: the size of the problem, not only its name."""
    return [
        f"{c.nodeid} {c.metric}: {format_value(c.baseline_median, c.unit)} -> "
        f"{format_value(c.candidate_median, c.unit)} ({format_change(c)}, threshold "
        f"{c.threshold:.0%}, n {c.n_baseline} vs {c.n_candidate}, p {format_p(c)}, "
        f"{c.verdict.value})" + (f": {c.detail}" if c.detail else "")
        for c in changes
    ]


def summary_line(comparison: Comparison) -> str:
    """``2 regression(s) in 5 test(s) against baseline NAME (...) (...); 1 added``."""
    counts = {v: sum(c.verdict is v for c in comparison.changes) for v in Change}
    text = ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
    baseline = comparison.baseline_label or f"run {comparison.baseline_run_id}"
    text = (
        f"{len(comparison.regressions)} regression(s) in {len(comparison.tests)} test(s) "
        f"against baseline {baseline}" + (f" ({text})" if text else "")
    )
    if comparison.added:
        text += f"; {len(comparison.added)} test(s) added"
    if comparison.removed:
        text += f"; {len(comparison.removed)} test(s) removed"
    if comparison.hardware_mismatch:
        text += f"; different hardware: {comparison.hardware_mismatch}"
    return text
