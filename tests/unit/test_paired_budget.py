"""The ``tokens_saved`` budget: marker parsing, judging paired scores, and the frontier
points of a test that scores several strategies."""

from __future__ import annotations

import random
import re

import pytest

from pytest_inferbudget.budget import BudgetLimit, parse_marker_kwargs, parse_markers
from pytest_inferbudget.errors import BudgetSpecError
from pytest_inferbudget.records import Score
from pytest_inferbudget.report.html import render_html
from pytest_inferbudget.report.plots import score_points
from pytest_inferbudget.verdicts import evaluate, sampling_saturation
from pytest_inferbudget.vocabulary import Verdict
from tests.unit.runs import make_run, make_test

ROUTE = "route(greedy|self_consistency(n=3), mean_logprob>=-0.45)"
VOTE = "self_consistency(n=3)"


def parse(**kwargs: object) -> list[BudgetLimit]:
    return parse_marker_kwargs(kwargs, where="t.py::test_x")


def scores(strategy: str, tokens: list[int], right: list[bool]) -> list[Score]:
    return [
        Score(f"p{i}", ok, count, None, strategy=strategy)
        for i, (count, ok) in enumerate(zip(tokens, right, strict=True))
    ]


def judge(limit: BudgetLimit, recorded: list[Score]) -> tuple[Verdict, float | None, str]:
    [result] = evaluate([limit], [], recorded)
    return result.verdict, result.measured, result.reason


def test_the_marker_takes_a_share_a_baseline_and_a_margin() -> None:
    [limit] = parse(tokens_saved=0.2, versus=VOTE, accuracy_margin=0.05, confidence=0.9)
    assert (limit.key, limit.limit, limit.versus, limit.margin) == ("tokens_saved", 0.2, VOTE, 0.05)
    assert limit.candidate is None and limit.confidence == 0.9
    [zero] = parse(tokens_saved=0, versus=VOTE, candidate=ROUTE)
    assert zero.limit == 0.0 and zero.candidate == ROUTE


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens_saved": 0.2}, "versus=None must name a strategy"),
        ({"tokens_saved": 0.2, "versus": ""}, "must name a strategy"),
        ({"tokens_saved": 1.0, "versus": VOTE}, r"share of the baseline's tokens .* in \[0, 1\)"),
        ({"tokens_saved": -0.1, "versus": VOTE}, r"in \[0, 1\)"),
        ({"tokens_saved": 0.1, "versus": VOTE, "accuracy_margin": 1.5}, "accuracy_margin"),
        ({"tokens_saved": 0.1, "versus": VOTE, "candidate": 3}, "candidate=3 must name"),
        ({"pass_at_k": (1, 0.5), "versus": VOTE}, "versus= is given without tokens_saved"),
        ({"pass_at_k": (1, 0.5), "accuracy_margin": 0.1}, "accuracy_margin= is given without"),
    ],
)
def test_bad_markers_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BudgetSpecError, match=message):
        parse_markers([((), kwargs)], where="t.py::test_x")


def test_hardware_variants_inherit_the_pairing() -> None:
    spec = parse_markers(
        [
            (
                (),
                {
                    "tokens_saved": 0.1,
                    "versus": VOTE,
                    "hardware": {"cpu:*": {"ms_per_request": 900}},
                },
            )
        ],
        where="t.py::test_x",
    )
    assert {(limit.key, limit.hardware) for limit in spec.limits} == {
        ("tokens_saved", None),
        ("ms_per_request", "cpu:*"),
    }


def test_a_route_that_saves_and_is_not_worse_passes() -> None:
    [limit] = parse(tokens_saved=0.1, versus=VOTE, accuracy_margin=0.2)
    recorded = scores(ROUTE, [16] * 12, [True] * 6 + [False] * 6) + scores(
        VOTE, [30] * 12, [True] * 6 + [False] * 6
    )
    verdict, measured, reason = judge(limit, recorded)
    assert verdict is Verdict.PASS
    assert measured == pytest.approx(1 - 16 / 30)
    assert f"{ROUTE} vs {VOTE} over 12 problems: tokens 192 vs 360" in reason
    assert "0 right only with the candidate, 0 right only with the baseline" in reason
    assert "non-inferiority shown" in reason
    [result] = evaluate([limit], [], recorded)
    assert result.per_problem == {f"p{i}": 14.0 for i in range(12)}
    assert result.ci_low == pytest.approx(measured) and result.ci_high == pytest.approx(measured)


def test_too_few_tokens_saved_fails_even_with_equal_accuracy() -> None:
    # a route that always takes the vote costs the vote plus its probe: saves below 0
    [limit] = parse(tokens_saved=0.1, versus=VOTE, accuracy_margin=0.2)
    right = [True, False, True]
    verdict, measured, reason = judge(
        limit, scores(ROUTE, [38, 38, 38], right) + scores(VOTE, [30, 30, 30], right)
    )
    assert verdict is Verdict.FAIL and measured == pytest.approx(1 - 38 / 30)
    assert "saved -26.7% (required 10.0%)" in reason


def test_shown_inferior_fails_and_too_few_problems_is_inconclusive() -> None:
    [limit] = parse(tokens_saved=0.1, versus=VOTE, accuracy_margin=0.1)
    worse = scores(ROUTE, [10] * 12, [False] * 8 + [True] * 4) + scores(
        VOTE, [30] * 12, [True] * 12
    )
    verdict, _, reason = judge(limit, worse)
    assert verdict is Verdict.FAIL and "inferiority shown" in reason
    few = scores(ROUTE, [10] * 4, [True] * 4) + scores(VOTE, [30] * 4, [True] * 4)
    verdict, _, reason = judge(limit, few)
    assert verdict is Verdict.INCONCLUSIVE and "score more problems" in reason


def test_what_cannot_be_paired_says_why() -> None:
    [limit] = parse(tokens_saved=0.1, versus="best_of_n(n=9)")
    recorded = scores(ROUTE, [10, 10], [True, True]) + scores(VOTE, [30, 30], [True, True])
    verdict, measured, reason = judge(limit, recorded)
    assert verdict is Verdict.UNMEASURED and measured is None
    assert "versus='best_of_n(n=9)' names no strategy this test scored" in reason
    assert repr(ROUTE) in reason and repr(VOTE) in reason
    [limit] = parse(tokens_saved=0.1, versus=VOTE)
    three = recorded + scores("greedy", [8, 8], [True, True])
    assert "pick one with candidate=" in judge(limit, three)[2]
    [picked] = parse(tokens_saved=0.1, versus=VOTE, candidate="greedy", accuracy_margin=0.5)
    assert judge(picked, three)[0] is not Verdict.UNMEASURED
    twice = [*recorded, Score("p0", True, 10, None, strategy=ROUTE)]
    assert "scored problem 'p0' 2 times" in judge(limit, twice)[2]
    unpaired = [*recorded, Score("p9", True, 10, None, strategy=ROUTE)]
    assert "1 problem(s) scored by only one" in judge(limit, unpaired)[2]


def test_saturation_samples_each_strategy_apart() -> None:
    # one sample per (strategy, problem): no problem was sampled twice
    recorded = scores(ROUTE, [10, 10], [True, False]) + scores(VOTE, [30, 30], [True, False])
    assert sampling_saturation(recorded) is None


def test_the_frontier_holds_a_point_per_strategy_of_a_routed_test() -> None:
    test = make_test("t.py::test_route", random.Random(3), n=2)
    test.scores = (
        scores("greedy", [8, 8, 8, 8], [True, True, False, False])
        + scores(VOTE, [30, 30, 30, 30], [True, False, False, False])
        + scores(ROUTE, [16, 16, 40, 40], [True, True, True, False])
    )
    points = dict(score_points(test))
    assert points == {
        "t.py::test_route [greedy]": (8.0, 0.5),
        f"t.py::test_route [{VOTE}]": (30.0, 0.25),
        f"t.py::test_route [{ROUTE}]": (28.0, 0.75),
    }
    page = render_html(make_run(test), None)
    frontier = re.search(r"<svg[^>]*ib-frontier.*?</svg>", page, re.S)
    assert frontier is not None
    tips = re.findall(r"<title>([^<]*)</title></circle>", frontier.group(0))
    assert tips == [
        "t.py::test_route [greedy]: 50.0% correct, 8.0 tokens",
        f"t.py::test_route [{VOTE}]: 25.0% correct, 30.0 tokens",
        f"t.py::test_route [{ROUTE.replace('>', '&gt;')}]: 75.0% correct, 28.0 tokens",
    ]
    # greedy and the route are on the frontier; the vote is beaten on both axes
    assert '<polyline class="frontier"' in frontier.group(0)
    single = make_test("t.py::test_one", random.Random(3), n=1)
    single.scores = scores("greedy", [8], [True])
    assert score_points(single) == [("t.py::test_one", (8.0, 1.0))]


def test_a_score_keeps_its_strategy_through_the_json() -> None:
    routed = Score("p0", True, 16, 12.5, "5", strategy=ROUTE)
    assert routed.to_dict()["strategy"] == ROUTE
    assert Score.from_dict(routed.to_dict()) == routed
    plain = Score("p0", True, 8, None)
    assert "strategy" not in plain.to_dict()  # records saved before it read back alike
    assert Score.from_dict(plain.to_dict()).strategy == ""
