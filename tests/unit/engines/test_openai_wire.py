"""The openai engine's pure rules: chunk accounting, who counts tokens, fan-out seeds,
and what a probe's answers mean. No server: each input is what a real server sends
(vLLM's and llama.cpp's stream shapes, written out)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from pytest_inferbudget.engines.openai_probe import (
    ProbeError,
    ServerCapabilities,
    probe_server,
    stream_events,
    stream_has_logprobs,
    stream_has_usage,
)
from pytest_inferbudget.engines.openai_wire import (
    TOKEN_MODES,
    StreamState,
    carries_output,
    output_chunk_gaps,
    sample_seed,
    streams_for,
    take_answer,
    take_chunk,
    token_source,
    tokens_description,
)
from pytest_inferbudget.errors import EngineError
from pytest_inferbudget.records import Generation, Response, TokenSource
from pytest_inferbudget.records.requests import Request

MS = 1_000_000


def delta(text: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": {} if text is None else {"content": text}}
    choice["finish_reason"] = finish
    return {"choices": [choice], **extra}


def usage(completion: int, prompt: int = 9) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def feed(state: StreamState, *chunks: tuple[int, dict[str, Any]]) -> StreamState:
    for arrival_ms, chunk in chunks:
        take_chunk(state, chunk, json.dumps(chunk), arrival_ms * MS, "spec", "url")
    return state


# -- chunk accounting (DESIGN.md section 3) ---------------------------------------------------


def test_gaps_are_one_per_chunk_without_per_chunk_counts() -> None:
    assert output_chunk_gaps(None, None) == []
    assert output_chunk_gaps(5.0, None) == [5.0]
    assert output_chunk_gaps(5.0, 1) == [5.0]


def test_a_chunk_of_several_tokens_splits_its_gap() -> None:
    assert output_chunk_gaps(9.0, 3) == [3.0, 3.0, 3.0]
    # the first chunk's extra tokens came with it: they add gaps of zero
    assert output_chunk_gaps(None, 3) == [0.0, 0.0]


def test_what_is_output() -> None:
    assert carries_output("Par", None, None)
    assert carries_output(None, "stop", None)  # EOS has no text; its chunk ends the answer
    assert not carries_output(None, None, None)  # a role-only chunk
    assert carries_output(None, "stop", 1)  # per-chunk usage: the EOS token is counted
    assert not carries_output(None, "stop", 0)  # per-chunk usage: a finish adding no token


def test_llamacpp_stream_one_token_per_chunk_no_usage() -> None:
    """llama.cpp's shape: a role chunk, text chunks, an empty delta with the finish."""
    role = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    state = feed(
        StreamState(start_ns=0),
        (10, role),
        (40, delta("The")),
        (52, delta(" capital")),
        (65, delta(" is")),
        (80, delta(finish="stop")),
    )
    timing = state.timing()
    assert (timing.ttft_ms, timing.e2e_ms, timing.output_chunks) == (40.0, 80.0, 4)
    assert timing.itl_ms == (12.0, 13.0, 15.0) and not timing.itl_per_token
    assert state.usage is None and "".join(state.text) == "The capital is"


def test_per_chunk_usage_counts_several_tokens_and_none() -> None:
    """vLLM's continuous usage: a chunk may carry two tokens, or none at all."""
    state = feed(
        StreamState(start_ns=0, per_chunk_usage=True),
        (5, {**delta(""), **usage(0)}),  # role/empty chunk: no token
        (20, {**delta("Hello"), **usage(2)}),  # two tokens at once: first chunk
        (30, {**delta(" world"), **usage(3)}),
        (50, {**delta("!!"), **usage(5)}),  # two tokens in 20 ms
        (60, {**delta(finish="stop"), **usage(5)}),  # a finish adding no token
        (61, {"choices": [], **usage(5)}),
    )
    timing = state.timing()
    assert (timing.ttft_ms, timing.e2e_ms) == (20.0, 50.0)
    assert timing.itl_ms == (0.0, 10.0, 10.0, 10.0)
    assert len(timing.itl_ms) == 5 - 1 and sum(timing.itl_ms) == 50.0 - 20.0
    assert timing.itl_per_token and state.finish_reason == "stop"


def test_final_usage_chunk_does_not_split_gaps() -> None:
    state = feed(
        StreamState(start_ns=0),
        (10, delta("a")),
        (20, delta("b", finish="length")),
        (21, {"choices": [], **usage(2)}),
    )
    assert state.timing().itl_ms == (10.0,) and state.usage_tokens == 2


def test_unstreamed_answer_has_an_end_and_no_first_token() -> None:
    answer = {
        "choices": [{"index": 0, "message": {"content": "Paris"}, "finish_reason": "stop"}],
        **usage(2),
    }
    state = StreamState(start_ns=0)
    take_answer(state, answer, json.dumps(answer), 30 * MS, "spec", "url")
    timing = state.timing()
    assert (timing.ttft_ms, timing.e2e_ms, timing.itl_ms) == (None, 30.0, ())
    assert state.finish_reason == "stop" and state.text == ["Paris"]
    with pytest.raises(EngineError, match="malformed answer from url"):
        take_answer(StreamState(start_ns=0), {"no": "choices"}, "{}", 0, "spec", "url")


# -- who counts tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "streamed", "has_usage", "tokenizer", "expected"),
    [
        ("auto", True, True, True, "stream_usage"),  # the server's count beats an estimate
        ("auto", True, False, True, "tokenizer"),
        ("auto", False, True, False, "response_usage"),
        ("stream_usage", True, True, False, "stream_usage"),
        ("response_usage", False, True, True, "response_usage"),
        ("tokenizer", True, True, True, "tokenizer"),  # asked for: always re-tokenized
    ],
)
def test_token_source_prefers_the_most_trusted(
    mode: Any, streamed: bool, has_usage: bool, tokenizer: bool, expected: TokenSource
) -> None:
    assert token_source(mode, streamed, has_usage, tokenizer, "here") == expected


def test_missing_usage_without_a_fallback_names_the_fix() -> None:
    with pytest.raises(EngineError, match=r"here sent no usage.*\?tokenizer=FOLDER"):
        token_source("auto", True, False, False, "here")
    with pytest.raises(EngineError, match=r"sent no usage.*tokens=auto"):
        token_source("stream_usage", True, False, True, "here")


def test_streaming_is_kept_while_anything_can_count_tokens() -> None:
    assert streams_for("auto", True, False, False, "here")  # usage in the stream
    assert streams_for("auto", False, True, True, "here")  # tokenizer keeps TTFT
    assert streams_for("auto", None, None, False, "here")  # not probed: try streaming
    assert not streams_for("auto", False, True, False, "here")  # usage only unstreamed
    assert not streams_for("response_usage", True, True, True, "here")
    with pytest.raises(EngineError, match=r"reports no usage.*tokenizer=FOLDER"):
        streams_for("auto", False, False, False, "here")


def test_tokens_description_says_when_counts_are_estimated() -> None:
    def streamed() -> bool:
        return True

    assert tokens_description("auto", streamed, False, "smollm2").startswith(
        "estimated: tokenizer smollm2 (the server sends no usage"
    )
    assert tokens_description("auto", streamed, True, None) == (
        "server usage in the stream; else no tokenizer"
    )
    assert "unstreamed" in tokens_description("auto", lambda: False, False, None)
    assert tokens_description("stream_usage", streamed, False, "x").startswith("cannot be")


def test_every_mode_is_documented() -> None:
    from pathlib import Path

    docs = (Path(__file__).parents[3] / "docs" / "engines.md").read_text()
    assert all(f"`{mode}`" in docs for mode in TOKEN_MODES)


# -- n fanned out -------------------------------------------------------------------------------


def test_fanned_out_samples_get_distinct_repeatable_seeds() -> None:
    assert [sample_seed(7, i) for i in range(3)] == [7, 8, 9]
    assert sample_seed(None, 2) is None  # unseeded stays unseeded


# -- the record keeps the source ----------------------------------------------------------------


def test_token_source_round_trips_and_old_runs_stay_readable() -> None:
    generation = Generation("Paris", 9, 2, "stop", token_source="tokenizer")
    assert Generation.from_dict(generation.to_dict()) == generation
    assert generation.tokens_estimated
    old = {k: v for k, v in generation.to_dict().items() if k != "token_source"}
    response = Response(Request("q"), (Generation.from_dict(old),), engine="openai:http://x/v1")
    data = response.to_dict()
    del data["generations"][0]["token_source"]
    # before sources were kept, the openai engine counted only with the stream's usage
    assert Response.from_dict(data).generations[0].token_source == "stream_usage"
    data["engine"] = "transformers:smollm2-135m-instruct"
    assert Response.from_dict(data).generations[0].token_source == "token_ids"
    with pytest.raises(ValueError, match="token_source must be one of"):
        Generation("x", 1, 1, "stop", token_source="guess")  # type: ignore[arg-type]


# -- the probe's reading of answers -------------------------------------------------------------


def sse(*events: object) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def test_probe_reads_a_llamacpp_like_server() -> None:
    """No usage in streams, one choice whatever n, seeds honoured: the probe says so."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def post(path: str, body: dict[str, Any]) -> tuple[int, str]:
        sent.append((path, body))
        if body.get("stream"):
            logprobs = {"content": [{"logprob": -0.5}]} if body.get("logprobs") else None
            chunk = delta("1")
            chunk["choices"][0]["logprobs"] = logprobs
            return 200, sse(chunk, delta(finish="length"))
        text = f"seed text {body.get('seed', 0)}"
        answer = {
            "choices": [{"index": 0, "message": {"content": text}, "finish_reason": "length"}],
            **usage(3),
        }
        if path == "/completions":
            answer = {"choices": [{"index": 0, "text": "4"}]}
        return 200, json.dumps(answer)

    capabilities = probe_server(post, "m", count_tokens=lambda text: len(text.split()))
    assert capabilities == ServerCapabilities(
        stream_usage=False,
        response_usage=True,
        n=False,
        logprobs=True,
        seed=True,
        completions=True,
        tokenizer_check="tokenizer agrees with server usage on a probe answer (3 vs 3 tokens)",
    )
    assert "usage in stream: no" in capabilities.summary()
    assert "n: ignored" in capabilities.summary()
    assert all(body["model"] == "m" for _, body in sent)
    assert all(body.get("max_tokens", 0) <= 12 for _, body in sent)  # tiny requests


def test_probe_treats_refusals_as_unsupported() -> None:
    def post(path: str, body: dict[str, Any]) -> tuple[int, str]:
        if body.get("stream") and "stream_options" in body and "logprobs" not in body:
            return 200, sse(delta("1", finish="length"))  # only plain streams work
        return 404, '{"error": "no"}'

    capabilities = probe_server(post, "m")
    assert not any(
        getattr(capabilities, f)
        for f in ("stream_usage", "response_usage", "n", "seed", "concurrent")
    )
    assert capabilities.tokenizer_check == ""


def test_probe_gives_up_when_even_a_plain_request_is_refused() -> None:
    def post(path: str, body: dict[str, Any]) -> tuple[int, str]:
        return 404, '{"error": "model not found"}'

    with pytest.raises(ProbeError, match="answered HTTP 404"):
        probe_server(post, "m")


def test_probe_sees_streams_cut_off_when_another_arrives() -> None:
    """llama-cpp-python's default: a stream ends with [DONE] but no finish reason once a
    second request waits."""
    busy = threading.Lock()

    def post(path: str, body: dict[str, Any]) -> tuple[int, str]:
        if body.get("stream") and body.get("max_tokens") == 8:
            if not busy.acquire(blocking=False):
                return 200, sse(delta("1"), delta(", 2", finish="length"))
            try:
                time.sleep(0.2)  # the other request arrives meanwhile and cuts this one
                return 200, sse(delta("1"))
            finally:
                busy.release()
        return 200, sse(delta("1", finish="length"))

    assert not probe_server(post, "m").concurrent
    assert "cut off, sent one at a time" in probe_server(post, "m").summary()


def test_stream_readers() -> None:
    events = stream_events(sse(delta("a"), {"choices": [], **usage(1)}) + "data: {bad\n\n")
    assert len(events) == 2 and stream_has_usage(events) and not stream_has_logprobs(events)
