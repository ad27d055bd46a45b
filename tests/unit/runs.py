"""Synthetic run records for the comparison and report tests: lognormal timings, fixed seeds."""

from __future__ import annotations

import math
import random
from typing import cast

from pytest_inferbudget.records import (
    Comparison,
    EngineInfo,
    Generation,
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
TIMED_AND_TOKENS = ("ms_per_request", "ttft_ms", "tpot_ms", "tokens_per_request")


# --------------------------------------------------------------------------- builders


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
) -> TestRecord:
    """``n`` one-generation traces with lognormal ttft, tpot and end-to-end time."""
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
        generation = Generation(text, 12, count, "stop", e2e, ttft, tpot)
        request = Request(f"question {i}", max_new_tokens=256, temperature=0.0 if greedy else 0.7)
        traces.append(Trace((Response(request, (generation,), engine=ENGINE["spec"]),)))
    return TestRecord(nodeid, traces=traces, outcome="passed")


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
