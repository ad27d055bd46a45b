"""The HTTP engine against a real vLLM OpenAI-compatible server, and against stub servers
of our own that misbehave on purpose. Every address contacted is on 127.0.0.1.

The vLLM server runs in float32, as the transformers engine does on CPU, so that greedy
answers can be compared token for token (see tests/engines/test_vllm.py).
"""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest

from pytest_inferbudget.engines import Engine, EngineSpec, create_engine
from pytest_inferbudget.engines.openai import OpenAIEngine, OpenAISettings
from pytest_inferbudget.errors import EngineError, EngineSpecError, EngineUnavailableError
from pytest_inferbudget.records import EngineInfo, Request
from pytest_inferbudget.servers import SERVED_MODEL_NAME, free_port
from tests.engines.serving import assert_same_generations, run_serving_suite

SERVED_NAME = SERVED_MODEL_NAME
CAPITAL = "What is the capital of France? Answer in one word."
MEOW = (
    {"role": "system", "content": "Reply in lowercase with one word, no punctuation."},
    {"role": "user", "content": "What animal says meow?"},
)


def open_engine(base_url: str, **options: str) -> OpenAIEngine:
    query = "&".join(f"{k}={v}" for k, v in {"model": SERVED_NAME, **options}.items())
    return OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{base_url}?{query}"), print)


def stub_engine(stub: StubServer, **options: str) -> OpenAIEngine:
    """An engine on a stub server, which answers every POST alike: no probe, which would
    learn nothing from it, and only the stream's usage counts."""
    return open_engine(stub.base_url, probe="false", tokens="stream_usage", **options)


@pytest.fixture(scope="module")
def http_engine(vllm_server: str) -> Iterator[OpenAIEngine]:
    engine = open_engine(vllm_server)
    yield engine
    engine.close()


# -- against the real server ---------------------------------------------------------------


def test_greedy_tokens_and_text_equal_the_transformers_engine(
    http_engine: OpenAIEngine, smollm_engine: Engine
) -> None:
    # short answers that end in EOS (the longer ones are compared in engines/test_vllm.py)
    requests = [Request(CAPITAL, max_new_tokens=24), Request(MEOW, max_new_tokens=24)]
    requests.append(Request("The capital of France is", chat=False, max_new_tokens=4))
    ours = http_engine.generate(requests)
    reference = smollm_engine.generate(requests[:-1]) + smollm_engine.generate(requests[-1:])
    # prompt and completion tokens are the server's usage, EOS included in both
    assert_same_generations(ours, reference)
    assert "Paris" in ours[0].text and ours[0].finish_reason == "stop"
    assert ours[-1].prompt_tokens == 5  # raw text went to /completions


def test_timings_follow_vllm_bench_serve(http_engine: OpenAIEngine) -> None:
    start = time.perf_counter()
    (response,) = http_engine.generate([Request("Write a haiku about the sea.", max_new_tokens=16)])
    wall_ms = (time.perf_counter() - start) * 1000
    (g,), ((timing,),) = response.generations, http_engine.last_timings
    assert g.completion_tokens == 16 and g.finish_reason == "length"
    assert g.ttft_ms is not None and g.e2e_ms is not None and g.tpot_ms is not None
    assert 0 < g.ttft_ms < g.e2e_ms < wall_ms
    assert g.tpot_ms == pytest.approx((g.e2e_ms - g.ttft_ms) / 15)
    assert (timing.ttft_ms, timing.e2e_ms) == (g.ttft_ms, g.e2e_ms)
    # vLLM streams one chunk per token: 16 output chunks, 15 gaps between them
    assert timing.output_chunks == 16 and len(timing.itl_ms) == 15
    assert not timing.itl_per_token
    assert sum(timing.itl_ms) == pytest.approx(g.e2e_ms - g.ttft_ms)
    assert all(gap >= 0 for gap in timing.itl_ms)


def test_continuous_usage_splits_gaps_per_token(vllm_server: str) -> None:
    engine = open_engine(vllm_server, continuous_usage="true")
    try:
        (response,) = engine.generate([Request(CAPITAL, max_new_tokens=16)])
    finally:
        engine.close()
    (g,), ((timing,),) = response.generations, engine.last_timings
    assert g.finish_reason == "stop" and timing.itl_per_token
    # the EOS token arrives in a chunk with no text but with usage: it is counted and timed
    assert len(timing.itl_ms) == g.completion_tokens - 1
    assert g.e2e_ms is not None and g.ttft_ms is not None
    assert sum(timing.itl_ms) == pytest.approx(g.e2e_ms - g.ttft_ms)


def test_single_token_has_no_tpot(http_engine: OpenAIEngine) -> None:
    g = http_engine.generate([Request(CAPITAL, max_new_tokens=1)])[0].generations[0]
    assert g.completion_tokens == 1 and g.tpot_ms is None and g.ttft_ms == g.e2e_ms


def test_n_samples_are_concurrent_streams_with_reproducible_seeds(
    http_engine: OpenAIEngine,
) -> None:
    request = Request("Name a fruit.", temperature=0.9, n=3, seed=7, max_new_tokens=12)
    first, second = (http_engine.generate([request])[0] for _ in range(2))
    assert len(first.generations) == 3 and first.texts == second.texts
    assert len(set(first.texts)) > 1  # sample i is sent with seed 7 + i
    assert first.completion_tokens == sum(g.completion_tokens for g in first.generations)
    assert all(g.prompt_tokens == first.prompt_tokens for g in first.generations)
    other = http_engine.generate(
        [Request("Name a fruit.", temperature=0.9, n=3, seed=8, max_new_tokens=12)]
    )[0]
    assert other.texts != first.texts


def test_batches_run_concurrently_up_to_the_bound(vllm_server: str) -> None:
    requests = [Request(f"Count from {k} to {k + 20}.", max_new_tokens=12) for k in range(4)]

    def run(max_concurrency: int) -> tuple[float, float]:
        engine = open_engine(vllm_server, max_concurrency=str(max_concurrency))
        try:
            start = time.perf_counter()
            responses = engine.generate(requests)
            wall_ms = (time.perf_counter() - start) * 1000
        finally:
            engine.close()
        assert [r.request for r in responses] == requests  # order kept
        return wall_ms, sum(r.e2e_ms or 0.0 for r in responses)

    serial_wall, serial_sum = run(1)
    parallel_wall, parallel_sum = run(4)
    # each stream's clock starts when it is sent: one at a time, the latencies add up to
    # the wall time; four at once, they overlap and their sum exceeds it
    assert serial_sum <= serial_wall
    assert parallel_sum > 1.5 * parallel_wall


def test_prefill_and_logprobs(http_engine: OpenAIEngine, smollm_engine: Engine) -> None:
    requests = [
        Request(CAPITAL, prefill="The answer is", max_new_tokens=8, logprobs=True),
        Request("The capital of France is", chat=False, prefill=" the city of", logprobs=True,
                max_new_tokens=3),
    ]  # fmt: skip
    ours = http_engine.generate(requests)
    reference = [smollm_engine.generate([r])[0] for r in requests]
    for mine, theirs in zip(ours, reference, strict=True):
        g, t = mine.generations[0], theirs.generations[0]
        assert (g.prompt_tokens, g.completion_tokens, g.text) == (
            t.prompt_tokens,
            t.completion_tokens,
            t.text,
        )
        assert g.mean_logprob is not None and t.mean_logprob is not None
        assert g.mean_logprob == pytest.approx(t.mean_logprob, abs=1e-3)
    assert not ours[0].text.startswith("The answer is")


def test_top_logprobs_on_both_endpoints(http_engine: OpenAIEngine, smollm_engine: Engine) -> None:
    """``top_logprobs=k`` sent as each API asks (chat: ``logprobs: true, top_logprobs: k``;
    completions: ``logprobs: k``) comes back as the transformers engine computes it."""
    requests = [
        Request(CAPITAL, max_new_tokens=4, top_logprobs=3),
        Request("The capital of France is", chat=False, max_new_tokens=3, top_logprobs=3),
    ]
    ours = http_engine.generate(requests)
    reference = [smollm_engine.generate([r])[0] for r in requests]
    for mine, theirs in zip(ours, reference, strict=True):
        g, t = mine.generations[0], theirs.generations[0]
        assert g.top_logprobs is not None and t.top_logprobs is not None
        assert len(g.top_logprobs) == len(t.top_logprobs) == g.completion_tokens
        for position, expected in zip(g.top_logprobs, t.top_logprobs, strict=True):
            assert len(position) == 3 and position[0][0] == expected[0][0]
            assert [lp for _, lp in position] == pytest.approx([lp for _, lp in expected], abs=1e-3)
        assert g.entropy_source == "top_k" and g.first_token_entropy is not None
        assert 0 <= g.first_token_entropy <= math.log(3)


def test_describe_reports_the_server(http_engine: OpenAIEngine) -> None:
    info = http_engine.describe()
    assert info["engine"] == "openai" and info["model"] == SERVED_NAME
    assert info["n"] == "one stream per sample" and info["itl"] == "per output chunk"
    server = info["server"]
    assert isinstance(server, dict)
    assert server["root"].endswith("SmolLM2-135M-Instruct")
    assert server["max_model_len"] == 2048
    assert isinstance(http_engine, Engine)


def test_the_probe_finds_what_vllm_supports(http_engine: OpenAIEngine) -> None:
    capabilities = http_engine.capabilities()
    assert capabilities is not None
    assert (capabilities.stream_usage, capabilities.response_usage, capabilities.n) == (
        True,
        True,
        True,
    )
    assert (capabilities.logprobs, capabilities.seed, capabilities.completions) == (
        True,
        True,
        True,
    )
    # a sampled answer cut at 12 tokens, re-tokenized: close to vLLM's count, not always
    # equal (a text need not tokenize back into the tokens that made it)
    assert capabilities.tokenizer_check.endswith(" vs 12 tokens)")
    info = http_engine.describe()
    assert info["capabilities"]["probed"] is True
    assert info["tokens"] == "server usage in the stream; else tokenizer smollm2-135m-instruct"
    assert http_engine.capabilities() is capabilities  # probed once, then cached


def test_tokenizer_counts_equal_vllm_usage_and_are_labelled(
    http_engine: OpenAIEngine, vllm_server: str
) -> None:
    """The fallback that llama.cpp's server needs, checked where the truth is known: on
    vLLM, re-tokenized counts (EOS included) equal the server's usage for chat answers,
    and are within a token where text does not tokenize back into the same tokens (two
    newlines generated one by one re-tokenize as one)."""
    requests = [
        Request(CAPITAL, max_new_tokens=24),
        Request(MEOW, max_new_tokens=24),
        Request("Write a haiku about the sea.", max_new_tokens=12),
        Request("The capital of France is", chat=False, max_new_tokens=4),
    ]
    counted = http_engine.generate(requests)
    engine = open_engine(vllm_server, tokens="tokenizer")
    try:
        estimated = engine.generate(requests)
        assert engine.describe()["tokens"].startswith("estimated: tokenizer")
    finally:
        engine.close()
    for mine, theirs in zip(estimated, counted, strict=True):
        (g,), (t,) = mine.generations, theirs.generations
        assert (g.token_source, t.token_source) == ("tokenizer", "stream_usage")
        assert (g.text, g.prompt_tokens) == (t.text, t.prompt_tokens)
        if mine.request.chat:
            assert g.completion_tokens == t.completion_tokens
        else:
            assert abs(g.completion_tokens - t.completion_tokens) <= 1
        assert mine.tokens_estimated and not theirs.tokens_estimated


def test_unstreamed_usage_counts_exactly_but_has_no_first_token(
    http_engine: OpenAIEngine, vllm_server: str
) -> None:
    request = Request(CAPITAL, max_new_tokens=16)
    (streamed,) = http_engine.generate([request])
    engine = open_engine(vllm_server, tokens="response_usage")
    try:
        (whole,) = engine.generate([request])
        assert "unstreamed" in engine.describe()["tokens"]
    finally:
        engine.close()
    (g,), (t,) = whole.generations, streamed.generations
    assert g.token_source == "response_usage"
    assert (g.text, g.prompt_tokens, g.completion_tokens) == (
        t.text,
        t.prompt_tokens,
        t.completion_tokens,
    )
    assert g.e2e_ms is not None and g.e2e_ms > 0
    assert g.ttft_ms is None and g.tpot_ms is None  # unmeasured, never guessed


def test_unknown_model_is_an_http_error_naming_the_url(vllm_server: str) -> None:
    engine = OpenAIEngine.from_spec(
        EngineSpec.parse(f"openai:{vllm_server}?model=no-such-model"), print
    )
    try:
        with pytest.raises(EngineError, match=r"chat/completions answered HTTP 404.*no-such"):
            engine.generate([Request(CAPITAL, max_new_tokens=2)])
    finally:
        engine.close()


# -- faults, against servers of our own ------------------------------------------------------


def test_connection_refused_names_the_url() -> None:
    port = free_port()  # bound and released: nothing listens there now
    engine = open_engine(f"http://127.0.0.1:{port}/v1", timeout_s="5")
    try:
        with pytest.raises(
            EngineError, match=rf"cannot connect to http://127.0.0.1:{port}/v1/chat/completions"
        ):
            engine.generate([Request(CAPITAL, max_new_tokens=2)])
        assert str(engine.describe()["server"]).startswith("unreachable")
    finally:
        engine.close()


Behaviour = Callable[[BaseHTTPRequestHandler], None]

CHUNK = {"choices": [{"index": 0, "delta": {"content": "Paris"}, "finish_reason": None}]}
LAST = {"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}]}
USAGE = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}


def sse(*events: object) -> bytes:
    return b"".join(
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events
    )


class StubServer:
    """A loopback HTTP server whose answer to every POST is set by the test."""

    def __init__(self) -> None:
        stub = self
        self.behaviour: Behaviour = lambda handler: None
        self.headers: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.headers.append(dict(self.headers))
                stub.behaviour(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    yield server
    server.close()


def stream_then(body: bytes, *, end: str) -> Behaviour:
    """Send ``body`` as an event stream, then end it cleanly, abruptly or not at all."""

    def behave(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        if end == "close":  # no length, no chunking: the body ends when the socket closes
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(body)
            handler.close_connection = True
            return
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
        handler.wfile.flush()
        if end == "chunked":
            handler.wfile.write(b"0\r\n\r\n")
        elif end == "killed":  # the server dies mid-stream: no terminating chunk
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
        elif end == "stall":
            time.sleep(3.0)
            handler.close_connection = True

    return behave


@pytest.mark.parametrize(
    ("body", "end", "message"),
    [
        (
            sse(CHUNK, "{not json", "[DONE]"),
            "chunked",
            r"malformed stream from .*: an event is not",
        ),
        (sse(CHUNK, [1, 2], "[DONE]"), "chunked", "malformed stream.*not a JSON object"),
        (sse(CHUNK, LAST, USAGE), "close", r"ended without 'data: \[DONE\]' after 2 output"),
        (sse(CHUNK), "killed", r"broke off the stream after 1 output chunk"),
        (sse(CHUNK), "stall", r"timed out: no data for 0.5 s"),
        (sse(CHUNK, LAST, "[DONE]"), "chunked", "sent no usage"),
        (sse(CHUNK, {"error": {"message": "out of KV cache"}}), "chunked", "out of KV cache"),
        (sse(CHUNK, USAGE, "[DONE]"), "chunked", "never gave a finish_reason"),
    ],
    ids=["bad-json", "not-object", "no-done", "killed", "stall", "no-usage", "error", "no-finish"],
)
def test_stream_faults_are_engine_errors_naming_the_url(
    stub: StubServer, body: bytes, end: str, message: str
) -> None:
    stub.behaviour = stream_then(body, end=end)
    engine = stub_engine(stub, timeout_s="0.5")
    try:
        with pytest.raises(EngineError, match=message) as raised:
            engine.generate([Request(CAPITAL, max_new_tokens=4)])
    finally:
        engine.close()
    assert f"{stub.base_url}/chat/completions" in str(raised.value)


def test_a_well_formed_stub_stream_is_measured(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A minimal server: role chunk, two tokens (the second is EOS, with no text), usage."""
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    stub.behaviour = stream_then(sse(role, CHUNK, LAST, USAGE, "[DONE]"), end="chunked")
    monkeypatch.setenv("INFERBUDGET_TEST_KEY", "sk-local")
    engine = stub_engine(stub, api_key_env="INFERBUDGET_TEST_KEY")
    try:
        (response,) = engine.generate([Request(CAPITAL, max_new_tokens=4)])
    finally:
        engine.close()
    (g,), ((timing,),) = response.generations, engine.last_timings
    assert (g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason) == (
        "Paris",
        9,
        2,
        "stop",
    )
    assert timing.output_chunks == 2 and len(timing.itl_ms) == 1  # the role chunk is not output
    assert stub.headers[0]["Authorization"] == "Bearer sk-local"


@pytest.mark.model  # loads the default model's tokenizer
def test_a_stream_without_usage_is_counted_by_the_tokenizer(stub: StubServer) -> None:
    """llama.cpp's shape: text chunks, a bare finish, no usage; the default model's name
    implies its tokenizer, which counts 'Paris' and the end token."""
    stub.behaviour = stream_then(sse(CHUNK, LAST, "[DONE]"), end="chunked")
    engine = open_engine(stub.base_url, probe="false")
    try:
        (response,) = engine.generate([Request(CAPITAL, max_new_tokens=4)])
        info = engine.describe()
    finally:
        engine.close()
    (g,) = response.generations
    assert g.token_source == "tokenizer" and g.completion_tokens == 2  # "Paris" + EOS
    assert g.prompt_tokens > 9  # the template's system prompt and markers, estimated
    assert info["capabilities"] == {"probed": False, "why": "probe=false"}
    assert info["tokens"] == "server usage in the stream; else tokenizer smollm2-135m-instruct"


def answer_status(status: int, message: str) -> Behaviour:
    def refuse(handler: BaseHTTPRequestHandler) -> None:
        body = json.dumps({"error": {"message": message}}).encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return refuse


def test_http_error_status_is_reported_with_the_body(stub: StubServer) -> None:
    stub.behaviour = answer_status(400, "bad temperature")
    engine = stub_engine(stub)
    try:
        with pytest.raises(EngineError, match=r"answered HTTP 400.*bad temperature"):
            engine.generate([Request(CAPITAL, max_new_tokens=4)])
    finally:
        engine.close()
    assert len(stub.headers) == 1  # a client error is not retried


def test_busy_server_is_retried_a_bounded_number_of_times(stub: StubServer) -> None:
    stub.behaviour = answer_status(503, "model overloaded")
    engine = stub_engine(stub, retries="2")
    try:
        with pytest.raises(
            EngineError, match=r"answered HTTP 503.*model overloaded.*gave up after 3 attempt"
        ):
            engine.generate([Request(CAPITAL, max_new_tokens=4)])
    finally:
        engine.close()
    assert len(stub.headers) == 3


def test_a_retry_is_timed_from_its_own_start(stub: StubServer) -> None:
    """The refused attempt and the back-off before the retry never count as latency."""
    good = stream_then(sse(CHUNK, LAST, USAGE, "[DONE]"), end="chunked")
    busy = answer_status(503, "warming up")
    stub.behaviour = lambda handler: (busy if len(stub.headers) == 1 else good)(handler)
    engine = stub_engine(stub, retries="1")
    try:
        start = time.perf_counter()
        (response,) = engine.generate([Request(CAPITAL, max_new_tokens=4)])
        wall_ms = (time.perf_counter() - start) * 1e3
    finally:
        engine.close()
    (generation,) = response.generations
    assert len(stub.headers) == 2 and generation.text == "Paris"
    assert generation.e2e_ms is not None and generation.ttft_ms is not None
    back_off_ms = 500.0
    assert wall_ms >= back_off_ms  # the retry waited ...
    assert generation.e2e_ms < wall_ms - back_off_ms  # ... and that wait is not latency


def test_the_model_is_asked_of_the_server_when_the_spec_names_none(vllm_server: str) -> None:
    engine = OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{vllm_server}"), print)
    try:
        assert engine.model == SERVED_NAME
    finally:
        engine.close()


def test_an_unreachable_server_without_a_model_name_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineUnavailableError, match=rf"cannot ask {url}/models.*\?model=NAME"):
        OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{url}"), print)


def test_endpoint_mismatch_is_refused_before_sending(stub: StubServer) -> None:
    engine = stub_engine(stub, endpoint="chat")
    try:
        with pytest.raises(EngineError, match="needs the completions endpoint"):
            engine.generate([Request("raw text", chat=False)])
    finally:
        engine.close()
    assert stub.headers == []


def test_spec_options_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(text: str) -> OpenAISettings:
        return OpenAISettings.from_spec(EngineSpec.parse(text))

    defaults = settings("openai:http://127.0.0.1:8000/v1/")
    assert (defaults.base_url, defaults.model, defaults.endpoint, defaults.timeout_s) == (
        "http://127.0.0.1:8000/v1",
        None,
        "auto",
        60.0,
    )
    assert (defaults.max_concurrency, defaults.continuous_usage, defaults.retries) == (16, False, 2)
    assert settings("openai:https://example.invalid/v1?model=m").model == "m"
    assert (defaults.tokens, defaults.tokenizer, defaults.probe) == ("auto", None, True)
    monkeypatch.delenv("INFERBUDGET_UNSET_KEY", raising=False)
    for bad, message in [
        ("openai:http://h/v1?base_url=x", "unknown option.*base_url"),
        ("openai:m", "the target must be the server's http"),
        ("openai:ftp://x/v1", "the target must be the server's http"),
        ("openai:http://h/v1?retries=-1", "retries must be an integer >= 0"),
        (
            "openai:http://h/v1?endpoint=embeddings",
            "endpoint must be one of auto, chat, completions",
        ),
        ("openai:http://h/v1?timeout_s=soon", "timeout_s must be a number of seconds > 0"),
        ("openai:http://h/v1?max_concurrency=0", "max_concurrency must be an integer >= 1"),
        ("openai:http://h/v1?continuous_usage=maybe", "continuous_usage must be true or false"),
        ("openai:http://h/v1?probe=maybe", "probe must be true or false"),
        (
            "openai:http://h/v1?tokens=guess",
            "tokens must be one of auto, stream_usage, response_usage, tokenizer",
        ),
        ("openai:http://h/v1?api_key_env=INFERBUDGET_UNSET_KEY", "INFERBUDGET_UNSET_KEY.*not set"),
    ]:
        with pytest.raises(EngineSpecError, match=message):
            settings(bad)


# -- faults in a real session: errors apart from budget failures, no record lost ------------

FAULT_SUITE = """
import pytest

@pytest.mark.budget(max_tokens=4)
def test_answered(infer):
    assert infer("good", max_new_tokens=4).text == "Paris"

@pytest.mark.budget(max_tokens=4)
def test_server_killed_mid_stream(infer):
    infer("killed", max_new_tokens=4)

@pytest.mark.budget(max_tokens=4)
def test_malformed_stream(infer):
    infer("garbage", max_new_tokens=4)

@pytest.mark.budget(max_tokens=4)
def test_timeout(infer):
    infer("stall", max_new_tokens=4)

@pytest.mark.budget(max_tokens=1)
def test_budget_violated(infer):
    infer("good", max_new_tokens=4)
"""


def test_faults_are_errors_naming_the_url_and_lose_no_record(
    pytester: pytest.Pytester, stub: StubServer
) -> None:
    answers = {
        "good": stream_then(sse(CHUNK, LAST, USAGE, "[DONE]"), end="chunked"),
        "killed": stream_then(sse(CHUNK), end="killed"),
        "garbage": stream_then(sse(CHUNK, "<html>502 Bad Gateway</html>"), end="chunked"),
        "stall": stream_then(sse(CHUNK), end="stall"),
    }

    def behave(handler: BaseHTTPRequestHandler) -> None:
        prompt = handler.body["messages"][-1]["content"]  # type: ignore[attr-defined]
        answers[prompt](handler)

    stub.behaviour = behave
    pytester.makepyfile(FAULT_SUITE)
    url = f"{stub.base_url}/chat/completions"
    result = pytester.runpytest(
        f"--inferbudget-engine=openai:{stub.base_url}?model=m&timeout_s=1&probe=false",
        "--inferbudget-json=r.json",
    )
    result.assert_outcomes(passed=1, failed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at call of test_server_killed_mid_stream*",
            f"*{url} broke off the stream after 1 output chunk(s)*did the server die?",
            "*ERROR at call of test_malformed_stream*",
            f"*malformed stream from {url}: an event is not JSON*<html>502 Bad Gateway</html>",
            "*ERROR at call of test_timeout*",
            f"*POST {url} timed out: no data for 1 s*",
            "*test_budget_violated*",
            "*1 of 1 budget(s) not met*",
        ]
    )
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "r.json").read_text())["tests"]
    }
    assert len(tests) == 5
    assert tests["test_answered"]["outcome"] == "passed"
    assert tests["test_answered"]["traces"][0]["responses"][0]["generations"][0]["text"] == "Paris"


def test_a_server_that_is_not_running_errors_every_test_naming_the_url(
    pytester: pytest.Pytester,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    pytester.makepyfile(FAULT_SUITE)
    result = pytester.runpytest(f"--inferbudget-engine=openai:{url}?model=m&retries=0")
    result.assert_outcomes(errors=5)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at call of test_answered*",
            f"*cannot connect to {url}/chat/completions*is the server running*gave up after 1*",
        ]
    )


def test_budgeted_tests_run_against_the_real_server(
    pytester: pytest.Pytester, vllm_server: str
) -> None:
    """The HTTP engine through the plugin, on a real ``vllm serve``: every budget measured."""
    report = run_serving_suite(pytester, f"openai:{vllm_server}")
    assert report["engine"]["engine"] == "openai" and report["engine"]["model"] == SERVED_NAME


def test_a_missing_httpx_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # makes `import httpx` raise ImportError
    with pytest.raises(EngineUnavailableError, match=r"pip install 'pytest-inferbudget\[http\]'"):
        OpenAIEngine.from_spec(EngineSpec.parse("openai:http://127.0.0.1:9/v1?model=m"), print)


def test_an_unknown_engine_lists_the_registered_ones() -> None:
    with pytest.raises(EngineSpecError) as raised:
        create_engine(EngineSpec.parse("tgi:http://127.0.0.1:9"))
    message = str(raised.value)
    assert "unknown engine 'tgi'" in message
    assert "known engines: openai, replay, transformers, vllm" in message
    assert "'pytest_inferbudget.engines' entry-point group" in message


def test_tests_sharing_one_server_under_xdist_are_flagged_contended(
    pytester: pytest.Pytester, stub: StubServer
) -> None:
    """Each xdist worker opens its own engine on the same server: their requests contend,
    and the records say so; a serial run's do not."""
    stub.behaviour = stream_then(sse(CHUNK, LAST, USAGE, "[DONE]"), end="chunked")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        @pytest.mark.budget(max_tokens=4)
        def test_answered(infer, i):
            infer("good", max_new_tokens=4)
        """
    )
    engine = f"--inferbudget-engine=openai:{stub.base_url}?model=m&probe=false"
    for args, expected in (([], False), (["-n", "2"], True)):
        result = pytester.runpytest(engine, "--inferbudget-json=r.json", *args)
        result.assert_outcomes(passed=4)
        tests = json.loads((pytester.path / "r.json").read_text())["tests"]
        assert [t["contended"] for t in tests] == [expected] * 4, args


def test_a_shared_gpu_server_or_cpu_counts_as_contended(pytester: pytest.Pytester) -> None:
    from pytest_inferbudget.config import Settings
    from pytest_inferbudget.run import InferBudgetRun

    config = pytester.parseconfig()
    run = InferBudgetRun(config, Settings(engine="e", json_path=None))
    cases = (
        ({"engine": "vllm", "device": "cuda"}, 2, True),
        ({"engine": "transformers", "device": "cuda:0"}, 2, True),
        ({"engine": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}, 2, True),
        ({"engine": "transformers", "device": "cpu", "threads": 1}, 2, False),
        ({"engine": "transformers", "device": "cpu", "threads": 1024}, 2, True),  # cores
        ({"engine": "vllm", "device": "cuda"}, 1, False),
    )
    for engine, workers, shared in cases:
        config.workerinput = {"workercount": workers}  # type: ignore[attr-defined]
        run.engine = cast(EngineInfo, engine)
        assert run._shares_the_engine() is shared, (engine, workers)


def test_a_tokenizer_that_is_not_one_is_refused_naming_the_fix(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/v1?model=m&probe=false"
    with pytest.raises(EngineSpecError, match=r"tokenizer=.* is neither a known alias"):
        OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{url}&tokenizer={tmp_path}"), print)
    with pytest.raises(EngineSpecError, match=r"tokens=tokenizer, but no tokenizer is known"):
        OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{url}&tokens=tokenizer"), print)
