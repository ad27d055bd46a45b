"""Strategies through `infer`: every call they make lands in the test's records."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ReuseEngine


def test_a_strategy_run_is_one_request_costing_all_its_calls(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_inferbudget import strategies

        @pytest.mark.budget(tokens_per_request=4 * 16, max_tokens=16, pass_at_k=(1, 0.0))
        def test_vote(infer):
            sc = strategies.SelfConsistency(n=4, extract=strategies.last_number)
            result = infer("What is 3 + 4? Reply with a number only.", strategy=sc,
                           max_new_tokens=16, seed=1)
            assert len(result.candidates) == 4
            infer.score(result, correct=result.answer == "7")

        @pytest.mark.budget(tokens_per_request=3 * 32)
        def test_revise(infer):
            revise = strategies.Revise(rounds=2)
            infer("What is the capital of France? Answer in one word.", strategy=revise,
                  max_new_tokens=32)
        """
    )
    result = pytester.runpytest("--inferbudget-json=r.json", plugins=[reuse_engine])
    result.assert_outcomes(passed=2)
    vote, revise = json.loads((pytester.path / "r.json").read_text())["tests"]
    [trace] = vote["traces"]
    assert trace["strategy"] == "self_consistency(n=4)"
    assert trace["wall_ms"] > 0
    [response] = trace["responses"]  # four samples, one batched call
    assert response["request"]["n"] == 4
    tokens = sum(g["completion_tokens"] for g in response["generations"])
    budgets = {b["key"]: b for b in vote["budgets"]}
    assert budgets["tokens_per_request"]["measured"] == tokens
    assert budgets["tokens_per_request"]["samples"] == 1
    [score] = vote["scores"]
    assert score["tokens"] == tokens and score["answer"] == trace["answer"]
    [revise_trace] = revise["traces"]
    assert len(revise_trace["responses"]) == 3  # the answer and two revision rounds
    assert {b["key"]: b for b in revise["budgets"]}["tokens_per_request"]["measured"] == sum(
        g["completion_tokens"] for r in revise_trace["responses"] for g in r["generations"]
    )
