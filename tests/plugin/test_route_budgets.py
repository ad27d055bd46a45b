"""The ``tokens_saved`` budget through pytester on the real model: a route against
self-consistency on the same problems, paired per problem."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ReuseEngine

ROUTED = """
import pytest
from pytest_inferbudget import strategies

QUESTIONS = [
    ("What is the capital of France? Answer in one word.", "Paris"),
    ("What is the capital of Japan? Answer in one word.", "Tokyo"),
    ("What is the capital of Italy? Answer in one word.", "Rome"),
]
CAPITAL = strategies.regex(r"(Paris|Tokyo|Rome)")
GREEDY = strategies.Greedy(extract=CAPITAL)
VOTE = strategies.SelfConsistency(n=4, extract=CAPITAL)
CHEAP = strategies.Route(easy=GREEDY, hard=VOTE, threshold=-100.0)  # every problem: greedy
COSTLY = strategies.Route(easy=GREEDY, hard=VOTE, threshold=0.0)  # every problem: the vote


def answer_all(infer, strategy):
    for question, answer in QUESTIONS:
        result = infer(question, strategy=strategy, max_new_tokens=12, seed=3)
        infer.score(result, correct=result.answer == answer, problem=answer)


@pytest.mark.budget(tokens_saved=0.2, versus=VOTE.name, accuracy_margin=0.5)
def test_cheap_route(infer):
    answer_all(infer, VOTE)
    answer_all(infer, CHEAP)


@pytest.mark.budget(tokens_saved=0.0, versus=VOTE.name, accuracy_margin=0.5)
def test_costly_route(infer):
    answer_all(infer, VOTE)
    answer_all(infer, COSTLY)


@pytest.mark.budget(tokens_saved=0.2, versus="best_of_n(n=9)")
def test_unknown_baseline(infer):
    answer_all(infer, GREEDY)
"""


def test_tokens_saved_judges_a_route_against_its_baseline_per_problem(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(ROUTED)
    result = pytester.runpytest("--inferbudget-json=r.json", plugins=[reuse_engine])
    result.assert_outcomes(passed=1, failed=2)
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "r.json").read_text())["tests"]
    }

    def side(test: dict, strategy: str) -> tuple[int, int]:  # type: ignore[type-arg]
        picked = [s for s in test["scores"] if s.get("strategy", "") == strategy]
        assert len(picked) == 3
        return sum(s["tokens"] for s in picked), sum(s["correct"] for s in picked)

    vote = "self_consistency(n=4)"
    for name, route, verdict in (
        ("test_cheap_route", "route(greedy|self_consistency(n=4), mean_logprob>=-100)", "pass"),
        ("test_costly_route", "route(greedy|self_consistency(n=4), mean_logprob>=0)", "fail"),
    ):
        test = tests[name]
        [budget] = test["budgets"]
        (routed_tokens, routed_right), (vote_tokens, vote_right) = (
            side(test, route),
            side(test, vote),
        )
        assert budget["key"] == "tokens_saved" and budget["verdict"] == verdict
        assert budget["measured"] == pytest.approx(1 - routed_tokens / vote_tokens)
        assert f"tokens {routed_tokens} vs {vote_tokens}" in budget["reason"]
        assert f"accuracy {routed_right}/3 vs {vote_right}/3" in budget["reason"]
        assert set(budget["per_problem"]) == {"Paris", "Tokyo", "Rome"}
    # the costly route is the vote plus a probe: the same answers, more tokens
    costly = tests["test_costly_route"]["budgets"][0]
    assert costly["measured"] < 0
    assert "0 right only with the candidate, 0 right only with the baseline" in costly["reason"]
    assert tests["test_cheap_route"]["budgets"][0]["measured"] >= 0.2
    unknown = tests["test_unknown_baseline"]["budgets"][0]
    assert unknown["verdict"] == "unmeasured"
    result.stdout.fnmatch_lines(
        ["*versus='best_of_n(n=9)' names no strategy this test scored; it scored 'greedy'*"]
    )
