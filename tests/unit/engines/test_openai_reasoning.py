"""The openai engine's reasoning rules without a server: which chunks are reasoning, when
the first answer token came, and who counts the reasoning tokens. Each input is what a
server sends (vLLM's chunk shapes with and without a reasoning parser, written out)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai_settings import OpenAISettings
from pytest_inferbudget.engines.openai_wire import (
    CompletionParts,
    StreamState,
    answer_time_ms,
    count_reasoning_tokens,
    split_completion,
    take_answer,
    take_chunk,
    usage_reasoning_tokens,
)
from pytest_inferbudget.errors import EngineSpecError
from pytest_inferbudget.metrics.reasoning import AnswerWatch

MS = 1_000_000


def delta(field: str, text: str, tokens: int | None = None, finish: str | None = None) -> Any:
    chunk: dict[str, Any] = {
        "choices": [{"index": 0, "delta": {field: text}, "finish_reason": finish}]
    }
    if tokens is not None:
        chunk["usage"] = {"prompt_tokens": 5, "completion_tokens": tokens}
    return chunk


def feed(state: StreamState, chunks: list[Any]) -> StreamState:
    for at, chunk in enumerate(chunks, start=1):
        take_chunk(state, chunk, "{}", at * 10 * MS, "openai:x", "http://x")
    return state


class Words:
    """Counts words as tokens, standing in for the model's tokenizer."""

    def length_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_apart_is_output_for_ttft_but_not_the_answer(field: str) -> None:
    role = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    state = feed(
        StreamState(start_ns=0, watch=AnswerWatch()),
        [
            role,
            delta(field, "think"),
            delta(field, " more"),
            delta("content", "Paris", None, "stop"),
        ],
    )
    parts = split_completion(state, "".join(state.text), (("<think>", "</think>")), "")
    timing = state.timing()
    assert parts == CompletionParts("Paris", "think more", "apart")
    assert timing.ttft_ms == 20  # the first reasoning chunk (the role chunk is not output)
    assert answer_time_ms(state, parts, timing.ttft_ms) == 40
    assert timing.output_chunks == 3


def test_per_chunk_usage_attributes_tokens_to_reasoning_until_the_answer() -> None:
    state = StreamState(start_ns=0, per_chunk_usage=True, watch=AnswerWatch())
    feed(
        state,
        [
            delta("content", "<think>", 1),
            delta("content", "plan", 2),
            delta("content", "", 3),  # a token with no text inside the reasoning
            delta("content", "</think>", 4),
            delta("content", "Paris", 5),
            delta("content", "", 6, "stop"),  # EOS: an answer token
        ],
    )
    text = "".join(state.text)
    parts = split_completion(state, text, ("<think>", "</think>"), "")
    assert parts == CompletionParts("Paris", "plan", "delimited")
    assert count_reasoning_tokens(state, parts, text, 6, "stream_usage", None) == 4
    assert answer_time_ms(state, parts, state.timing().ttft_ms) == 50


def test_the_servers_own_count_comes_first() -> None:
    state = StreamState(start_ns=0, watch=AnswerWatch())
    feed(state, [delta("reasoning", "a b c"), delta("content", "Paris", None, "stop")])
    state.usage = {
        "prompt_tokens": 5,
        "completion_tokens": 9,
        "completion_tokens_details": {"reasoning_tokens": 6},
    }
    parts = split_completion(state, "Paris", ("<think>", "</think>"), "")
    assert count_reasoning_tokens(state, parts, "Paris", 9, "stream_usage", Words()) == 6
    # a count by the tokenizer is the tokenizer's for both, not the server's for one
    assert count_reasoning_tokens(state, parts, "Paris", 9, "tokenizer", Words()) == 3


def test_without_a_count_the_tokenizer_estimates_else_none() -> None:
    state = StreamState(start_ns=0, watch=AnswerWatch())
    text = "<think>a b</think> Paris"
    feed(state, [delta("content", text, None, "stop")])
    parts = split_completion(state, text, ("<think>", "</think>"), "")
    # the generated text up to the closer, delimiters included: "<think>a", "b</think>"
    assert count_reasoning_tokens(state, parts, text, 4, "stream_usage", Words()) == 2
    assert count_reasoning_tokens(state, parts, text, 4, "stream_usage", None) is None


def test_no_reasoning_is_zero_and_ttfat_is_ttft() -> None:
    state = feed(
        StreamState(start_ns=0, watch=AnswerWatch()), [delta("content", "Paris", None, "stop")]
    )
    parts = split_completion(state, "Paris", ("<think>", "</think>"), "")
    assert count_reasoning_tokens(state, parts, "Paris", 2, "stream_usage", None) == 0
    assert answer_time_ms(state, parts, 10.0) == 10.0


def test_an_unclosed_reasoning_is_every_token_and_no_answer_time() -> None:
    state = StreamState(start_ns=0, watch=AnswerWatch())
    feed(state, [delta("content", "<think>", None), delta("content", "a b", None, "length")])
    text = "".join(state.text)
    parts = split_completion(state, text, ("<think>", "</think>"), "")
    assert parts == CompletionParts("", "a b", "unclosed")
    assert count_reasoning_tokens(state, parts, text, 3, "stream_usage", None) == 3
    assert answer_time_ms(state, parts, 10.0) is None


def test_an_unstreamed_answer_keeps_its_reasoning_apart() -> None:
    state = StreamState(start_ns=0)
    answer = {
        "choices": [
            {
                "index": 0,
                "message": {"content": "Paris", "reasoning_content": "thinking"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4},
    }
    take_answer(state, answer, "{}", 30 * MS, "openai:x", "http://x")
    parts = split_completion(state, "Paris", ("<think>", "</think>"), "")
    assert parts == CompletionParts("Paris", "thinking", "apart")
    assert answer_time_ms(state, parts, state.timing().ttft_ms) is None  # arrived whole


def test_usage_reasoning_tokens_reads_only_an_integer() -> None:
    assert usage_reasoning_tokens(None) is None
    assert usage_reasoning_tokens({"completion_tokens": 3}) is None
    assert usage_reasoning_tokens({"completion_tokens_details": {"reasoning_tokens": 2}}) == 2
    assert usage_reasoning_tokens({"completion_tokens_details": {"reasoning_tokens": "2"}}) is None
    assert usage_reasoning_tokens({"completion_tokens_details": None}) is None


@pytest.mark.parametrize(
    ("option", "delimiters"),
    [
        (None, ("<think>", "</think>")),
        ("none", None),
        ("<reasoning>,</reasoning>", ("<reasoning>", "</reasoning>")),
    ],
)
def test_the_reasoning_option(option: str | None, delimiters: tuple[str, str] | None) -> None:
    query = "" if option is None else f"&reasoning={option}"
    spec = EngineSpec.parse(f"openai:http://127.0.0.1:8000/v1?model=m{query}")
    assert OpenAISettings.from_spec(spec).reasoning == delimiters


@pytest.mark.parametrize("bad", ["<think>", ",</think>", "<a>,</a>,x", " , "])
def test_a_bad_reasoning_option_names_the_fix(bad: str) -> None:
    spec = EngineSpec.parse(f"transformers:smollm2-135m-instruct?reasoning={bad}")
    with pytest.raises(EngineSpecError, match="not a pair of delimiters; give OPEN,CLOSE"):
        spec.reasoning_delimiters()


def test_the_load_driver_times_reasoning_as_output_too() -> None:
    """TTFT in load runs is vLLM's as well: a reasoning chunk is the first output."""
    import json

    from pytest_inferbudget.load.http import _Stream

    stream = _Stream(start_ns=0)
    for at, chunk in enumerate(
        [delta("reasoning", "think"), delta("content", "Paris", 2, "stop")], start=1
    ):
        stream.take(json.dumps(chunk), at * 10 * MS)
    assert (stream.first_ns, stream.last_ns, stream.itl_ns) == (10 * MS, 20 * MS, [10 * MS])
    assert stream.text == ["Paris"]
