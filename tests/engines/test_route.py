"""Difficulty routing on the real model: the probe's signal picks the branch, and the
routed strategy's tokens and accuracy sit beside greedy's and self-consistency's."""

from __future__ import annotations

import json
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


def test_route_refuses_what_is_not_a_strategy() -> None:
    with pytest.raises(StrategyConfigError, match="easy= must be a strategy"):
        Route(easy="greedy", hard=Greedy(), threshold=-1.0)  # type: ignore[arg-type]
    with pytest.raises(StrategyConfigError, match="signal="):
        Route(Greedy(), Greedy(), threshold=-1.0, signal="entropy")  # type: ignore[arg-type]
    with pytest.raises(StrategyConfigError, match="probe_tokens"):
        Route(Greedy(), Greedy(), threshold=-1.0, probe_tokens=0)
