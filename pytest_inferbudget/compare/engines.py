"""An engine sweep's comparison: every engine's figures per test and in total, the best
marked, and the ``relative_to_best`` limits judged against the best engine.

Pure functions of the run's records: each :class:`TestRecord` names the engine that ran
it (``engine``), and a test's id less that engine's id groups its runs across engines.
Throughput is output tokens over the wall time of the test's engine calls (the machine
meter's windows), so a batch of requests served together counts once, not per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_inferbudget.budget import KEYS
from pytest_inferbudget.metrics.stats import summarize
from pytest_inferbudget.records import TestRecord, Trace
from pytest_inferbudget.records.sweep import (
    SWEEP_STATS,
    THROUGHPUT_KEY,
    EngineFigures,
    EngineSweep,
    RelativeLimit,
    RelativeResult,
    SweepRow,
)
from pytest_inferbudget.verdicts import samples_of
from pytest_inferbudget.vocabulary import Direction, Verdict

__all__ = [
    "engine_figures",
    "engine_sweep",
    "group_id",
    "judge_relative",
    "mark_best",
    "relative_gate",
    "unjudged_failures",
]


def group_id(nodeid: str, engine: str) -> str:
    """The test's id without its engine: ``t.py::test_a[eng-3]`` -> ``t.py::test_a[3]``,
    ``t.py::test_a[eng]`` -> ``t.py::test_a``; the id itself when it names no engine."""
    head, bracket, params = nodeid.partition("[")
    if not engine or not bracket or not params.endswith("]"):
        return nodeid
    ids = params[:-1]
    if ids == engine:
        return head
    if ids.startswith(f"{engine}-"):
        return f"{head}[{ids[len(engine) + 1 :]}]"
    if ids.endswith(f"-{engine}"):
        return f"{head}[{ids[: -len(engine) - 1]}]"
    if f"-{engine}-" in ids:
        return f"{head}[{ids.replace(f'-{engine}-', '-', 1)}]"
    return nodeid


def engine_figures(engine: str, tests: Sequence[TestRecord]) -> EngineFigures:
    """One engine's throughput, latency and tokens over ``tests`` (one or all of its)."""
    traces = [t for test in tests for t in test.traces]
    completion = sum(t.completion_tokens for t in traces)
    served = [test for test in tests if test.traces]  # a test that failed before any call
    windows = [test.machine.window_s for test in served if test.machine is not None]
    timed = len(windows) == len(served) and bool(windows) and sum(windows) > 0
    busy_s = math.fsum(windows) if timed else None
    return EngineFigures(
        engine=engine,
        requests=len(traces),
        prompt_tokens=sum(t.prompt_tokens for t in traces),
        completion_tokens=completion,
        busy_s=busy_s,
        tokens_per_s=completion / busy_s if busy_s else None,
        ms_per_request=_stats(samples_of("ms_per_request", traces)),
        ttft_ms=_stats(samples_of("ttft_ms", traces)),
    )


def _stats(samples: Sequence[float]) -> dict[str, float]:
    return {stat: summarize(samples, stat) for stat in SWEEP_STATS} if samples else {}


def mark_best(figures: Sequence[EngineFigures]) -> list[EngineFigures]:
    """The same figures, the best one marked: highest throughput, then lowest mean latency
    (an engine with neither measured is never best)."""

    def rank(f: EngineFigures) -> tuple[float, float]:
        throughput = f.tokens_per_s if f.tokens_per_s is not None else -math.inf
        latency = f.ms_per_request.get("mean", math.inf)
        return (-throughput, latency)

    measured = [f for f in figures if f.tokens_per_s is not None or f.ms_per_request]
    best = min(measured, key=rank) if measured else None
    return [_with_best(f, f is best) for f in figures]


def _with_best(f: EngineFigures, best: bool) -> EngineFigures:
    return EngineFigures(
        f.engine,
        f.requests,
        f.prompt_tokens,
        f.completion_tokens,
        f.busy_s,
        f.tokens_per_s,
        f.ms_per_request,
        f.ttft_ms,
        best,
    )


def _groups(tests: Sequence[TestRecord]) -> dict[str, dict[str, list[TestRecord]]]:
    """Test id without engine -> engine id -> its records (in run order)."""
    groups: dict[str, dict[str, list[TestRecord]]] = {}
    for test in tests:
        if test.engine:
            key = group_id(test.nodeid, test.engine)
            groups.setdefault(key, {}).setdefault(test.engine, []).append(test)
    return groups


def engine_sweep(
    tests: Sequence[TestRecord], engines: Mapping[str, Mapping[str, Any]]
) -> EngineSweep:
    """Every engine per test and in total (engines in the session's order), and every
    ``relative_to_best`` limit judged."""
    order = list(engines)
    groups = _groups(tests)
    rows = [
        SweepRow(
            name,
            mark_best([engine_figures(e, by_engine[e]) for e in order if e in by_engine]),
        )
        for name, by_engine in groups.items()
    ]
    total = mark_best([engine_figures(e, [t for t in tests if t.engine == e]) for e in order])
    relative = [r for name, by in groups.items() for r in judge_relative(name, by, order)]
    return EngineSweep(
        engines={k: dict(v) for k, v in engines.items()},
        tests=rows,
        total=total,
        relative=relative,
    )


def judge_relative(
    test: str, by_engine: Mapping[str, Sequence[TestRecord]], order: Sequence[str] = ()
) -> list[RelativeResult]:
    """Each engine's ``relative_to_best`` limits on one test against the best engine's
    figure: for a cost key (lower is better) ``measured <= factor x best``; for
    throughput (``tokens_per_s``, higher is better) ``measured >= best / factor``."""
    engines = [e for e in order if e in by_engine] + [e for e in by_engine if e not in order]
    limits: list[RelativeLimit] = []
    for e in engines:
        for record in by_engine[e]:
            limits += [lim for lim in record.relative_to_best if lim not in limits]
    results = []
    for limit in limits:
        values = {e: relative_value(limit, by_engine[e]) for e in engines}
        measured = {e: v for e, v in values.items() if v is not None}
        higher = limit.key == THROUGHPUT_KEY or KEYS[limit.key].direction is Direction.AT_LEAST
        best_engine = (max if higher else min)(measured, key=measured.__getitem__, default="")
        best = measured.get(best_engine)
        stat = _stat_of(limit)
        for e in engines:
            value = values[e]
            if value is None or best is None:
                verdict = Verdict.UNMEASURED
            elif higher:
                verdict = Verdict.PASS if value * limit.factor >= best else Verdict.FAIL
            else:
                verdict = Verdict.PASS if value <= best * limit.factor else Verdict.FAIL
            results.append(
                RelativeResult(
                    test, e, limit.key, stat, limit.factor, value, best, best_engine, verdict
                )
            )
    return results


def _stat_of(limit: RelativeLimit) -> str:
    if limit.key == THROUGHPUT_KEY:
        return "total"
    metric = KEYS[limit.key]
    return metric.fixed_stat or ("total" if metric.totals is not None else limit.stat)


def relative_value(limit: RelativeLimit, tests: Sequence[TestRecord]) -> float | None:
    """One engine's figure for a relative limit over its records of one test; None when
    nothing measured it."""
    if limit.key == THROUGHPUT_KEY:
        return engine_figures("", tests).tokens_per_s
    traces: list[Trace] = [t for test in tests for t in test.traces]
    metric = KEYS[limit.key]
    if metric.totals is not None:
        pairs = [metric.totals(t, "gross") for t in traces]
        if not pairs or any(num is None for num, _ in pairs):
            return None
        denominator = math.fsum(den for _, den in pairs)
        return math.fsum(num or 0.0 for num, _ in pairs) / denominator if denominator else None
    samples = samples_of(limit.key, traces)
    return summarize(samples, _stat_of(limit)) if samples else None


def relative_gate(
    record: TestRecord, earlier: Sequence[TestRecord], order: Sequence[str]
) -> tuple[set[str], str]:
    """Judge ``record``'s test once every engine of ``order`` has run it (``record`` being
    the last): the tests judged, and the failure text naming each engine too far from the
    best ("" when none is, or not every engine has run it yet)."""
    key = group_id(record.nodeid, record.engine)
    by_engine: dict[str, list[TestRecord]] = {}
    for test in [*earlier, record]:
        if test.engine and group_id(test.nodeid, test.engine) == key:
            by_engine.setdefault(test.engine, []).append(test)
    if set(by_engine) != set(order):
        return set(), ""
    failing = [r for r in judge_relative(key, by_engine, order) if r.verdict is Verdict.FAIL]
    lines = ["inferbudget: relative_to_best: engine(s) too far from the best of the sweep:"]
    return {key}, "\n".join(lines + [f"  {r.describe()}" for r in failing]) if failing else ""


def unjudged_failures(sweep: EngineSweep | None, judged: set[str]) -> str:
    """The run's error for ``relative_to_best`` failures of tests no test run judged (an
    engine's run deselected, or the engines spread over xdist workers)."""
    missed = [r for r in sweep.relative_failures if r.test not in judged] if sweep else []
    if not missed:
        return ""
    return "relative_to_best failed (judged at the end of the run):\n  " + "\n  ".join(
        r.describe() for r in missed
    )
