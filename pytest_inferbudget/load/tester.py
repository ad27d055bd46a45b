"""The ``load`` fixture's object: load runs and capacity searches on the session's engine.

Every run lands in the test's recorder: its record (every request, with its schedule and
lateness) for the load budgets and the reports, and each measured request that finished
as a trace of its own, so per-request budgets (``ttft_ms``, ``tpot_ms`` ...) sample it
and ``load.score`` can mark it correct.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pytest_inferbudget.load.result import LATENESS_TOLERANCE_MS, LoadResult
from pytest_inferbudget.load.schedule import LoadSpecError, Schedule, build_schedule
from pytest_inferbudget.load.slo import (
    Slo,
    run_duration,
    saturation,
)
from pytest_inferbudget.records import (
    Generation,
    LoadRequest,
    LoadRun,
    Request,
    Response,
)

if TYPE_CHECKING:
    from pytest_inferbudget.load.capacity import CapacityResult
    from pytest_inferbudget.recorder import Recorder

WORKING_ENGINES = (
    "the `openai` engine (a server with continuous batching, e.g. "
    "openai:http://127.0.0.1:8000/v1 or the `vllm_server` fixture's URL) or the in-process "
    "`vllm` engine (vllm:MODEL)"
)


class LoadUnsupportedError(LoadSpecError):
    """The session's engine cannot serve concurrent requests."""


class Driver(Protocol):
    def drive(
        self, schedule: Schedule, requests: Sequence[Request], *, max_drain_s: float | None
    ) -> list[LoadRequest]: ...


def make_driver(engine: Any) -> tuple[Driver, str]:
    """The driver for the session's engine and the clock it keeps, or a clear refusal."""
    from pytest_inferbudget.engines.openai import OpenAIEngine
    from pytest_inferbudget.engines.vllm import VllmEngine

    inner = engine
    for _ in range(4):  # engines wrapped by a conftest (an unclosable proxy) expose _engine
        if isinstance(inner, OpenAIEngine | VllmEngine) or not hasattr(inner, "_engine"):
            break
        inner = inner._engine
    if isinstance(inner, OpenAIEngine):
        from pytest_inferbudget.load.http import HttpLoadClient

        return HttpLoadClient(inner), "sent"
    if isinstance(inner, VllmEngine):
        from pytest_inferbudget.load.inprocess import InProcessVllmDriver

        return InProcessVllmDriver(inner), "scheduled"
    raise LoadUnsupportedError(
        f"the load fixture cannot drive engine {engine.spec!r}: it has no continuous "
        f"batching, so concurrent requests would only queue behind each other; use "
        f"{WORKING_ENGINES} (--inferbudget-engine)"
    )


class LoadTester:
    """The ``load`` fixture: drives the session's engine with many concurrent requests."""

    def __init__(
        self,
        engine: Any,
        recorder: Recorder,
        *,
        slo: Slo | None = None,
        confidence: float | None = None,
        attainment: float | None = None,
    ) -> None:
        self._driver, self._clock = make_driver(engine)
        self.engine_spec = str(engine.spec)
        self.recorder = recorder
        self.slo = slo
        """The budget marker's SLO: the default of ``run`` and ``find_max_rate``."""
        self.confidence = confidence
        self.attainment = attainment
        self._results: list[LoadResult] = []

    def run(
        self,
        prompts: Sequence[Any],
        *,
        rate: float | None = None,
        concurrency: int | None = None,
        arrival: str = "poisson",
        burstiness: float = 1.0,
        duration_s: float | None = None,
        num_requests: int | None = None,
        warmup: int = 0,
        seed: int = 0,
        order: str = "cycle",
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        chat: bool = True,
        slo: object = None,
        max_drain_s: float | None = None,
        lateness_tolerance_ms: float = LATENESS_TOLERANCE_MS,
    ) -> LoadResult:
        """Send ``prompts`` on a seeded schedule; see docs/load.md for every argument."""
        return self.execute(
            prompts,
            probe=False,
            slo=slo,
            max_drain_s=max_drain_s,
            lateness_tolerance_ms=lateness_tolerance_ms,
            request=dict(max_new_tokens=max_new_tokens, temperature=temperature, chat=chat),
            schedule=dict(
                rate=rate,
                concurrency=concurrency,
                arrival=arrival,
                burstiness=burstiness,
                duration_s=duration_s,
                num_requests=num_requests,
                warmup=warmup,
                seed=seed,
                order=order,
            ),
        )

    def execute(
        self,
        prompts: Sequence[Any],
        *,
        probe: bool,
        slo: object,
        max_drain_s: float | None,
        lateness_tolerance_ms: float,
        request: dict[str, Any],
        schedule: dict[str, Any],
    ) -> LoadResult:
        if isinstance(prompts, str) or not prompts:
            raise LoadSpecError("load.run takes a non-empty list of prompts")
        if max_drain_s is not None and not (
            isinstance(max_drain_s, int | float) and max_drain_s >= 0
        ):
            raise LoadSpecError(f"max_drain_s must be seconds >= 0 or None, got {max_drain_s!r}")
        plan = build_schedule(len(prompts), **schedule)
        requests = [Request(p if isinstance(p, str) else tuple(p), **request) for p in prompts]
        chosen_slo = self.slo if slo is None else Slo.parse(slo)
        records = self._driver.drive(plan, requests, max_drain_s=max_drain_s)
        record = LoadRun(
            engine=self.engine_spec,
            arrival=plan.arrival.value,
            rate=plan.rate,
            concurrency=plan.concurrency,
            burstiness=plan.burstiness,
            seed=plan.seed,
            max_new_tokens=requests[0].max_new_tokens,
            requests=tuple(records),
            duration_s=run_duration(records),
            saturation=saturation([r for r in records if not r.warmup], plan.open_loop),
            clock=self._clock,
            probe=probe,
        )
        result = LoadResult(record, chosen_slo, self.confidence, lateness_tolerance_ms)
        self.recorder.loads.append(record)
        if not probe:
            for item in record.measured:
                if item.ok:
                    response = _response(item, requests[item.prompt_index], self.engine_spec)
                    result.responses[item.index] = response
                    self.recorder.keep(response)
        self._results.append(result)
        return result

    def score(
        self,
        item: LoadRequest | LoadResult,
        *,
        correct: bool | Sequence[bool] | Callable[[LoadRequest], bool],
    ) -> None:
        """Mark a run's requests correct or not, as ``infer.score`` does, so that
        ``slo_requires_correct=True`` counts only requests both fast and correct.

        Give one request and a bool, or a whole result and a list (one per measured
        request) or a function of a request. A finished request's score also goes to
        ``infer.score``, so accuracy budgets (pass@k ...) see it.
        """
        if isinstance(item, LoadResult):
            measured = item.requests
            if callable(correct):
                marks = [bool(correct(r)) for r in measured]
            elif isinstance(correct, bool) or len(correct) != len(measured):
                raise ValueError(
                    f"this result holds {len(measured)} measured requests; pass correct=[...] "
                    "with one entry each, or a function of a request"
                )
            else:
                marks = [bool(c) for c in correct]
            for request, mark in zip(measured, marks, strict=True):
                self.score(request, correct=mark)
            return
        if not isinstance(correct, bool):
            raise TypeError(f"correct must be True or False for one request, got {correct!r}")
        for result in self._results:
            if any(r is item for r in result.record.requests):
                self._mark(result, item, correct)
                return
        raise ValueError("score() takes a request of a result returned by this test's load.run")

    def _mark(self, result: LoadResult, item: LoadRequest, correct: bool) -> None:
        old = result.record
        marked = dataclasses.replace(item, correct=correct)
        new = dataclasses.replace(
            old, requests=tuple(marked if r is item else r for r in old.requests)
        )
        result.record = new
        loads = self.recorder.loads
        loads[next(i for i, run in enumerate(loads) if run is old)] = new
        response = result.responses.get(item.index)
        if response is not None:
            self.recorder.score(response, correct=correct)

    def find_max_rate(
        self,
        prompts: Sequence[Any],
        *,
        slo: object = None,
        attainment: float | None = None,
        confidence: float | None = None,
        start_rate: float = 1.0,
        max_rate: float = 1000.0,
        precision: float = 0.1,
        max_probes: int = 10,
        duration_s: float | None = None,
        num_requests: int | None = None,
        warmup: int = 0,
        seed: int = 0,
        max_new_tokens: int = 32,
        max_drain_s: float | None = None,
    ) -> CapacityResult:
        """The highest Poisson rate at which ``attainment`` (default: the marker's, else
        0.9) of requests meet the SLO; see :mod:`pytest_inferbudget.load.capacity`."""
        from pytest_inferbudget.load.capacity import SearchSettings, find_max_rate

        chosen = self.slo if slo is None else Slo.parse(slo)
        if chosen is None:
            raise LoadSpecError(
                "find_max_rate needs an SLO: slo={...} here or in the budget marker"
            )
        settings = SearchSettings(
            slo=chosen,
            attainment=attainment if attainment is not None else (self.attainment or 0.9),
            confidence=confidence if confidence is not None else self.confidence,
            start_rate=start_rate,
            max_rate=max_rate,
            precision=precision,
            max_probes=max_probes,
        )
        if duration_s is None and num_requests is None:
            num_requests = 20
        schedule = dict(duration_s=duration_s, num_requests=num_requests, warmup=warmup, seed=seed)
        found = find_max_rate(
            lambda rate: self.execute(
                prompts,
                probe=True,
                slo=chosen,
                max_drain_s=max_drain_s,
                lateness_tolerance_ms=LATENESS_TOLERANCE_MS,
                request=dict(max_new_tokens=max_new_tokens),
                schedule=dict(rate=rate, **schedule),
            ),
            settings,
            first_run=len(self.recorder.loads),
        )
        self.recorder.capacity.append(found.search)
        return found


def _response(item: LoadRequest, request: Request, engine: str) -> Response:
    reason = item.finish_reason or (
        "length" if item.completion_tokens >= request.max_new_tokens else "stop"
    )
    generation = Generation(
        text=item.text,
        prompt_tokens=item.prompt_tokens,
        completion_tokens=item.completion_tokens,
        finish_reason=reason if reason in ("stop", "length") else "stop",
        e2e_ms=item.e2e_ms,
        ttft_ms=item.ttft_ms,
        tpot_ms=item.tpot_ms,
    )
    return Response(request=request, generations=(generation,), engine=engine)
