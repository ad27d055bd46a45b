"""Synthetic run records for the comparison and report tests: lognormal timings, fixed seeds."""

from __future__ import annotations

import math
import random
from typing import cast

from pytest_inferbudget.records import (
    Comparison,
    EngineInfo,
    Generation,
    MachineLoad,
    Request,
    Response,
    RunRecord,
    TestRecord,
    Trace,
)

HARDWARE = {"machine": "x86_64", "system": "Linux", "cpu_model": "Test CPU", "cpu_count": 2}
ENGINE = {"spec": "transformers:smollm2-135m-instruct", "engine": "transformers"}
XSS = "<script>alert(1)</script>"
TOKENS_METRIC = "tokens_per_request"
TIMED_AND_TOKENS = (
    "ms_per_request",
    "ttft_ms",
    "tpot_ms",
    "cpu_ms_per_request",
    "tokens_per_request",
)


# --------------------------------------------------------------------------- builders


def response(tokens: list[int], e2e: list[float | None], ttft: float | None = 10.0) -> Response:
    request = Request("q", temperature=0.5 if len(tokens) > 1 else 0.0, n=len(tokens))
    generations = tuple(
        Generation("a", 7, t, "stop", e, ttft, None) for t, e in zip(tokens, e2e, strict=True)
    )
    return Response(request, generations, "test:engine")


def trace(tokens: list[int], e2e: list[float | None], ttft: float | None = 10.0) -> Trace:
    return Trace((response(tokens, e2e, ttft),))


def make_test(
    nodeid: str,
    rng: random.Random,
    *,
    n: int = 30,
    slowdown: float = 1.0,
    sigma: float = 0.1,
    greedy: bool = True,
    tokens: list[int] | None = None,
    text: str = "The capital of France is Paris.",
    cpu_slowdown: float | None = None,
    other_cpu_share: float | None = None,
) -> TestRecord:
    """``n`` one-generation traces with lognormal ttft, tpot and end-to-end time, and CPU
    time per request stretched by ``cpu_slowdown`` (default: as the wall clock); with
    ``other_cpu_share``, the machine load the test saw."""
    traces = []
    for i in range(n):
        if tokens is not None:
            count = tokens[i]
        elif greedy:
            count = 20 + i % 7  # a greedy answer's length depends on its prompt only
        else:
            count = max(2, round(rng.lognormvariate(math.log(120), sigma)))
        ttft = rng.lognormvariate(math.log(40.0), sigma) * slowdown
        tpot = rng.lognormvariate(math.log(8.0), sigma) * slowdown
        e2e = rng.lognormvariate(math.log(200.0), sigma) * slowdown
        cpu = rng.lognormvariate(math.log(180.0), sigma) * (cpu_slowdown or slowdown)
        generation = Generation(text, 12, count, "stop", e2e, ttft, tpot)
        request = Request(f"question {i}", max_new_tokens=256, temperature=0.0 if greedy else 0.7)
        response = Response(request, (generation,), engine=ENGINE["spec"], cpu_ms=cpu)
        traces.append(Trace((response,)))
    machine = None
    if other_cpu_share is not None:
        window_s = 0.2 * n
        machine = MachineLoad(window_s, 2, 0.18 * n, other_cpu_share * window_s * 2, 0.0, 1.0)
    return TestRecord(nodeid, traces=traces, outcome="passed", machine=machine)


def make_run(
    *tests: TestRecord,
    run_id: str = "run",
    hardware: dict[str, object] | None = None,
    engine: dict[str, object] | None = None,
) -> dict[str, object]:
    record = RunRecord(
        run_id,
        "2026-01-01T00:00:00+00:00",
        engine=cast(EngineInfo, dict(ENGINE if engine is None else engine)),
        hardware=dict(HARDWARE if hardware is None else hardware),
        tests=list(tests),
    )
    return record.to_dict()


def change_of(comparison: Comparison, metric: str, nodeid: str = "t.py::test_a") -> str:
    (found,) = [c for c in comparison.changes if c.metric == metric and c.nodeid == nodeid]
    return found.verdict
