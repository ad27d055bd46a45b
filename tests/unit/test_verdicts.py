"""The pass / skip / warn / fail policy (``verdicts.decide``), as the pure function it is."""

from __future__ import annotations

import pytest

from pytest_inferbudget.records import BudgetResult
from pytest_inferbudget.verdicts import decide
from pytest_inferbudget.vocabulary import Outcome, Verdict


def budget(key: str, verdict: Verdict) -> BudgetResult:
    return BudgetResult(key, 1.0, "mean", "", None, 0, verdict)


PASS = budget("ms_per_request", Verdict.PASS)
FAIL = budget("ms_per_request", Verdict.FAIL)
TIME_INCONCLUSIVE = budget("ttft_ms", Verdict.INCONCLUSIVE)
ENERGY_UNMEASURED = budget("joules_per_token", Verdict.UNMEASURED)
"""A meter this machine lacks: excused (skip), unless strict."""
TIME_UNMEASURED = budget("ms_per_request", Verdict.UNMEASURED)
"""No meter is missing for time: only a replay excuses it."""


@pytest.mark.parametrize(
    ("budgets", "strict", "replay", "outcome", "failing", "unmeasured"),
    [
        ([PASS], False, False, Outcome.PASS, [], []),
        ([PASS, FAIL], False, False, Outcome.FAIL, [FAIL], []),
        ([PASS, TIME_INCONCLUSIVE], False, False, Outcome.WARN, [], []),
        ([PASS, TIME_INCONCLUSIVE], True, False, Outcome.FAIL, [TIME_INCONCLUSIVE], []),
        ([PASS, ENERGY_UNMEASURED], False, False, Outcome.SKIP, [], [ENERGY_UNMEASURED]),
        (
            [ENERGY_UNMEASURED],
            True,
            False,
            Outcome.FAIL,
            [ENERGY_UNMEASURED],
            [ENERGY_UNMEASURED],
        ),
        ([TIME_UNMEASURED], False, False, Outcome.FAIL, [TIME_UNMEASURED], []),
        ([TIME_UNMEASURED], False, True, Outcome.SKIP, [], [TIME_UNMEASURED]),
        # a failure outranks an excused budget: the test fails and still names the skip
        ([FAIL, ENERGY_UNMEASURED], False, False, Outcome.FAIL, [FAIL], [ENERGY_UNMEASURED]),
        # an excused budget outranks a warning
        (
            [ENERGY_UNMEASURED, TIME_INCONCLUSIVE],
            False,
            False,
            Outcome.SKIP,
            [],
            [ENERGY_UNMEASURED],
        ),
    ],
)
def test_decide_applies_the_policy(
    budgets: list[BudgetResult],
    strict: bool,
    replay: bool,
    outcome: Outcome,
    failing: list[BudgetResult],
    unmeasured: list[BudgetResult],
) -> None:
    decision = decide(budgets, strict=strict, replay=replay)
    assert decision.outcome is outcome
    assert list(decision.failing) == failing
    assert list(decision.unmeasured) == unmeasured


def test_no_budget_passes() -> None:
    assert decide([], strict=True, replay=False).outcome is Outcome.PASS


def test_an_inconclusive_verdict_at_the_sampling_cap_says_the_cap_was_reached() -> None:
    from pytest_inferbudget.budget import parse_markers
    from pytest_inferbudget.verdicts import evaluate
    from tests.unit.runs import trace

    spec = parse_markers(
        [((), {"ms_per_request": 100.0, "stat": "p50", "confidence": 0.95})], where="t"
    )
    traces = [trace([5], [float(v)]) for v in (60, 140, 95, 105, 80, 120)]  # around the limit
    [open_ended] = evaluate(spec, traces, sequential=True)
    assert open_ended.verdict is Verdict.INCONCLUSIVE
    assert "draw more samples" in open_ended.reason
    [capped] = evaluate(spec, traces, sequential=True, capped_at=6)
    assert capped.verdict is Verdict.INCONCLUSIVE
    assert "reached its cap, max_samples=6" in capped.reason
    assert "draw more samples" not in capped.reason


def test_a_warning_message_says_inconclusive_not_not_met() -> None:
    from pytest_inferbudget.report.terminal import violation_message

    assert "1 of 2 budget(s) inconclusive" in violation_message([PASS, TIME_INCONCLUSIVE])
    failing = budget("ms_per_request", Verdict.FAIL)
    assert "2 of 3 budget(s) not met" in violation_message([PASS, TIME_INCONCLUSIVE, failing])
