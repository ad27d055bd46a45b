"""Any OpenAI-compatible server over HTTP, streamed and timed as ``vllm bench serve`` does.

Spec: ``openai:URL[?model=NAME&...]``, URL being the server's API root (for example
``http://127.0.0.1:8000/v1``); without ``model`` the server's ``/models`` must list
exactly one.

Pure rules (events, chunks, who counts tokens) live in ``openai_wire``, what a server
supports in ``openai_probe``, the tokenizer fallback in ``openai_tokens``.

Longer than 500 lines because sending, timing and counting a request are one path through
the stream, with each server's variations (usage, ``n``, reasoning fields, ``/metrics``
counters) decided at the point they arise.

Each generation is one streamed request (``stream: true`` with
``stream_options.include_usage``). The clock starts just before the request is sent;
TTFT is the arrival of the first chunk that carries output (text, or a finish reason:
a first token that is EOS has no text); E2E is the last such chunk; TPOT is
``(E2E - TTFT) / (output tokens - 1)``. Output and prompt tokens come from the server's
usage; a server that sends none in its streams (llama.cpp's) is counted by the model's
tokenizer (``vllm bench serve``'s fallback), or, with no tokenizer, asked unstreamed
for its usage; every generation records which (``token_source``). Inter-token latencies
are the gaps between output chunks; with ``continuous_usage=true`` (a vLLM extension)
the server reports usage on every chunk, and a gap is split evenly over the tokens its
chunk carries. On first use the engine probes what the server supports
(:mod:`~pytest_inferbudget.engines.openai_probe`) and reports it in ``describe()``.

``n > 1`` is sent as ``n`` concurrent streams of one sample each, not as the server's
``n``: a stream with ``n`` choices reports usage only summed over its choices, so the
per-sample token counts (and so per-sample TPOT) would be lost, and many servers do
not implement ``n`` at all (the probe says whether this one does). With a seed, sample
``i`` is sent with ``seed + i``, as vLLM seeds the children of an ``n > 1`` request.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from pytest_inferbudget.engines import EngineSpec, Progress
from pytest_inferbudget.engines.openai_probe import (
    ProbeError,
    ServerCapabilities,
    cached_capabilities,
    probe_server,
)
from pytest_inferbudget.engines.openai_settings import (
    DEFAULT_BASE_URL,
    ENDPOINTS,
    OPTIONS,
    OpenAISettings,
)
from pytest_inferbudget.engines.openai_tokens import TokenCounter, token_counter
from pytest_inferbudget.engines.openai_wire import (
    FINISH_REASONS,
    StreamState,
    StreamTiming,
    answer_time_ms,
    count_reasoning_tokens,
    decode_event,
    sample_seed,
    shorten,
    split_completion,
    sse_data,
    streams_for,
    take_answer,
    take_chunk,
    token_logprobs,
    token_source,
    tokens_description,
    usage_counts,
)
from pytest_inferbudget.engines.top_logprobs import top_fields
from pytest_inferbudget.errors import EngineError, EngineUnavailableError
from pytest_inferbudget.metrics.reasoning import AnswerWatch
from pytest_inferbudget.records import EngineInfo, Generation, Request, Response, tpot_ms

_sse_data = sse_data  # the names other modules (the load driver) import from here
_token_logprobs = token_logprobs
_shorten = shorten
__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINTS",
    "FINISH_REASONS",
    "OPTIONS",
    "OpenAIEngine",
    "OpenAISettings",
    "StreamTiming",
]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that mean "not now" and come before any output, so a retry measures afresh."""
RETRY_BACKOFF_S = 0.5


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the openai engine needs httpx ({exc}); install it with "
            f"`pip install 'pytest-inferbudget[http]'`"
        ) from exc
    return httpx


SPEC_METRICS_NOTE = (
    "the server's /metrics spec_decode counters, read before and after each call and shared "
    "among its generations by completion tokens: approximate when others use the server"
)


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
        self._reasoning_delimiters = settings.reasoning
        self._counter: TokenCounter | None = None
        self._probe_failure = "not probed yet"
        self.last_timings: list[tuple[StreamTiming, ...]] = []
        """Per response of the last ``generate`` call, per sample: TTFT, E2E and ITLs."""

    @classmethod
    def from_spec(cls, spec: EngineSpec, progress: Progress) -> OpenAIEngine:
        settings = OpenAISettings.from_spec(spec)
        _import_httpx()
        engine = cls(settings.model or "", spec=str(spec), settings=settings)
        try:
            if settings.model is None:
                engine.model = engine._only_served_model()
            engine._counter = token_counter(
                settings.tokenizer, settings.tokens, engine.model, str(spec)
            )
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

    def capabilities(self) -> ServerCapabilities | None:
        """What the server supports, probed on first use and cached for the process; None
        when probing is off or the server could not be reached (tried again next time)."""
        if not self.settings.probe:
            self._probe_failure = "probe=false"
            return None
        count = None if self._counter is None else self._counter.length_tokens
        try:
            return cached_capabilities(
                (self.settings.base_url, self.model),
                lambda: probe_server(self._post_whole, self.model, count),
            )
        except (self._httpx.TransportError, ProbeError) as exc:  # requests will say more
            self._probe_failure = f"probe failed: {exc}"
            return None

    def _post_whole(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        """One probe request, read whole; transport failures propagate (nothing learned)."""
        answer = self._client.post(
            self.settings.base_url + path, json=body, timeout=min(self.settings.timeout_s, 30.0)
        )
        return answer.status_code, answer.text

    def _streamed(self, capabilities: ServerCapabilities | None) -> bool:
        return streams_for(
            self.settings.tokens,
            None if capabilities is None else capabilities.stream_usage,
            None if capabilities is None else capabilities.response_usage,
            self._counter is not None,
            f"{self._spec}: {self.settings.base_url}",
        )

    def describe(self) -> EngineInfo:
        """Settings, what the server supports, and what it says of the model (``GET
        /models``) if it answers."""
        capabilities = self.capabilities()
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
            "tokens": tokens_description(
                self.settings.tokens,
                lambda: self._streamed(capabilities),
                None if capabilities is None else capabilities.stream_usage,
                None if self._counter is None else self._counter.name,
            ),
            "capabilities": {"probed": False, "why": self._probe_failure}
            if capabilities is None
            else {"probed": True, **capabilities.to_dict(), "summary": capabilities.summary()},
        }
        if capabilities is not None and not capabilities.n:
            info["n"] = "one stream per sample (the server ignores n)"
        if self.settings.spec_metrics:
            info["speculative"] = {"counted": SPEC_METRICS_NOTE}
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
        capabilities = self.capabilities()
        streamed = self._streamed(capabilities)
        for request in requests:  # refuse a mismatched request before sending any
            raw = self._endpoint_for(request) == "completions"
            if raw and capabilities is not None and not capabilities.completions:
                raise EngineError(
                    f"{self._spec}: {self.settings.base_url} has no working /completions "
                    f"endpoint (probed), which a raw-text request (chat=False) needs; "
                    f"send chat requests to this server"
                )
        jobs = [(index, sample) for index, r in enumerate(requests) for sample in range(r.n)]
        counters = self._spec_counters() if self.settings.spec_metrics else None
        results: dict[tuple[int, int], StreamState] = {}
        cancel = threading.Event()
        limit = self.settings.max_concurrency
        if capabilities is not None and not capabilities.concurrent:
            limit = 1  # the server would cut a stream off when the next one arrives
        workers = max(1, min(limit, len(jobs)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inferbudget-http") as pool:
            futures: dict[Future[StreamState], tuple[int, int]] = {
                pool.submit(self._run, requests[index], sample, streamed, cancel): (index, sample)
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
        # tokens are counted once every stream is in, so counting never delays a stream
        generations = {
            key: self._generation(requests[key[0]], state, streamed)
            for key, state in results.items()
        }
        if counters is not None:
            from pytest_inferbudget.engines.speculative import with_server_counts

            generations = with_server_counts(generations, counters, self._spec_counters())
        self.last_timings = [
            tuple(results[(index, sample)].timing() for sample in range(r.n))
            for index, r in enumerate(requests)
        ]
        return [
            Response(
                request=r,
                generations=tuple(generations[(index, sample)] for sample in range(r.n)),
                engine=self._spec,
            )
            for index, r in enumerate(requests)
        ]

    def _spec_counters(self) -> dict[str, int]:
        from pytest_inferbudget.engines.speculative import read_server_counters

        return read_server_counters(self._client, self._httpx, self.settings.base_url, self._spec)

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

    def _payload(self, request: Request, sample: int, streamed: bool) -> tuple[str, dict[str, Any]]:
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
        if request.logprobs or request.top_logprobs:  # the sampled token's, and the top k
            if endpoint == "chat":
                body.update(logprobs=True, top_logprobs=request.top_logprobs)
            else:
                body["logprobs"] = request.top_logprobs
        body.update(
            max_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            n=1,
            stream=streamed,
        )
        if streamed:
            stream_options: dict[str, bool] = {"include_usage": True}
            if self.settings.continuous_usage:
                stream_options["continuous_usage_stats"] = True
            body["stream_options"] = stream_options
        seed = sample_seed(request.seed, sample)
        if seed is not None:
            body["seed"] = seed
        return self.settings.base_url + path, body

    def _run(
        self, request: Request, sample: int, streamed: bool, cancel: threading.Event
    ) -> StreamState:
        url, body = self._payload(request, sample, streamed)
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        attempt = 0
        while True:
            try:
                return self._attempt(url, content, headers, streamed, cancel, request.prefill)
            except _Retryable as exc:
                attempt += 1
                if attempt > self.settings.retries or cancel.is_set():
                    raise EngineError(
                        f"{exc} (gave up after {attempt} attempt(s); the spec's retries "
                        f"option allows more)"
                    ) from exc.__cause__
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))

    def _attempt(
        self,
        url: str,
        content: bytes,
        headers: dict[str, str],
        streamed: bool,
        cancel: threading.Event,
        prefill: str = "",
    ) -> StreamState:
        """One request, timed from its own start; refusals before any output retryable."""
        httpx = self._httpx
        delimiters = self._reasoning_delimiters
        state = StreamState(
            start_ns=time.perf_counter_ns(),
            per_chunk_usage=self.settings.continuous_usage,
            watch=None if delimiters is None else AnswerWatch(delimiters, prefill=prefill),
        )
        try:
            with self._client.stream("POST", url, content=content, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    message = (
                        f"{self._spec}: POST {url} answered HTTP {response.status_code}: "
                        f"{shorten(response.text)}"
                    )
                    if response.status_code in RETRY_STATUSES:
                        raise _Retryable(message)
                    raise EngineError(message)
                if not streamed:
                    body = response.read().decode(errors="replace")
                    arrival_ns = time.perf_counter_ns()
                    try:
                        answer = json.loads(body)
                    except ValueError as exc:
                        raise EngineError(
                            f"{self._spec}: malformed answer from {url}: not JSON ({exc}): "
                            f"{shorten(body)}"
                        ) from exc
                    take_answer(state, answer, body, arrival_ns, self._spec, url)
                    return state
                for data, arrival_ns in sse_data(response.iter_lines()):
                    if cancel.is_set():
                        raise _Cancelled(f"{self._spec}: cancelled after another stream failed")
                    if data == "[DONE]":
                        state.done = True
                        break
                    chunk = decode_event(data, self._spec, url)
                    take_chunk(state, chunk, data, arrival_ns, self._spec, url)
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
                f"{self._spec}: {url} broke off the stream after {state.output_chunks} output "
                f"chunk(s) ({exc}); did the server die?"
            ) from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"{self._spec}: POST {url} failed: {exc}") from exc
        if not state.done:
            raise EngineError(
                f"{self._spec}: the stream from {url} ended without 'data: [DONE]' after "
                f"{state.output_chunks} output chunk(s); did the server die mid-response?"
            )
        return state

    def _generation(self, request: Request, state: StreamState, streamed: bool) -> Generation:
        """A finished stream (or answer) as a record, its tokens counted by the most
        trusted source that has them."""
        url = f"{self.settings.base_url}/{'chat/completions' if request.chat else 'completions'}"
        if state.finish_reason is None:
            raise EngineError(f"{self._spec}: the stream from {url} never gave a finish_reason")
        finish_reason = FINISH_REASONS.get(state.finish_reason)
        if finish_reason is None:
            raise EngineError(
                f"{self._spec}: {url} ended a generation with finish_reason={state.finish_reason!r}"
            )
        if state.usage is not None and usage_counts(state.usage) is None:
            raise EngineError(
                f"{self._spec}: malformed usage from {url}: {shorten(json.dumps(state.usage))}"
            )
        counts = usage_counts(state.usage)
        text = "".join(state.text)
        reasoning = split_completion(state, text, self._reasoning_delimiters, request.prefill)
        source = token_source(
            self.settings.tokens,
            streamed,
            counts is not None,
            self._counter is not None,
            f"{self._spec}: {url}",
        )
        if source == "tokenizer":
            assert self._counter is not None  # token_source chose it only with a counter
            counts = (
                self._counter.prompt_tokens(request),
                self._counter.completion_tokens(text, finish_reason),
            )
        assert counts is not None  # token_source raised otherwise
        prompt_tokens, completion_tokens = counts
        timing = state.timing()  # an unstreamed answer has an end but no first token
        reasoning_tokens = count_reasoning_tokens(
            state, reasoning, text, completion_tokens, source, self._counter
        )
        return Generation(
            text=reasoning.answer,
            reasoning_text=reasoning.reasoning,
            reasoning_tokens=reasoning_tokens,
            ttfat_ms=answer_time_ms(state, reasoning, timing.ttft_ms),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            e2e_ms=timing.e2e_ms,
            ttft_ms=timing.ttft_ms,
            tpot_ms=tpot_ms(timing.e2e_ms, timing.ttft_ms, completion_tokens),
            mean_logprob=(sum(state.logprobs) / len(state.logprobs) if state.logprobs else None),
            token_source=source,
            **top_fields(state.top_logprobs, request.top_logprobs),
        )


class _Retryable(EngineError):
    """Failed before any output arrived, so another attempt measures a fresh request."""


class _Cancelled(EngineError):
    """A stream stopped because another stream of the same batch failed."""


def _first_error(failed: list[Future[StreamState]]) -> BaseException:
    errors = [e for e in (f.exception() for f in failed) if e is not None]
    causes = [e for e in errors if not isinstance(e, _Cancelled)]
    return (causes or errors or [EngineError("a stream failed")])[0]
