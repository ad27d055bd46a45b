"""The load client and the ``load`` object against a loopback stub server (no model):
schedules kept, errors and cancellations counted as misses, scores, the capacity search,
and every run in the recorder for the budgets and the JSON report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.load.schedule import LoadSpecError
from pytest_inferbudget.load.slo import Slo
from pytest_inferbudget.load.tester import LoadTester, LoadUnsupportedError, make_driver
from pytest_inferbudget.recorder import Recorder
from pytest_inferbudget.records import LoadRun, TestRecord
from tests.unit.load.stub_server import stub_server

PROMPTS = ["one", "two", "three"]


def make_tester(url: str, slo: Slo | None = None) -> tuple[LoadTester, Recorder]:
    engine = OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{url}?model=stub"), print)
    recorder = Recorder(engine)
    return LoadTester(engine, recorder, slo=slo), recorder


@pytest.fixture
def fast() -> Iterator[str]:
    with stub_server(token_delay_s=0.001) as url:
        yield url


def test_an_open_loop_run_keeps_its_schedule_and_measures_every_request(fast: str) -> None:
    tester, recorder = make_tester(fast, Slo.parse({"ttft_ms": 2000, "tpot_ms": 500}))
    result = tester.run(PROMPTS, rate=40.0, num_requests=30, warmup=2, max_new_tokens=4)
    assert len(result.record.requests) == 32 and len(result.requests) == 30
    assert [r.prompt_index for r in result.record.requests[:4]] == [0, 1, 2, 0]
    assert all(r.ok and r.completion_tokens == 4 and r.text == "xxxx" for r in result.requests)
    for r in result.requests:
        assert r.ttft_ms is not None and r.e2e_ms is not None and 0 < r.ttft_ms <= r.e2e_ms
        assert len(r.itl_ms) == 3
    assert result.errors == 0 and not result.saturated
    assert result.attainment == 1.0
    assert result.goodput_rps == result.request_throughput
    late = result.lateness
    assert all(r.lateness_ms is not None and r.lateness_ms > -1 for r in result.requests)
    # the median, not the tail: a shared 2-core machine deschedules the client now and then
    assert late.p50_ms is not None and late.p50_ms < 50
    assert result.achieved_rate_rps is not None and 15 < result.achieved_rate_rps < 100
    # every run is in the recorder; every measured request a trace of its own
    assert recorder.loads == [result.record]
    assert len(recorder.traces) == 30
    assert recorder.traces[0].ttft_ms == result.requests[0].ttft_ms


def test_the_record_round_trips_through_json(fast: str) -> None:
    tester, recorder = make_tester(fast)
    tester.run(PROMPTS, rate=50.0, num_requests=5, max_new_tokens=2)
    record = TestRecord("t", loads=list(recorder.loads))
    again = TestRecord.from_dict(record.to_dict())
    assert again.loads == record.loads
    assert isinstance(again.loads[0], LoadRun)
    # a record saved before load runs existed still reads
    old = record.to_dict()
    del old["loads"]
    assert TestRecord.from_dict(old).loads == []


def test_a_closed_loop_keeps_its_concurrency(fast: str) -> None:
    tester, _ = make_tester(fast)
    result = tester.run(PROMPTS, arrival="closed", concurrency=3, num_requests=12, max_new_tokens=3)
    assert len(result.requests) == 12 and result.errors == 0
    assert "closed loop" in result.saturation_reason
    spans = [(r.sent_s, r.done_s) for r in result.requests]
    for t, _ in spans:
        assert t is not None
        in_flight = sum(1 for s, d in spans if s is not None and d is not None and s <= t < d)
        assert in_flight <= 3


def test_server_errors_count_as_misses_not_crashes() -> None:
    with stub_server(status=500) as url:
        tester, recorder = make_tester(url, Slo.parse({"ttft_ms": 1000}))
        result = tester.run(PROMPTS, rate=20.0, num_requests=6)
    assert result.errors == 6 and result.attainment == 0.0
    assert all("HTTP 500" in (r.error or "") for r in result.requests)
    assert recorder.traces == []


def test_requests_past_the_drain_limit_are_cancelled_and_miss() -> None:
    with stub_server(token_delay_s=0.05, max_streams=1) as url:
        tester, _ = make_tester(url, Slo.parse({"e2e_ms": 60_000}))
        result = tester.run(PROMPTS, rate=50.0, num_requests=10, max_new_tokens=10, max_drain_s=0.3)
    cancelled = [r for r in result.requests if (r.error or "").startswith("cancelled")]
    assert cancelled and all(r.done_s is None for r in cancelled)
    assert result.attainment is not None and result.attainment < 1.0


def test_scores_make_goodput_count_only_correct_requests(fast: str) -> None:
    tester, recorder = make_tester(fast, Slo.parse({"ttft_ms": 5000}, require_correct=True))
    result = tester.run(PROMPTS, rate=50.0, num_requests=6, max_new_tokens=2)
    tester.score(result, correct=lambda r: r.prompt_index != 1)
    assert [r.correct for r in result.requests] == [True, False, True, True, False, True]
    assert result.attainment == pytest.approx(4 / 6)
    assert recorder.loads[0] is result.record  # the recorder holds the scored record
    assert [s.correct for s in recorder.scores] == [True, False, True, True, False, True]
    with pytest.raises(ValueError, match="one entry each"):
        tester.score(result, correct=[True])
    with pytest.raises(TypeError, match="True or False"):
        tester.score(result.requests[0], correct=[True])


def test_find_max_rate_brackets_then_bisects_and_reports_every_probe() -> None:
    # one stream at a time, 4 tokens x 5 ms: some tens of req/s of capacity
    with stub_server(token_delay_s=0.005, max_streams=1) as url:
        tester, recorder = make_tester(url)
        found = tester.find_max_rate(
            PROMPTS,
            slo={"ttft_ms": 150},
            attainment=0.9,
            start_rate=10.0,
            num_requests=20,
            max_new_tokens=4,
            precision=0.25,
            max_drain_s=1.0,
        )
    rates = [p.rate for p in found.search.probes]
    assert rates[:2] == [10.0, 20.0]
    assert found.max_rate_rps is not None and 10.0 <= found.max_rate_rps < 200.0
    passing = [p.rate for p in found.search.probes if p.passed]
    failing = [p.rate for p in found.search.probes if p.passed is not True]
    assert failing, "the search must find a rate that fails"
    assert found.max_rate_rps == max(passing) < min(failing)
    assert recorder.capacity == [found.search]
    assert all(run.probe for run in recorder.loads) and len(recorder.loads) == len(rates)
    assert recorder.traces == []  # probes are not the test's requests


def test_bad_calls_name_the_fix(fast: str) -> None:
    tester, _ = make_tester(fast)
    with pytest.raises(LoadSpecError, match="non-empty list of prompts"):
        tester.run("hello", rate=1.0, num_requests=1)
    with pytest.raises(LoadSpecError, match="needs an SLO"):
        tester.find_max_rate(PROMPTS)


class NotAServer:
    spec = "transformers:smollm2-135m-instruct"


def test_an_engine_without_continuous_batching_is_refused_naming_the_ones_that_work() -> None:
    with pytest.raises(LoadUnsupportedError, match=r"the `openai` engine .* the in-process `vllm`"):
        make_driver(NotAServer())
