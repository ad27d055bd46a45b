"""Every strategy run for real on the default model (SmolLM2-135M-Instruct, CPU).

Kept lean: few samples, short completions. What is checked is the trace and its cost:
how many calls, how many samples per call, and that the result's token counts are the
sum of what the engine reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pytest_inferbudget.engines import Engine
from pytest_inferbudget.records import EngineInfo, Request, Response
from pytest_inferbudget.strategies import (
    AdaptiveConsistency,
    BestOfMajority,
    BestOfN,
    Greedy,
    Revise,
    Sample,
    SelfConsistency,
    StrategyResult,
    TokenBudget,
    beta_stop_probability,
    last_number,
)

ARITHMETIC = "What is 3 + 4? Reply with a number only."
CAPITAL = "What is the capital of France? Answer in one word."


class CallLog:
    """Wraps the real engine and records every call, as the ``infer`` fixture's wrapper does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[list[Request]] = []
        self.responses: list[Response] = []

    @property
    def spec(self) -> str:
        return self.engine.spec

    def describe(self) -> EngineInfo:
        return self.engine.describe()

    def close(self) -> None:
        pass

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        self.calls.append(list(requests))
        responses = self.engine.generate(requests)
        self.responses.extend(responses)
        return responses


@pytest.fixture
def engine(smollm_engine: Engine) -> CallLog:
    return CallLog(smollm_engine)


def assert_costs_add_up(result: StrategyResult, engine: CallLog) -> None:
    assert result.responses == tuple(engine.responses)  # every call is in the trace, in order
    assert all(len(call) == 1 for call in engine.calls)
    generations = [g for r in engine.responses for g in r.generations]
    assert result.samples == len(generations)
    assert result.completion_tokens == sum(g.completion_tokens for g in generations)
    assert result.prompt_tokens == sum(r.generations[0].prompt_tokens for r in engine.responses)


def test_greedy_answers_the_capital(engine: CallLog) -> None:
    result = Greedy().run(engine, CAPITAL, max_new_tokens=8, seed=None)
    assert "Paris" in result.text
    assert result.calls == 1 and engine.calls[0][0].greedy
    assert_costs_add_up(result, engine)


def test_best_of_8_is_one_call_with_n_8(engine: CallLog) -> None:
    result = BestOfN(8).run(engine, ARITHMETIC, max_new_tokens=6, seed=3)
    assert len(engine.calls) == 1
    (request,) = engine.calls[0]
    assert request.n == 8 and request.logprobs
    (response,) = result.responses
    assert len(response.generations) == 8
    assert result.completion_tokens == sum(g.completion_tokens for g in response.generations)
    # the default scorer is the model's mean log-probability, and the best one won
    scores = [c.score for c in result.candidates]
    assert scores == [g.mean_logprob for g in response.generations]
    assert all(s is not None and s <= 0 for s in scores)
    assert result.selected == (scores.index(max(scores)),)  # type: ignore[type-var]
    assert result.text == response.generations[result.selected[0]].text
    assert_costs_add_up(result, engine)


def test_sample_with_a_seed_draws_what_a_plain_seeded_request_draws(engine: CallLog) -> None:
    result = Sample(3, temperature=0.8).run(engine, CAPITAL, max_new_tokens=6, seed=5)
    direct = engine.engine.generate(
        [Request(CAPITAL, max_new_tokens=6, temperature=0.8, n=3, seed=5)]
    )[0]
    assert [c.text for c in result.candidates] == direct.texts
    assert engine.calls[0][0].n == 3


def test_self_consistency_is_one_call_and_reproducible(engine: CallLog) -> None:
    strategy = SelfConsistency(4, extract=last_number)
    first = strategy.run(engine, ARITHMETIC, max_new_tokens=8, seed=11)
    assert len(engine.calls) == 1 and engine.calls[0][0].n == 4
    assert_costs_add_up(first, engine)
    again = strategy.run(CallLog(engine.engine), ARITHMETIC, max_new_tokens=8, seed=11)
    assert [c.text for c in again.candidates] == [c.text for c in first.candidates]
    assert again.answer == first.answer
    votes = [c.answer for c in first.candidates if c.answer is not None]
    if votes:  # the winner has the most votes
        assert first.answer is not None
        assert votes.count(first.answer) == max(votes.count(v) for v in votes)


def test_best_of_majority_scores_only_frequent_answers(engine: CallLog) -> None:
    result = BestOfMajority(4, 2).run(engine, ARITHMETIC, max_new_tokens=8, seed=2)
    (request,) = engine.calls[0]
    assert request.n == 4 and request.logprobs
    assert 1 <= len(result.selected) <= 2 or result.answer is None
    scored = [c for c in result.candidates if c.score is not None]
    assert all(c.answer is not None for c in scored)
    assert_costs_add_up(result, engine)


def test_adaptive_consistency_rounds_are_batched_calls(engine: CallLog) -> None:
    strategy = AdaptiveConsistency(max_n=8, batch=4, confidence=0.95)
    result = strategy.run(engine, ARITHMETIC, max_new_tokens=8, seed=4)
    assert [call[0].n for call in engine.calls] == [4] * len(engine.calls)
    assert len(engine.calls) in (1, 2)
    assert result.stopped_early == (result.samples < 8)
    votes: dict[str, int] = {}
    for c in result.candidates:
        if c.answer is not None:
            votes[c.answer] = votes.get(c.answer, 0) + 1
    assert result.confidence == beta_stop_probability(votes.values())
    assert_costs_add_up(result, engine)


def test_revise_pays_for_every_round(engine: CallLog) -> None:
    result = Revise(rounds=1, extract=last_number).run(
        engine, ARITHMETIC, max_new_tokens=8, seed=None
    )
    assert len(engine.calls) == 2
    draft, revision = result.responses
    assert revision.request.prompt[1]["content"] == draft.text  # type: ignore[index]
    assert revision.prompt_tokens > draft.prompt_tokens  # the draft is resent as context
    assert result.text == revision.text
    assert_costs_add_up(result, engine)


def test_token_budget_forces_an_answer_after_the_reasoning(engine: CallLog) -> None:
    strategy = TokenBudget(max_thinking_tokens=12, max_answer_tokens=4)
    result = strategy.run(engine, ARITHMETIC, max_new_tokens=8, seed=None)
    thinking, forced = result.responses
    assert thinking.request.max_new_tokens == 12 and thinking.completion_tokens <= 12
    assert forced.request.prefill == thinking.text + "\nFinal answer:"
    assert forced.completion_tokens <= 4
    # the reasoning is paid again as prompt: call 2's prompt holds it and the prefix
    assert forced.prompt_tokens > thinking.prompt_tokens + thinking.completion_tokens - 2
    assert result.text == thinking.text + "\nFinal answer:" + forced.text
    assert_costs_add_up(result, engine)
