"""Any OpenAI-compatible server over HTTP, streamed and timed as ``vllm bench serve`` does.

Spec: ``openai:URL[?model=NAME&...]``, URL being the server's API root (for example
``http://127.0.0.1:8000/v1``); without ``model`` the server's ``/models`` must list
exactly one.

Longer than 500 lines because one wire protocol is one concept: the spec's options, the
stream's parsing and timing, and the mapping of every transport fault to an error that
names the URL and the fix read best beside each other.

Each generation is one streamed request (``stream: true`` with
``stream_options.include_usage``). The clock starts just before the request is sent;
TTFT is the arrival of the first chunk that carries output (text, or a finish reason:
a first token that is EOS has no text); E2E is the last such chunk; TPOT is
``(E2E - TTFT) / (output tokens - 1)``. Output and prompt tokens come from the server's
usage, never from re-tokenizing the text. Inter-token latencies are the gaps between
output chunks; with ``continuous_usage=true`` (a vLLM extension) the server reports
usage on every chunk, and a gap is split evenly over the tokens its chunk carries.

``n > 1`` is sent as ``n`` concurrent streams of one sample each, not as the server's
``n``: a stream with ``n`` choices reports usage only summed over its choices, so the
per-sample token counts (and so per-sample TPOT) would be lost, and many servers do
not implement ``n`` at all. With a seed, sample ``i`` is sent with ``seed + i``, as
vLLM seeds the children of an ``n > 1`` request.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pytest_inferbudget.engines import EngineSpec, Progress
from pytest_inferbudget.errors import EngineError, EngineSpecError, EngineUnavailableError
from pytest_inferbudget.records import EngineInfo, Generation, Request, Response, tpot_ms

OPTIONS = (
    "model",
    "api_key_env",
    "endpoint",
    "timeout_s",
    "max_concurrency",
    "continuous_usage",
    "retries",
)
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that mean "not now" and come before any output, so a retry measures afresh."""
RETRY_BACKOFF_S = 0.5
ENDPOINTS = ("auto", "chat", "completions")
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    # the model ended the answer itself, in another form
    "tool_calls": "stop",
    "function_call": "stop",
    "content_filter": "stop",
}


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the openai engine needs httpx ({exc}); install it with "
            f"`pip install 'pytest-inferbudget[http]'`"
        ) from exc
    return httpx


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """How one generation arrived, beyond what ``Generation`` keeps. Times in ms."""

    ttft_ms: float | None
    e2e_ms: float | None
    itl_ms: tuple[float, ...]
    """Gaps between output chunks; split per token when ``itl_per_token``."""
    output_chunks: int
    itl_per_token: bool
    """The server reported usage on every chunk and gaps were split by its token count."""


@dataclass(frozen=True, slots=True)
class OpenAISettings:
    base_url: str
    model: str | None
    endpoint: str
    timeout_s: float
    max_concurrency: int
    continuous_usage: bool
    api_key_env: str | None
    retries: int = 2
    """Further attempts after a refused connection or a retryable status, each timed
    from its own start: a failed attempt never counts toward a latency."""

    @classmethod
    def from_spec(cls, spec: EngineSpec) -> OpenAISettings:
        spec.check_options(OPTIONS)
        options = spec.options
        base_url = spec.target.rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineSpecError(
                f"engine spec '{spec}': the target must be the server's http(s) API root, "
                f"as in 'openai:{DEFAULT_BASE_URL}?model=NAME', got {spec.target!r}"
            )
        endpoint = options.get("endpoint", "auto")
        if endpoint not in ENDPOINTS:
            raise EngineSpecError(
                f"engine spec '{spec}': endpoint must be one of {', '.join(ENDPOINTS)}, "
                f"got {endpoint!r}"
            )
        try:
            timeout_s = float(options.get("timeout_s", "60"))
        except ValueError:
            timeout_s = 0.0
        if not timeout_s > 0:
            raise EngineSpecError(
                f"engine spec '{spec}': timeout_s must be a number of seconds > 0, "
                f"got {options.get('timeout_s')!r}"
            )
        concurrency = options.get("max_concurrency", "16")
        if not concurrency.isdigit() or int(concurrency) < 1:
            raise EngineSpecError(
                f"engine spec '{spec}': max_concurrency must be an integer >= 1, "
                f"got {concurrency!r}"
            )
        continuous = options.get("continuous_usage", "false").lower()
        if continuous not in ("true", "false", "1", "0"):
            raise EngineSpecError(
                f"engine spec '{spec}': continuous_usage must be true or false, "
                f"got {options['continuous_usage']!r}"
            )
        retries = options.get("retries", "2")
        if not retries.isdigit():
            raise EngineSpecError(
                f"engine spec '{spec}': retries must be an integer >= 0, got {retries!r}"
            )
        api_key_env = options.get("api_key_env") or None
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise EngineSpecError(
                f"engine spec '{spec}': api_key_env={api_key_env} names an environment "
                f"variable that is not set (or empty); export it or drop the option"
            )
        return cls(
            base_url=base_url,
            model=options.get("model") or None,
            endpoint=endpoint,
            timeout_s=timeout_s,
            max_concurrency=int(concurrency),
            continuous_usage=continuous in ("true", "1"),
            api_key_env=api_key_env,
            retries=int(retries),
        )


@dataclass(slots=True)
class _Stream:
    """What one stream delivered so far."""

    start_ns: int
    text: list[str] = field(default_factory=list)
    first_ns: int | None = None
    last_ns: int | None = None
    itl_ns: list[float] = field(default_factory=list)
    output_chunks: int = 0
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    usage_tokens: int = 0
    done: bool = False


class OpenAIEngine:
    """Streams from an OpenAI-compatible ``/chat/completions`` or ``/completions``."""

    def __init__(self, model: str, *, spec: str, settings: OpenAISettings) -> None:
        httpx = _import_httpx()
        self._httpx = httpx
        self._spec = spec
        self.model = model
        self.settings = settings
        headers = {"Accept": "text/event-stream"}
        if settings.api_key_env is not None:
            headers["Authorization"] = f"Bearer {os.environ[settings.api_key_env]}"
        self._client: Any = httpx.Client(
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(max_connections=settings.max_concurrency),
            headers=headers,
        )
        self._closed = False
        self.last_timings: list[tuple[StreamTiming, ...]] = []
        """Per response of the last ``generate`` call, per sample: TTFT, E2E and ITLs."""

    @classmethod
    def from_spec(cls, spec: EngineSpec, progress: Progress) -> OpenAIEngine:
        settings = OpenAISettings.from_spec(spec)
        _import_httpx()
        engine = cls(settings.model or "", spec=str(spec), settings=settings)
        if settings.model is None:
            try:
                engine.model = engine._only_served_model()
            except BaseException:
                engine.close()
                raise
        return engine

    def _only_served_model(self) -> str:
        """The model a server serves when the spec names none; several is ambiguous."""
        url = f"{self.settings.base_url}/models"
        try:
            listing = self._client.get(url, timeout=min(self.settings.timeout_s, 10.0))
            listing.raise_for_status()
            served = [m.get("id") for m in listing.json().get("data", [])]
        except (self._httpx.HTTPError, ValueError, AttributeError) as exc:
            raise EngineUnavailableError(
                f"{self._spec}: cannot ask {url} which model it serves ({exc}); start the "
                f"server, check the URL, or name the model with ?model=NAME"
            ) from exc
        if len(served) != 1 or not isinstance(served[0], str):
            raise EngineUnavailableError(
                f"{self._spec}: {url} serves {served!r}; name one with ?model=NAME"
            )
        return served[0]

    @property
    def spec(self) -> str:
        return self._spec

    def describe(self) -> EngineInfo:
        """Settings, and what the server says of the model (``GET /models``) if it answers."""
        info: EngineInfo = {
            "engine": "openai",
            "model": self.model,
            "base_url": self.settings.base_url,
            "endpoint": self.settings.endpoint,
            "max_concurrency": self.settings.max_concurrency,
            "timeout_s": self.settings.timeout_s,
            "n": "one stream per sample",
            "itl": "per token (usage on every chunk)"
            if self.settings.continuous_usage
            else "per output chunk",
            "httpx": str(self._httpx.__version__),
        }
        url = f"{self.settings.base_url}/models"
        try:
            listing = self._client.get(url, timeout=min(self.settings.timeout_s, 5.0))
            listing.raise_for_status()
            served = {m.get("id"): m for m in listing.json().get("data", [])}
        except (self._httpx.HTTPError, ValueError, AttributeError) as exc:
            info["server"] = f"unreachable: GET {url}: {exc}"
            return info
        entry = served.get(self.model)
        if entry is None:
            info["server"] = f"does not list model {self.model!r}; it serves {sorted(served)}"
        else:
            info["server"] = {
                key: entry[key] for key in ("root", "owned_by", "max_model_len") if key in entry
            }
        return info

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        """Every sample of every request as its own stream, at most ``max_concurrency`` at once."""
        if self._closed:
            raise EngineError(f"{self._spec}: generate called after close()")
        jobs = [(index, sample) for index, r in enumerate(requests) for sample in range(r.n)]
        for request in requests:
            self._endpoint_for(request)  # refuse a mismatched request before sending any
        results: dict[tuple[int, int], tuple[Generation, StreamTiming]] = {}
        cancel = threading.Event()
        workers = max(1, min(self.settings.max_concurrency, len(jobs)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inferbudget-http") as pool:
            futures: dict[Future[tuple[Generation, StreamTiming]], tuple[int, int]] = {
                pool.submit(self._run_stream, requests[index], sample, cancel): (index, sample)
                for index, sample in jobs
            }
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                cancel.set()  # streams in flight stop at their next chunk
                for future in futures:
                    future.cancel()
                raise _first_error(failed)
            for future, key in futures.items():
                results[key] = future.result()
        self.last_timings = [
            tuple(results[(index, sample)][1] for sample in range(r.n))
            for index, r in enumerate(requests)
        ]
        return [
            Response(
                request=r,
                generations=tuple(results[(index, sample)][0] for sample in range(r.n)),
                engine=self._spec,
            )
            for index, r in enumerate(requests)
        ]

    def _endpoint_for(self, request: Request) -> str:
        endpoint = self.settings.endpoint
        if endpoint == "auto":
            return "chat" if request.chat else "completions"
        if endpoint == "chat" and not request.chat:
            raise EngineError(
                f"{self._spec}: a raw-text request (chat=False) needs the completions "
                f"endpoint; set endpoint=completions or endpoint=auto"
            )
        if endpoint == "completions" and request.chat:
            raise EngineError(
                f"{self._spec}: a chat request needs the chat endpoint (the server applies "
                f"the chat template); set endpoint=chat or endpoint=auto, or send chat=False"
            )
        return endpoint

    def _payload(self, request: Request, sample: int) -> tuple[str, dict[str, Any]]:
        endpoint = self._endpoint_for(request)
        body: dict[str, Any] = {"model": self.model}
        if endpoint == "chat":
            messages = (
                [{"role": "user", "content": request.prompt}]
                if isinstance(request.prompt, str)
                else [dict(m) for m in request.prompt]
            )
            if request.prefill:
                # vLLM's extension: render the chat up to the prefill and continue it
                messages.append({"role": "assistant", "content": request.prefill})
                body.update(continue_final_message=True, add_generation_prompt=False)
            body["messages"] = messages
            path = "/chat/completions"
        else:
            body["prompt"] = str(request.prompt) + request.prefill
            path = "/completions"
        if request.logprobs:  # the sampled token's log-probability only
            if endpoint == "chat":
                body.update(logprobs=True, top_logprobs=0)
            else:
                body["logprobs"] = 0
        stream_options: dict[str, bool] = {"include_usage": True}
        if self.settings.continuous_usage:
            stream_options["continuous_usage_stats"] = True
        body.update(
            max_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            n=1,
            stream=True,
            stream_options=stream_options,
        )
        if request.seed is not None:
            body["seed"] = request.seed + sample
        return self.settings.base_url + path, body

    def _run_stream(
        self, request: Request, sample: int, cancel: threading.Event
    ) -> tuple[Generation, StreamTiming]:
        url, body = self._payload(request, sample)
        chat = "messages" in body
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        attempt = 0
        while True:
            try:
                return self._attempt_stream(url, content, headers, chat, cancel)
            except _Retryable as exc:
                attempt += 1
                if attempt > self.settings.retries or cancel.is_set():
                    raise EngineError(
                        f"{exc} (gave up after {attempt} attempt(s); the spec's retries "
                        f"option allows more)"
                    ) from exc.__cause__
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))

    def _attempt_stream(
        self,
        url: str,
        content: bytes,
        headers: dict[str, str],
        chat: bool,
        cancel: threading.Event,
    ) -> tuple[Generation, StreamTiming]:
        """One request, timed from its own start; refusals before any output retryable."""
        httpx = self._httpx
        stream = _Stream(start_ns=time.perf_counter_ns())
        try:
            with self._client.stream("POST", url, content=content, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    message = (
                        f"{self._spec}: POST {url} answered HTTP {response.status_code}: "
                        f"{_shorten(response.text)}"
                    )
                    if response.status_code in RETRY_STATUSES:
                        raise _Retryable(message)
                    raise EngineError(message)
                for data, arrival_ns in _sse_data(response.iter_lines()):
                    if cancel.is_set():
                        raise _Cancelled(f"{self._spec}: cancelled after another stream failed")
                    if data == "[DONE]":
                        stream.done = True
                        break
                    self._take_chunk(stream, data, arrival_ns, url, chat)
        except EngineError:
            raise
        except httpx.ConnectError as exc:  # nothing was sent: safe to try again
            raise _Retryable(
                f"{self._spec}: cannot connect to {url} ({exc}); is the server running "
                f"and listening there?"
            ) from exc
        except httpx.TimeoutException as exc:
            raise EngineError(
                f"{self._spec}: POST {url} timed out: no data for {self.settings.timeout_s:g} s "
                f"({type(exc).__name__}); raise timeout_s or check the server"
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise EngineError(
                f"{self._spec}: {url} broke off the stream after {stream.output_chunks} output "
                f"chunk(s) ({exc}); did the server die?"
            ) from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"{self._spec}: POST {url} failed: {exc}") from exc
        return self._finish(stream, url)

    def _take_chunk(
        self, stream: _Stream, data: str, arrival_ns: int, url: str, chat: bool
    ) -> None:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise EngineError(
                f"{self._spec}: malformed stream from {url}: an event is not JSON "
                f"({exc}): {_shorten(data)}"
            ) from exc
        if not isinstance(chunk, dict):
            raise EngineError(
                f"{self._spec}: malformed stream from {url}: an event is not a JSON object: "
                f"{_shorten(data)}"
            )
        if "error" in chunk or chunk.get("object") == "error":
            error = chunk.get("error", chunk)
            message = error.get("message", error) if isinstance(error, dict) else error
            raise EngineError(f"{self._spec}: {url} reported an error mid-stream: {message}")
        usage = chunk.get("usage")
        new_tokens = 0
        if isinstance(usage, dict):
            stream.usage = usage
            tokens = usage.get("completion_tokens")
            if isinstance(tokens, int) and tokens > stream.usage_tokens:
                new_tokens = tokens - stream.usage_tokens
                stream.usage_tokens = tokens
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise EngineError(
                f"{self._spec}: malformed stream from {url}: 'choices' is not a list: "
                f"{_shorten(data)}"
            )
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # one sample per stream; ignore anything else
            if chat:
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
            else:
                text = choice.get("text")
            stream.logprobs.extend(_token_logprobs(choice.get("logprobs"), chat))
            finish = choice.get("finish_reason")
            if text:
                stream.text.append(str(text))
            if finish is not None and stream.finish_reason is None:
                stream.finish_reason = str(finish)
            carries_output = bool(text) or finish is not None or new_tokens > 0
            if not carries_output:
                continue  # e.g. the role-only first chunk of a chat stream
            if stream.last_ns is not None:
                gap_ns = arrival_ns - stream.last_ns
                if self.settings.continuous_usage and new_tokens > 1:
                    stream.itl_ns.extend([gap_ns / new_tokens] * new_tokens)
                else:
                    stream.itl_ns.append(gap_ns)
            if stream.first_ns is None:
                stream.first_ns = arrival_ns
            stream.last_ns = arrival_ns
            stream.output_chunks += 1

    def _finish(self, stream: _Stream, url: str) -> tuple[Generation, StreamTiming]:
        if not stream.done:
            raise EngineError(
                f"{self._spec}: the stream from {url} ended without 'data: [DONE]' after "
                f"{stream.output_chunks} output chunk(s); did the server die mid-response?"
            )
        usage = stream.usage
        if usage is None:
            raise EngineError(
                f"{self._spec}: {url} sent no usage; the engine needs a server that honours "
                f"stream_options.include_usage (token counts are never re-tokenized)"
            )
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
            raise EngineError(
                f"{self._spec}: malformed usage from {url}: {_shorten(json.dumps(usage))}"
            )
        if stream.finish_reason is None:
            raise EngineError(f"{self._spec}: the stream from {url} never gave a finish_reason")
        finish_reason = FINISH_REASONS.get(stream.finish_reason)
        if finish_reason is None:
            raise EngineError(
                f"{self._spec}: {url} ended a generation with finish_reason="
                f"{stream.finish_reason!r}"
            )
        ttft_ms = e2e_ms = None
        if stream.first_ns is not None and stream.last_ns is not None:
            ttft_ms = (stream.first_ns - stream.start_ns) / 1e6
            e2e_ms = (stream.last_ns - stream.start_ns) / 1e6
        generation = Generation(
            text="".join(stream.text),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            e2e_ms=e2e_ms,
            ttft_ms=ttft_ms,
            tpot_ms=tpot_ms(e2e_ms, ttft_ms, completion_tokens),
            mean_logprob=(sum(stream.logprobs) / len(stream.logprobs) if stream.logprobs else None),
        )
        timing = StreamTiming(
            ttft_ms=ttft_ms,
            e2e_ms=e2e_ms,
            itl_ms=tuple(gap / 1e6 for gap in stream.itl_ns),
            output_chunks=stream.output_chunks,
            itl_per_token=self.settings.continuous_usage,
        )
        return generation, timing


def _sse_data(lines: Iterable[str]) -> Iterator[tuple[str, int]]:
    """The ``data`` of each server-sent event with its arrival time; comments skipped."""
    data: list[str] = []
    arrival_ns = 0
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data), arrival_ns
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment, often a keep-alive ping
        field_name, _, value = line.partition(":")
        if field_name == "data":
            if not data:
                arrival_ns = time.perf_counter_ns()
            data.append(value.removeprefix(" "))
    if data:  # a last event without its blank line
        yield "\n".join(data), arrival_ns


def _token_logprobs(logprobs: Any, chat: bool) -> list[float]:
    """The sampled tokens' log-probabilities in a chunk's ``logprobs``, in either API's form."""
    if not isinstance(logprobs, dict):
        return []
    if chat:
        entries = logprobs.get("content") or []
        values = [e.get("logprob") for e in entries if isinstance(e, dict)]
    else:
        values = logprobs.get("token_logprobs") or []
    return [float(v) for v in values if isinstance(v, int | float)]


class _Retryable(EngineError):
    """Failed before any output arrived, so another attempt measures a fresh request."""


class _Cancelled(EngineError):
    """A stream stopped because another stream of the same batch failed."""


def _first_error(failed: list[Future[tuple[Generation, StreamTiming]]]) -> BaseException:
    errors = [e for e in (f.exception() for f in failed) if e is not None]
    causes = [e for e in errors if not isinstance(e, _Cancelled)]
    return (causes or errors or [EngineError("a stream failed")])[0]


def _shorten(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."
