"""A load run on the in-process vLLM engine: requests added to it at their arrival times.

The ``vllm`` engine steps ``llm.llm_engine`` by hand; so does this driver, with one
difference: requests are not all added at the start but when their scheduled time comes,
between engine steps, so the engine batches them continuously as a server would. A step
cannot be interrupted, so a request due mid-step is added when the step ends: its latency
clock starts at its *scheduled* time (the run's ``clock`` is ``scheduled``), as a server's
would when the request reached it mid-step, and the wait is counted. Prompts are
tokenized with the engine's own code before the run starts; token timestamps are taken
when a step's outputs reach this process, as the engine does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_inferbudget.engines.openai_wire import output_chunk_gaps
from pytest_inferbudget.errors import EngineError
from pytest_inferbudget.load.schedule import Schedule, prompt_of
from pytest_inferbudget.records import LoadRequest, Request, tpot_ms


@dataclass(slots=True)
class _Active:
    index: int
    prompt: int
    scheduled_ns: int
    sent_ns: int
    prompt_tokens: int
    tokens: int = 0
    text: list[str] = field(default_factory=list)
    first_ns: int | None = None
    last_ns: int | None = None
    itl_ns: list[float] = field(default_factory=list)
    finish_reason: str = ""


class InProcessVllmDriver:
    """Drives one schedule through a ``VllmEngine`` (its vLLM engine, tokenizer and
    sampling parameters)."""

    def __init__(self, engine: Any) -> None:
        if getattr(engine, "_llm", None) is None:
            raise EngineError(f"{engine.spec}: the vLLM engine is closed")
        self.engine = engine
        self.core = engine._llm.llm_engine

    def drive(
        self, schedule: Schedule, requests: Sequence[Request], *, max_drain_s: float | None
    ) -> list[LoadRequest]:
        prompt_ids: dict[int, list[int]] = {}
        params: dict[int, Any] = {}

        def prepare(prompt: int) -> None:
            if prompt not in prompt_ids:
                prompt_ids[prompt] = self.engine._prompt_ids(requests[prompt])
                params[prompt] = self.engine._sampling_params(requests[prompt])

        for prompt in set(schedule.prompts):
            prepare(prompt)
        active: dict[str, _Active] = {}
        results: dict[int, LoadRequest] = {}
        t0_ns = time.perf_counter_ns()
        next_index = 0
        arrivals_end_ns: int | None = None
        measure_start_ns: int | None = None
        total = len(schedule.prompts) if schedule.open_loop or schedule.duration_s is None else None

        def add(index: int, scheduled_ns: int) -> None:
            prompt = prompt_of(schedule, index, len(requests))
            prepare(prompt)
            request_id = next(self.engine._request_ids)
            sent_ns = time.perf_counter_ns()
            self.core.add_request(
                request_id, {"prompt_token_ids": prompt_ids[prompt]}, params[prompt]
            )
            active[request_id] = _Active(
                index, prompt, scheduled_ns, sent_ns, len(prompt_ids[prompt])
            )

        try:
            while True:
                now = time.perf_counter_ns()
                if schedule.open_loop:
                    while next_index < len(schedule.times) and (
                        t0_ns + int(schedule.times[next_index] * 1e9) <= now
                    ):
                        add(next_index, t0_ns + int(schedule.times[next_index] * 1e9))
                        next_index += 1
                    more = next_index < len(schedule.times)
                else:
                    if next_index == schedule.warmup and measure_start_ns is None:
                        measure_start_ns = now
                    more = (total is None or next_index < total) and not (
                        schedule.duration_s is not None
                        and measure_start_ns is not None
                        and (now - measure_start_ns) / 1e9 >= schedule.duration_s
                    )
                    while more and len(active) < (schedule.concurrency or 1):
                        add(next_index, now)
                        next_index += 1
                        more = total is None or next_index < total
                if not more and arrivals_end_ns is None:
                    arrivals_end_ns = time.perf_counter_ns()
                if active:
                    self._step(active, results, t0_ns, schedule.warmup)
                elif more and schedule.open_loop:
                    due = t0_ns + int(schedule.times[next_index] * 1e9)
                    time.sleep(max(0.0, (due - time.perf_counter_ns()) / 1e9))
                elif not more:
                    break
                if (
                    active
                    and not more
                    and arrivals_end_ns is not None
                    and max_drain_s is not None
                    and (time.perf_counter_ns() - arrivals_end_ns) / 1e9 > max_drain_s
                ):
                    self._cancel(active, results, t0_ns, schedule.warmup, max_drain_s)
                    break
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.core.abort_request(list(active))
            if isinstance(exc, EngineError) or not isinstance(exc, Exception):
                raise
            raise EngineError(f"{self.engine.spec}: load run failed: {exc}") from exc
        return [results[i] for i in sorted(results)]

    def _step(
        self, active: dict[str, _Active], results: dict[int, LoadRequest], t0_ns: int, warmup: int
    ) -> None:
        outputs = self.core.step()
        now = time.perf_counter_ns()
        for output in outputs:
            state = active.get(output.request_id)
            if state is None:
                continue
            for completion in output.outputs:
                if completion.token_ids:
                    gap = None if state.last_ns is None else float(now - state.last_ns)
                    # a step of k tokens (speculative decoding) is k gaps, not one long one
                    state.itl_ns.extend(output_chunk_gaps(gap, len(completion.token_ids)))
                    state.tokens += len(completion.token_ids)
                    if state.first_ns is None:
                        state.first_ns = now
                    state.last_ns = now
                state.text.append(completion.text)
                if completion.finish_reason is not None:
                    state.finish_reason = str(completion.finish_reason)
                    del active[output.request_id]
                    results[state.index] = self._record(state, t0_ns, warmup, now)
                    break

    def _record(self, state: _Active, t0_ns: int, warmup: int, done_ns: int) -> LoadRequest:
        start = state.scheduled_ns
        ttft = None if state.first_ns is None else (state.first_ns - start) / 1e6
        e2e = None if state.last_ns is None else (state.last_ns - start) / 1e6
        return LoadRequest(
            index=state.index,
            prompt_index=state.prompt,
            scheduled_s=(state.scheduled_ns - t0_ns) / 1e9,
            sent_s=(state.sent_ns - t0_ns) / 1e9,
            done_s=((state.last_ns or done_ns) - t0_ns) / 1e9,
            ttft_ms=ttft,
            tpot_ms=tpot_ms(e2e, ttft, state.tokens),
            e2e_ms=e2e,
            itl_ms=tuple(gap / 1e6 for gap in state.itl_ns),
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.tokens,
            text="".join(state.text),
            finish_reason=state.finish_reason,
            warmup=state.index < warmup,
        )

    def _cancel(
        self,
        active: dict[str, _Active],
        results: dict[int, LoadRequest],
        t0_ns: int,
        warmup: int,
        max_drain_s: float,
    ) -> None:
        with contextlib.suppress(Exception):
            self.core.abort_request(list(active))
        for state in active.values():
            results[state.index] = LoadRequest(
                index=state.index,
                prompt_index=state.prompt,
                scheduled_s=(state.scheduled_ns - t0_ns) / 1e9,
                sent_s=(state.sent_ns - t0_ns) / 1e9,
                error=f"cancelled: still running {max_drain_s:g} s after the last arrival "
                "(max_drain_s)",
                warmup=state.index < warmup,
            )
        active.clear()
