"""The asyncio client that keeps a load run's schedule against an OpenAI-compatible server.

One ``httpx.AsyncClient`` (one connection pool, no cap on connections, so a request is
never held back waiting for one) streams every request, as ``vllm bench serve`` does with
aiohttp. Requests are built and chunks timed by the ``openai`` engine's rules (the clock starts
when the request is sent; TTFT at the first chunk with output; TPOT from the server's
usage), here for an async stream. Each request's
send time is recorded against its scheduled time: its lateness.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_inferbudget.engines.openai_wire import SseEvents, choice_reasoning
from pytest_inferbudget.errors import EngineError
from pytest_inferbudget.load.schedule import Schedule, prompt_of
from pytest_inferbudget.records import LoadRequest, Request, tpot_ms

START_LEAD_S = 0.05
"""The schedule starts this long after the client is ready, so request 0 is not late."""


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, int]]:
    """The ``data`` of each server-sent event with its arrival time, from an async stream
    (the engine's framing, :class:`~pytest_inferbudget.engines.openai_wire.SseEvents`)."""
    events = SseEvents()
    async for line in lines:
        if (event := events.feed(line)) is not None:
            yield event
    if (event := events.end()) is not None:
        yield event


class HttpLoadClient:
    """Drives one schedule against the server an ``OpenAIEngine`` points at."""

    def __init__(self, engine: Any) -> None:
        """``engine``: an ``OpenAIEngine`` (its settings, model and headers are used; its
        own synchronous client is not)."""
        self.engine = engine
        self.settings = engine.settings

    def drive(
        self,
        schedule: Schedule,
        requests: Sequence[Request],
        *,
        max_drain_s: float | None,
    ) -> list[LoadRequest]:
        """Run the schedule; ``requests[p]`` is what prompt ``p`` sends."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._drive(schedule, requests, max_drain_s))
        raise EngineError(
            "load.run was called inside a running event loop; call it from a plain "
            "(synchronous) test function"
        )

    async def _drive(
        self, schedule: Schedule, requests: Sequence[Request], max_drain_s: float | None
    ) -> list[LoadRequest]:
        import httpx

        headers = dict(self.engine._client.headers)
        results: dict[int, LoadRequest] = {}
        started: dict[int, tuple[float, float]] = {}
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
            headers=headers,
        ) as client:
            t0_ns = time.perf_counter_ns() + int(START_LEAD_S * 1e9)
            tasks: list[asyncio.Task[None]] = []

            def launch(index: int, scheduled_s: float) -> None:
                prompt = prompt_of(schedule, index, len(requests))
                tasks.append(
                    asyncio.create_task(
                        self._one(
                            client,
                            index,
                            prompt,
                            requests[prompt],
                            scheduled_s,
                            t0_ns,
                            schedule.warmup,
                            results,
                            started,
                        )
                    )
                )

            if schedule.open_loop:
                for index, due in enumerate(schedule.times):
                    delay = (t0_ns + due * 1e9 - time.perf_counter_ns()) / 1e9
                    if delay > 0:
                        await asyncio.sleep(delay)
                    launch(index, due)
                end_ns = time.perf_counter_ns()
            else:
                end_ns = await self._closed_loop(schedule, launch, tasks, t0_ns, results)
            pending = {t for t in tasks if not t.done()}
            if pending:
                timeout = None
                if max_drain_s is not None:
                    timeout = max(0.0, max_drain_s - (time.perf_counter_ns() - end_ns) / 1e9)
                _, pending = await asyncio.wait(pending, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for index, (scheduled_s, sent_s) in started.items():
            if index not in results:
                results[index] = LoadRequest(
                    index=index,
                    prompt_index=prompt_of(schedule, index, len(requests)),
                    scheduled_s=scheduled_s,
                    sent_s=sent_s,
                    error=f"cancelled: still running {max_drain_s:g} s after the last arrival "
                    "(max_drain_s)",
                    warmup=index < schedule.warmup,
                )
        return [results[i] for i in sorted(results)]

    async def _closed_loop(
        self,
        schedule: Schedule,
        launch: Any,
        tasks: list[asyncio.Task[None]],
        t0_ns: int,
        results: dict[int, LoadRequest],
    ) -> int:
        """``concurrency`` in flight: a new request as soon as one finishes."""
        delay = (t0_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        concurrency = schedule.concurrency or 1
        total = len(schedule.prompts) if schedule.duration_s is None else None
        measure_start: float | None = None
        index = 0
        while True:
            now_s = (time.perf_counter_ns() - t0_ns) / 1e9
            if index == schedule.warmup and measure_start is None:
                measure_start = now_s
            if total is not None and index >= total:
                break
            if (
                schedule.duration_s is not None
                and measure_start is not None
                and now_s - measure_start >= schedule.duration_s
            ):
                break
            running = [t for t in tasks if not t.done()]
            if len(running) >= concurrency:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            launch(index, (time.perf_counter_ns() - t0_ns) / 1e9)
            index += 1
            await asyncio.sleep(0)
        return time.perf_counter_ns()

    async def _one(
        self,
        client: Any,
        index: int,
        prompt: int,
        request: Request,
        scheduled_s: float,
        t0_ns: int,
        warmup: int,
        results: dict[int, LoadRequest],
        started: dict[int, tuple[float, float]],
    ) -> None:
        import httpx

        url, body = self._payload(request)
        content = json.dumps(body).encode()
        stream = _Stream(time.perf_counter_ns())
        sent_s = (stream.start_ns - t0_ns) / 1e9
        started[index] = (scheduled_s, sent_s)
        base = LoadRequest(index, prompt, scheduled_s, sent_s, warmup=index < warmup)
        try:
            async with client.stream(
                "POST", url, content=content, headers={"Content-Type": "application/json"}
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise EngineError(
                        f"POST {url} answered HTTP {response.status_code}: {response.text[:300]}"
                    )
                async for data, arrival_ns in _sse_data(response.aiter_lines()):
                    if data == "[DONE]":
                        stream.done = True
                        break
                    stream.take(data, arrival_ns)
            stream.check(url)
        except (EngineError, httpx.HTTPError) as exc:
            done_s = (time.perf_counter_ns() - t0_ns) / 1e9
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
            results[index] = replace(base, done_s=done_s, error=f"{kind}: {exc}")
            return
        first, last = stream.first_ns, stream.last_ns
        ttft = None if first is None else (first - stream.start_ns) / 1e6
        e2e = None if last is None else (last - stream.start_ns) / 1e6
        done_ns = last if last is not None else time.perf_counter_ns()
        results[index] = replace(
            base,
            done_s=(done_ns - t0_ns) / 1e9,
            ttft_ms=ttft,
            tpot_ms=tpot_ms(e2e, ttft, stream.completion_tokens),
            e2e_ms=e2e,
            itl_ms=tuple(gap / 1e6 for gap in stream.itl_ns),
            prompt_tokens=stream.prompt_tokens,
            completion_tokens=stream.completion_tokens,
            text="".join(stream.text),
            finish_reason=FINISH_REASONS.get(stream.finish_reason or "", "stop"),
        )

    def _payload(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The streamed body of one request, as the ``openai`` engine sends it."""
        endpoint = self.settings.endpoint
        chat = request.chat if endpoint == "auto" else endpoint == "chat"
        body: dict[str, Any] = {"model": self.engine.model}
        if chat:
            prompt = request.prompt
            body["messages"] = (
                [{"role": "user", "content": prompt}]
                if isinstance(prompt, str)
                else [dict(m) for m in prompt]
            )
            path = "/chat/completions"
        else:
            body["prompt"] = str(request.prompt)
            path = "/completions"
        body.update(
            max_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stream=True,
            stream_options={"include_usage": True},
        )
        if request.seed is not None:
            body["seed"] = request.seed
        return self.settings.base_url + path, body


FINISH_REASONS = {"stop": "stop", "length": "length"}


@dataclass(slots=True)
class _Stream:
    """What one stream delivered; timed as the ``openai`` engine and vLLM's bench time it:
    an output chunk is one with text or a finish reason; ITLs are the gaps between them."""

    start_ns: int
    text: list[str] = field(default_factory=list)
    first_ns: int | None = None
    last_ns: int | None = None
    itl_ns: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage: bool = False
    done: bool = False

    def take(self, data: str, arrival_ns: int) -> None:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise EngineError(f"malformed stream: an event is not JSON: {data[:200]}") from exc
        if not isinstance(chunk, dict):
            raise EngineError(f"malformed stream: an event is not an object: {data[:200]}")
        if "error" in chunk or chunk.get("object") == "error":
            raise EngineError(f"the server reported an error mid-stream: {data[:300]}")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = True
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            finish = choice.get("finish_reason")
            if text:
                self.text.append(str(text))
            if finish is not None and self.finish_reason is None:
                self.finish_reason = str(finish)
            if not text and finish is None and not choice_reasoning(choice, streamed=True):
                continue  # the role-only first chunk of a chat stream (reasoning is output)
            if self.last_ns is not None:
                self.itl_ns.append(arrival_ns - self.last_ns)
            if self.first_ns is None:
                self.first_ns = arrival_ns
            self.last_ns = arrival_ns

    def check(self, url: str) -> None:
        if not self.done:
            raise EngineError(f"the stream from {url} ended without 'data: [DONE]'")
        if not self.usage:
            raise EngineError(
                f"{url} sent no usage; load runs need a server that honours "
                "stream_options.include_usage"
            )
