"""Difficulty routing on the real model: the probe's signal picks the branch, and the
routed strategy's tokens and accuracy sit beside greedy's and self-consistency's."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_inferbudget.engines import Engine
from pytest_inferbudget.records import EngineInfo, Request, Response
from pytest_inferbudget.strategies import (
    Greedy,
    Route,
    SelfConsistency,
    StrategyConfigError,
    StrategyResult,
    last_number,
)

QUESTIONS = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "data" / "short_questions.json").read_text()
)["questions"]
PICKED = [q for q in QUESTIONS if q["id"].startswith("add-")][:3] + [
    q for q in QUESTIONS if q["id"].startswith("capital-")
][:3]


class Calls:
    """The real engine, with every call kept (as the ``infer`` fixture's wrapper does)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.responses: list[Response] = []

    @property
    def spec(self) -> str:
        return self.engine.spec

    def describe(self) -> EngineInfo:
        return self.engine.describe()

    def close(self) -> None:
        pass

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        responses = self.engine.generate(requests)
        self.responses.extend(responses)
        return responses


def _right(question: dict[str, str], answer: str | None, text: str) -> bool:
    if question["id"].startswith("add-"):
        numbers = re.findall(r"-?\d+", answer or text)
        return bool(numbers) and numbers[-1] == question["answer"]
    return question["answer"].lower() in text.lower()


def test_route_probes_then_runs_the_branch_its_signal_picks(smollm_engine: Engine) -> None:
    easy = Greedy(extract=last_number)
    hard = SelfConsistency(n=4, extract=last_number, temperature=0.7)
    probe = Route(easy, hard, threshold=0.0)
    signals = [probe.probe(smollm_engine, q["prompt"])[0] for q in PICKED]
    threshold = statistics.median(signals)  # half the problems each way
    route = Route(easy, hard, threshold=threshold)
    rows: dict[str, tuple[int, int]] = {}
    for strategy in (easy, hard, route):
        tokens = right = 0
        for question, signal in zip(PICKED, signals, strict=True):
            calls = Calls(smollm_engine)
            result: StrategyResult = strategy.run(
                calls, question["prompt"], max_new_tokens=24, seed=0
            )
            assert result.responses == tuple(calls.responses)  # the probe is paid for
            tokens += result.completion_tokens
            right += _right(question, result.answer, result.text)
            if strategy is route:
                chosen = easy if signal >= threshold else hard
                assert result.strategy == f"{route.name}->{chosen.name}"
                assert result.responses[0].request.logprobs
                assert result.samples == 1 + (1 if chosen is easy else 4)
        rows[strategy.name] = (tokens, right)
    for name, (tokens, right) in rows.items():  # the accuracy-cost frontier, for the report
        print(f"{name}: {tokens} tokens, {right}/{len(PICKED)} right")
    assert rows[easy.name][0] < rows[route.name][0] < rows[hard.name][0] + len(PICKED) * 8


def test_transformers_returns_top_logprobs_and_the_exact_first_token_entropy(
    smollm_engine: Engine,
) -> None:
    requests = [Request(q["prompt"], max_new_tokens=6, top_logprobs=5) for q in PICKED[::2]]
    requests.append(Request(PICKED[0]["prompt"], max_new_tokens=6, logprobs=True))  # none
    *asked, plain = smollm_engine.generate(requests)
    assert plain.generations[0].top_logprobs is None
    assert plain.generations[0].first_token_entropy is None
    vocabulary = len(smollm_engine.tokenizer)  # type: ignore[attr-defined]
    for response in asked:
        g = response.generations[0]
        assert g.top_logprobs is not None and g.mean_logprob is not None
        assert len(g.top_logprobs) == g.completion_tokens
        for position in g.top_logprobs:
            values = [lp for _, lp in position]
            assert len(position) == 5 and values == sorted(values, reverse=True)
        # greedy: each step's likeliest token is the one written
        greedy = "".join(position[0][0] for position in g.top_logprobs)
        assert greedy.removesuffix("<|im_end|>") == g.text
        assert statistics.mean(p[0][1] for p in g.top_logprobs) == pytest.approx(
            g.mean_logprob, abs=1e-4
        )
        # the whole distribution's entropy: at least the top 5's share of it, at most ln V
        assert g.entropy_source == "full" and g.first_token_entropy is not None
        top5 = -sum(math.exp(lp) * lp for _, lp in g.top_logprobs[0])
        assert top5 - 1e-6 <= g.first_token_entropy <= math.log(vocabulary)


def test_route_on_first_token_entropy_sends_sure_problems_to_easy(smollm_engine: Engine) -> None:
    easy = Greedy(extract=last_number)
    hard = SelfConsistency(n=4, extract=last_number, temperature=0.7)
    probe = Route(easy, hard, threshold=0.0, signal="first_token_entropy")
    signals = [probe.probe(smollm_engine, q["prompt"])[0] for q in PICKED]
    threshold = statistics.median(signals)  # half the problems each way
    route = Route(easy, hard, threshold=threshold, signal="first_token_entropy")
    print("first-token entropies (nats):", [round(s, 3) for s in signals])
    chosen_names = []
    for question, signal in zip(PICKED, signals, strict=True):
        result = route.run(smollm_engine, question["prompt"], max_new_tokens=24, seed=0)
        chosen = easy if signal <= threshold else hard  # lower entropy: surer, easier
        assert result.strategy == f"{route.name}->{chosen.name}"
        probe_response = result.responses[0]
        assert probe_response.request.top_logprobs > 0
        assert probe_response.completion_tokens == 1  # one token is all the signal reads
        assert probe_response.generations[0].first_token_entropy == pytest.approx(signal)
        assert result.samples == 1 + (1 if chosen is easy else 4)
        chosen_names.append(chosen.name)
    assert set(chosen_names) == {easy.name, hard.name}  # both branches run


def test_route_refuses_what_is_not_a_strategy() -> None:
    with pytest.raises(StrategyConfigError, match="easy= must be a strategy"):
        Route(easy="greedy", hard=Greedy(), threshold=-1.0)  # type: ignore[arg-type]
    with pytest.raises(StrategyConfigError, match="signal="):
        Route(Greedy(), Greedy(), threshold=-1.0, signal="entropy")  # type: ignore[arg-type]
    with pytest.raises(StrategyConfigError, match="probe_tokens"):
        Route(Greedy(), Greedy(), threshold=-1.0, probe_tokens=0)
