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
