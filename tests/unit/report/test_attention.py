"""Reports open with what needs attention: failures, regressions, then inconclusive."""

from __future__ import annotations

from pytest_inferbudget.compare import compare_runs
from pytest_inferbudget.records import BudgetResult, RunRecord
from pytest_inferbudget.report.attention import attention_lines
from pytest_inferbudget.report.html import render_html
from pytest_inferbudget.report.markdown import render_markdown
from pytest_inferbudget.vocabulary import Verdict
from tests.unit.report.test_reports import report_run


def test_failures_come_first_then_regressions_then_inconclusive() -> None:
    baseline = report_run("base")
    current = report_run("current", slowdown=1.6)
    record = RunRecord.from_dict(current)
    record.tests[0].budgets.append(
        BudgetResult("tpot_ms", 9.0, "p90", "ms", 8.0, 12, Verdict.INCONCLUSIVE, reason="close")
    )
    comparison = compare_runs(baseline, current, thresholds={"ms_per_request": 0.1})
    lines = attention_lines(record.tests, [comparison])
    kinds = [line.split()[0] for line in lines]
    assert kinds[0] == "FAIL" and "ttft_ms: 40.0 ms against 10.0 ms (p50)" in lines[0]
    assert "REGRESSION" in kinds  # 60% slower, gated at 10%
    assert lines[kinds.index("REGRESSION")].startswith("REGRESSION (gated) t.py::test_fast")
    assert kinds[-1] == "inconclusive" and lines[-1].endswith("tpot_ms: close")
    assert kinds == sorted(kinds, key=["FAIL", "FAILED", "REGRESSION", "inconclusive"].index)
    assert attention_lines([]) == []

    markdown = render_markdown(current, comparison)
    assert markdown.index("### Needs attention") < markdown.index("### Comparison")
    page = render_html(current, comparison)
    assert page.index("Needs attention") < page.index("<h2>Totals</h2>")
    assert "passed with nothing to note</summary>" in page  # calm tests collapsed
