"""Route's signals and directions, served by the real replay engine from a cassette (what
a recorded run gives back), so each branch is exact; tests/engines/test_route.py routes
on the real model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_inferbudget.engines.replay import CASSETTE_FORMAT, CASSETTE_VERSION, ReplayEngine
from pytest_inferbudget.records import MAX_TOP_LOGPROBS, Generation, Request
from pytest_inferbudget.strategies import (
    ROUTE_SIGNALS,
    Greedy,
    Route,
    StrategyConfigError,
    StrategyError,
    last_number,
)

SURE, UNSURE = "What is 3 + 4?", "What is 37 * 41?"


def _generation(text: str, **fields: Any) -> dict[str, Any]:
    return Generation(text, 10, len(text.split()) + 1, "stop", **fields).to_dict()


def _cassette(tmp_path: Path, entries: list[tuple[Request, dict[str, Any]]]) -> ReplayEngine:
    path = tmp_path / "cassette.json"
    path.write_text(
        json.dumps(
            {
                "format": CASSETTE_FORMAT,
                "version": CASSETTE_VERSION,
                "engine": {"engine": "transformers", "spec": "transformers:recorded"},
                "entries": [{"request": r.to_dict(), "generations": [g]} for r, g in entries],
            }
        )
    )
    return ReplayEngine(path, f"replay:{path}")


def _probe(prompt: str) -> Request:
    """The probe of the entropy signal: its first token, with the top 20 alternatives."""
    return Request(prompt, max_new_tokens=1, top_logprobs=MAX_TOP_LOGPROBS)


def test_each_signal_names_its_direction() -> None:
    assert ROUTE_SIGNALS == ("mean_logprob", "first_token_entropy")
    by_logprob = Route(Greedy(), Greedy(), threshold=-0.5)
    by_entropy = Route(Greedy(), Greedy(), threshold=0.8, signal="first_token_entropy")
    assert by_logprob.name == "route(greedy|greedy, mean_logprob>=-0.5)"
    assert by_entropy.name == "route(greedy|greedy, first_token_entropy<=0.8)"
    # higher mean log-probability is surer; lower entropy is surer; the threshold is easy
    assert by_logprob.easy_for(-0.5) and by_logprob.easy_for(-0.1)
    assert not by_logprob.easy_for(-0.6)
    assert by_entropy.easy_for(0.8) and by_entropy.easy_for(0.1)
    assert not by_entropy.easy_for(0.9)
    with pytest.raises(StrategyConfigError, match="probe_tokens"):
        Route(Greedy(), Greedy(), threshold=0.8, signal="first_token_entropy", probe_tokens=0)


def test_entropy_routes_the_sure_problem_easy_and_the_unsure_one_hard(tmp_path: Path) -> None:
    top = ((("7", -0.05), ("The", -3.2)),)
    engine = _cassette(
        tmp_path,
        [
            (_probe(SURE), _generation("7", top_logprobs=top, first_token_entropy=0.2,
                                       entropy_source="full")),
            (_probe(UNSURE), _generation("The", top_logprobs=top, first_token_entropy=2.4,
                                         entropy_source="full")),
            (Request(SURE, max_new_tokens=16), _generation("It is 7.")),
            (Request(UNSURE, max_new_tokens=16), _generation("It is 1517.")),
        ],
    )  # fmt: skip
    easy, hard = Greedy(), Greedy(extract=last_number)  # the answer shows which one ran
    route = Route(easy, hard, threshold=1.0, signal="first_token_entropy")
    sure = route.run(engine, SURE, max_new_tokens=16, seed=None)
    unsure = route.run(engine, UNSURE, max_new_tokens=16, seed=None)
    assert (sure.answer, unsure.answer) == ("It is 7.", "1517")
    assert sure.strategy == f"{route.name}->greedy" and sure.samples == 2
    assert unsure.responses[0].generations[0].first_token_entropy == 2.4
    probe = sure.responses[0]
    assert probe.request.top_logprobs == MAX_TOP_LOGPROBS and probe.completion_tokens == 2
    assert not probe.request.logprobs  # the entropy signal needs no mean log-probability


def test_an_engine_without_entropy_is_a_clear_error(tmp_path: Path) -> None:
    # recorded from a server that ignored top_logprobs: no entropy came back
    engine = _cassette(tmp_path, [(_probe(SURE), _generation("7"))])
    route = Route(Greedy(), Greedy(), threshold=1.0, signal="first_token_entropy")
    with pytest.raises(StrategyError, match=r"returned no top log-probabilities") as caught:
        route.run(engine, SURE, max_new_tokens=16, seed=None)
    assert engine.spec in str(caught.value) and "transformers, vllm" in str(caught.value)
