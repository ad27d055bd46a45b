"""SLO checks, attainment bounds, goodput and the saturation guard on built records."""

from __future__ import annotations

import math
import random

import pytest

from pytest_inferbudget.load.schedule import LoadSpecError, build_schedule
from pytest_inferbudget.load.slo import (
    Slo,
    binomial_bounds,
    lateness,
    meets,
    run_duration,
    saturation,
    summarize_slo,
)
from pytest_inferbudget.records import LoadRequest, LoadRun


def request(
    index: int = 0,
    *,
    ttft: float = 100.0,
    tpot: float = 10.0,
    tokens: int = 8,
    itl: tuple[float, ...] = (10.0,),
    error: str | None = None,
    correct: bool | None = None,
    sent: float = 0.0,
    done: float | None = 1.0,
) -> LoadRequest:
    e2e = ttft + tpot * (tokens - 1)
    return LoadRequest(
        index, 0, sent, sent, done, ttft, tpot, e2e, itl, 5, tokens, "x", "length", error,
        correct=correct,
    )  # fmt: skip


def run_of(requests: list[LoadRequest], duration: float = 10.0) -> LoadRun:
    return LoadRun("stub", "poisson", 1.0, None, 1.0, 0, 8, tuple(requests), duration)


def test_a_request_meets_an_slo_only_when_every_term_holds() -> None:
    slo = Slo.parse({"ttft_ms": 200, "tpot_ms": 20, "itl_ms": 50, "e2e_ms": 1000})
    assert meets(request(), slo)
    assert not meets(request(ttft=201), slo)
    assert not meets(request(tpot=21), slo)
    assert not meets(request(itl=(10.0, 51.0)), slo)  # one slow gap is enough
    assert not meets(request(ttft=900, tpot=20, tokens=8), slo)  # e2e 1040
    assert not meets(request(error="failed: HTTP 500"), slo)
    assert not meets(request(done=None), slo)  # never finished (cancelled)
    # a one-token answer has no TPOT, which vLLM's goodput counts as 0
    assert meets(request(tpot=500, tokens=1, itl=()), Slo.parse({"tpot_ms": 20}))


def test_correctness_is_required_only_when_asked() -> None:
    slo = Slo.parse({"ttft_ms": 200}, require_correct=True)
    assert meets(request(correct=True), slo)
    assert not meets(request(correct=False), slo)
    assert not meets(request(correct=None), slo)
    assert meets(request(correct=False), Slo.parse({"ttft_ms": 200}))


def test_presets_and_bad_terms() -> None:
    preset = Slo.parse("mlperf-llama3.1-8b")
    assert preset.terms == (("ttft_ms", 2000.0), ("tpot_ms", 100.0))
    assert Slo.parse("guidellm-chat").terms == (("ttft_ms", 200.0), ("itl_ms", 50.0))
    with pytest.raises(LoadSpecError, match="not a preset"):
        Slo.parse("mlperf-gpt5")
    with pytest.raises(LoadSpecError, match="is not one of ttft_ms"):
        Slo.parse({"ttft": 5})
    with pytest.raises(LoadSpecError, match="must be a number of ms > 0"):
        Slo.parse({"ttft_ms": -1})


def brute_lower(good: int, total: int, confidence: float) -> float:
    """The smallest p on a fine grid at which P(X >= good) exceeds 1 - confidence."""
    alpha = 1 - confidence
    for step in range(1, 100_000):
        p = step / 100_000
        tail = sum(
            math.comb(total, i) * p**i * (1 - p) ** (total - i) for i in range(good, total + 1)
        )
        if tail > alpha:
            return p
    return 1.0


@pytest.mark.parametrize(("good", "total"), [(18, 20), (95, 100), (5, 10)])
def test_attainment_bounds_are_clopper_pearson(good: int, total: int) -> None:
    lower, upper = binomial_bounds(good, total, 0.95)
    assert lower == pytest.approx(brute_lower(good, total, 0.95), abs=2e-5)
    assert lower < good / total < upper
    # the upper bound mirrors the lower bound of the failures
    assert 1 - upper == pytest.approx(binomial_bounds(total - good, total, 0.95)[0], abs=1e-9)


def test_all_good_has_the_closed_form_bound() -> None:
    # P(X = n) = p^n = alpha at the bound: p = alpha^(1/n)
    lower, upper = binomial_bounds(100, 100, 0.95)
    assert lower == pytest.approx(0.05 ** (1 / 100)) and upper == 1.0
    assert binomial_bounds(0, 10, 0.9)[0] == 0.0


def test_goodput_counts_good_requests_and_their_tokens_over_the_duration() -> None:
    requests = [request(i) for i in range(6)] + [request(6, ttft=5000), request(7, error="x")]
    run = run_of(requests, duration=4.0)
    summary = summarize_slo([run], Slo.parse({"ttft_ms": 1000}), confidence=0.9)
    assert (summary.total, summary.good, summary.errors) == (8, 6, 1)
    assert summary.attainment == pytest.approx(0.75)
    assert summary.goodput_rps == pytest.approx(6 / 4.0)
    assert summary.good_tokens_per_s == pytest.approx(6 * 8 / 4.0)
    assert summary.lower is not None and summary.lower < 0.75


def test_warmup_requests_count_in_no_figure() -> None:
    warm = LoadRequest(0, 0, 0.0, 0.0, 9.0, 9000.0, None, 9000.0, warmup=True)
    run = run_of([warm, request(1, sent=1.0, done=2.0)])
    assert summarize_slo([run], Slo.parse({"ttft_ms": 1000})).total == 1
    assert run_duration(run.requests) == pytest.approx(1.0)


def queue(rate: float, service_s: float, servers: int, n: int, seed: int = 0) -> list[LoadRequest]:
    """Poisson arrivals served first come first served by ``servers`` servers."""
    schedule = build_schedule(1, rate=rate, num_requests=n, seed=seed)
    free = [0.0] * servers
    rng = random.Random(seed)
    out = []
    for index, arrival in enumerate(schedule.times):
        slot = min(range(servers), key=free.__getitem__)
        start = max(arrival, free[slot])
        free[slot] = start + service_s * rng.uniform(0.8, 1.2)
        e2e = (free[slot] - arrival) * 1000
        out.append(LoadRequest(index, 0, arrival, arrival, free[slot], e2e, None, e2e))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_a_queue_under_capacity_is_not_saturated(seed: int) -> None:
    # capacity 4 servers / 0.5 s = 8 req/s; offered 4 req/s
    verdict = saturation(queue(4.0, 0.5, 4, 80, seed))
    assert not verdict.saturated, verdict.reason


@pytest.mark.parametrize("seed", range(5))
def test_a_queue_far_above_capacity_is_saturated(seed: int) -> None:
    # capacity 8 req/s; offered 24 req/s: completions keep up with about a third
    verdict = saturation(queue(24.0, 0.5, 4, 120, seed))
    assert verdict.saturated, verdict.reason
    assert verdict.completion_ratio is not None and verdict.completion_ratio < 0.6
    assert "over-saturated" in verdict.reason


def test_saturation_is_not_judged_on_too_few_arrivals_or_a_closed_loop() -> None:
    assert not saturation(queue(24.0, 0.5, 1, 6)).saturated
    assert "closed loop" in saturation(queue(24.0, 0.5, 1, 60), open_loop=False).reason


def test_lateness_says_whether_the_client_kept_the_schedule() -> None:
    on_time = [LoadRequest(i, 0, i * 0.1, i * 0.1 + 0.001, i * 0.1 + 0.5) for i in range(50)]
    late = [LoadRequest(i, 0, i * 0.1, i * 0.1 + 0.05, i * 0.1 + 0.5) for i in range(50)]
    kept = lateness(run_of(on_time), tolerance_ms=5.0)
    assert kept.kept and kept.p99_ms == pytest.approx(1.0)
    behind = lateness(run_of(late), tolerance_ms=5.0)
    assert not behind.kept and "could not keep the schedule" in behind.note
    in_process = lateness(
        LoadRun("vllm", "poisson", 1.0, None, 1.0, 0, 8, tuple(late), 5.0, clock="scheduled"),
        tolerance_ms=5.0,
    )
    assert "waited for the engine's step" in in_process.note
