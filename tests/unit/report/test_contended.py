"""The terminal summary names the tests timed while other xdist workers shared hardware."""

from __future__ import annotations

import dataclasses
import random

from pytest_inferbudget.records import BudgetResult, RunRecord
from pytest_inferbudget.report.terminal import summary_lines
from pytest_inferbudget.vocabulary import Verdict
from tests.unit.runs import make_run, make_test


def budgeted(nodeid: str, contended: bool) -> dict[str, object]:
    test = make_test(nodeid, random.Random(1), n=3)
    result = BudgetResult("ms_per_request", 500.0, "p95", "ms", 210.0, 3, Verdict.PASS)
    return dataclasses.replace(test, budgets=[result], contended=contended).to_dict()


def lines_of(*contended: bool) -> list[str]:
    tests = [budgeted(f"t.py::test_{i}", c) for i, c in enumerate(contended)]
    run = make_run()
    run["tests"] = tests
    return summary_lines(RunRecord.from_dict(run))


def test_contended_tests_are_named_beside_the_timing_verdicts() -> None:
    (line,) = [line for line in lines_of(True, False, True) if line.startswith("contended")]
    assert line.startswith("contended: 2 test(s) were timed while other xdist workers shared")
    assert line.endswith(": t.py::test_0, t.py::test_2")
    five = [line for line in lines_of(*[True] * 5) if line.startswith("contended")]
    assert five[0].endswith("t.py::test_2 and 2 more")


def test_no_line_when_nothing_was_contended() -> None:
    assert not [line for line in lines_of(False, False) if line.startswith("contended")]
