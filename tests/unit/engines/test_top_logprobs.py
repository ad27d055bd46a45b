"""Top log-probabilities made into a generation's fields: the OpenAI wire's two shapes,
as vLLM's server streams them (written out), and an engine's exact entropy."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from pytest_inferbudget.engines.openai_wire import StreamState, take_answer, take_chunk
from pytest_inferbudget.engines.top_logprobs import openai_steps, top_fields
from pytest_inferbudget.metrics import top_k_entropy

CHAT_CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "model": "smollm2-135m-instruct",
    "choices": [
        {
            "index": 0,
            "delta": {"content": "2"},
            "logprobs": {
                "content": [
                    {
                        "token": "2",
                        "logprob": -1.767,
                        "bytes": [50],
                        # vLLM lists them most likely first; the parser does not rely on it
                        "top_logprobs": [
                            {"token": "The", "logprob": -1.939, "bytes": [84, 104, 101]},
                            {"token": "2", "logprob": -1.767, "bytes": [50]},
                            {"token": "Two", "logprob": -2.199, "bytes": [84, 119, 111]},
                        ],
                    }
                ]
            },
            "finish_reason": None,
        }
    ],
}
COMPLETION_CHUNK: dict[str, Any] = {
    "id": "cmpl-1",
    "object": "text_completion",
    "choices": [
        {
            "index": 0,
            "text": " Paris",
            "logprobs": {
                "text_offset": [0],
                "token_logprobs": [-0.2],
                "tokens": [" Paris"],
                "top_logprobs": [{" Paris": -0.2, " the": -2.1}],
            },
            "finish_reason": None,
        }
    ],
}


def test_chat_chunk_top_logprobs_are_parsed_most_likely_first() -> None:
    state = StreamState(start_ns=0)
    take_chunk(state, CHAT_CHUNK, json.dumps(CHAT_CHUNK), 1_000, "spec", "url")
    assert state.logprobs == [-1.767]
    assert state.top_logprobs == [(("2", -1.767), ("The", -1.939), ("Two", -2.199))]
    fields = top_fields(state.top_logprobs, 2)  # cut to the k the request asked for
    assert fields["top_logprobs"] == ((("2", -1.767), ("The", -1.939)),)
    assert fields["entropy_source"] == "top_k"
    assert fields["first_token_entropy"] == pytest.approx(top_k_entropy([-1.767, -1.939]))
    assert 0 < fields["first_token_entropy"] <= math.log(2)


def test_completions_top_logprobs_map_is_parsed() -> None:
    state = StreamState(start_ns=0)
    take_chunk(state, COMPLETION_CHUNK, json.dumps(COMPLETION_CHUNK), 1_000, "spec", "url")
    assert state.top_logprobs == [((" Paris", -0.2), (" the", -2.1))]


def test_an_unstreamed_answer_carries_them_too() -> None:
    choice = dict(CHAT_CHUNK["choices"][0])
    choice["message"] = choice.pop("delta")
    choice["finish_reason"] = "length"
    answer = {"choices": [choice]}
    state = StreamState(start_ns=0)
    take_answer(state, answer, json.dumps(answer), 1_000, "spec", "url")
    assert state.top_logprobs[0][0] == ("2", -1.767)


def test_no_top_logprobs_or_none_asked_leaves_the_fields_out() -> None:
    plain = {"content": [{"token": "2", "logprob": -1.7, "top_logprobs": []}]}
    assert openai_steps(plain, chat=True) == []
    assert openai_steps(None, chat=True) == []
    state = StreamState(start_ns=0)
    assert top_fields(state.top_logprobs, 5) == {}  # the server sent none
    take_chunk(state, CHAT_CHUNK, json.dumps(CHAT_CHUNK), 1_000, "spec", "url")
    assert top_fields(state.top_logprobs, 0) == {}  # the request asked for none


def test_an_engine_with_the_whole_distribution_gives_its_exact_entropy() -> None:
    steps = [(("a", -0.1), ("b", -2.4), ("c", -4.0)), (("d", -0.01), ("e", -5.0), ("f", -6.0))]
    fields = top_fields(steps, 2, full_entropy=0.9)
    assert fields == {
        "top_logprobs": ((("a", -0.1), ("b", -2.4)), (("d", -0.01), ("e", -5.0))),
        "first_token_entropy": 0.9,
        "entropy_source": "full",
    }
    assert top_fields(steps)["top_logprobs"] == tuple(steps)  # None: as they came
