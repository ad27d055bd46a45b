"""What needs a reader's attention first, one line each with why: failed budgets and
tests, regressions (against the baseline and, interleaved, of the A/B engine), then
inconclusive verdicts. Shared by the terminal, Markdown and HTML reports, in that order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_inferbudget.records import Comparison, TestRecord
from pytest_inferbudget.report.comparison import format_change, format_p
from pytest_inferbudget.report.terminal import format_value
from pytest_inferbudget.vocabulary import Change, Verdict

__all__ = ["attention_lines"]


def attention_lines(
    tests: Sequence[TestRecord], comparisons: Iterable[Comparison | None] = ()
) -> list[str]:
    """Failures, then regressions, then inconclusive verdicts; [] when all is well."""
    failures: list[str] = []
    inconclusive: list[str] = []
    for test in tests:
        failed = [b for b in test.budgets if b.verdict == Verdict.FAIL]
        for b in failed:
            measured = "-" if b.measured is None else format_value(b.measured, b.unit)
            failures.append(
                f"FAIL {test.nodeid} {b.key}: {measured} against "
                f"{format_value(b.limit, b.unit)}" + (f" ({b.stat})" if b.stat else "")
            )
        if test.outcome == "failed" and not failed:
            failures.append(f"FAILED {test.nodeid}: the test itself (or a gate) failed")
        inconclusive += [
            f"inconclusive {test.nodeid} {b.key}: {b.reason}"
            for b in test.budgets
            if b.verdict == Verdict.INCONCLUSIVE
        ]
    regressions: list[str] = []
    for comparison in comparisons:
        if comparison is None:
            continue
        for c in comparison.changes:
            if c.verdict is Change.REGRESSION:
                regressions.append(
                    f"REGRESSION{' (gated)' if c.gated else ''} {c.nodeid} {c.metric}: "
                    f"{format_value(c.baseline_median, c.unit)} -> "
                    f"{format_value(c.candidate_median, c.unit)} ({format_change(c)}, "
                    f"threshold {c.threshold:.0%}, {format_p(c)})"
                )
            elif c.verdict is Change.INCONCLUSIVE and c.gated:
                inconclusive.append(f"inconclusive {c.nodeid} {c.metric}: {c.detail}")
    return failures + regressions + inconclusive
