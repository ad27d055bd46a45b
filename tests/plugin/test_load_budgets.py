"""Load budgets through the plugin: marker keys checked at collection, judged on load runs
against a loopback stub server (no model), saturation made inconclusive, and the
transformers engine refused by the ``load`` fixture."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ReuseEngine
from tests.unit.load.stub_server import stub_server


@pytest.fixture
def stub() -> Iterator[str]:
    """An OpenAI-compatible stub: one stream at a time, 5 ms per token (about 40 req/s of
    capacity at 4 tokens), so that a high enough rate saturates it."""
    with stub_server(token_delay_s=0.005, max_streams=1) as url:
        yield url


def run_on(pytester: pytest.Pytester, url: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        f"--inferbudget-engine=openai:{url}?model=stub", "--inferbudget-json=r.json", *args
    )


def report(pytester: pytest.Pytester) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / "r.json").read_text())
    return data


def verdicts(test: dict[str, Any]) -> dict[str, str]:
    return {b["key"]: b["verdict"] for b in test["budgets"]}


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("attainment=0.9", "budget attainment needs slo=..."),
        ("goodput_rps=1", "budget goodput_rps needs slo=..."),
        ('slo={"ttft_ms": 500}', "slo= sets objectives but no limit on them"),
        ('slo={"ttft": 500}, attainment=0.9', "slo term 'ttft' is not one of ttft_ms"),
        ('slo={"ttft_ms": 0}, attainment=0.9', "must be a finite number above 0 (in ms)"),
        ('slo="mlperf-gpt5"', "is not a preset; presets: mlperf-llama2-70b"),
        ('slo={"ttft_ms": 500}, attainment=1.5', "is a share of requests: between 0 and 1"),
        ('slo={"ttft_ms": 500}, attainment=0.9, slo_requires_correct=1', "must be a bool"),
        ("slo_requires_correct=True, max_rate_rps=2", "slo_requires_correct=True needs slo="),
        ("max_rate=2", "did you mean 'max_rate_rps'?"),
    ],
)
def test_bad_load_keys_fail_collection_naming_the_key(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.budget({marker})
        def test_x(load):
            pass
        """
    )
    result = pytester.runpytest("--co")
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_load_budgets_pass_under_capacity_and_the_report_keeps_every_request(
    pytester: pytest.Pytester, stub: str
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(slo={"ttft_ms": 2000, "tpot_ms": 500}, attainment=0.9,
                            goodput_rps=2, good_tokens_per_s=8, ttft_ms=2000, stat="p90")
        def test_under_capacity(load):
            result = load.run(["a", "b"], rate=8, num_requests=24, warmup=2, max_new_tokens=4)
            assert not result.saturated and result.errors == 0
            assert result.attainment == 1.0
        """
    )
    result = run_on(pytester, stub)
    result.assert_outcomes(passed=1)
    (test,) = report(pytester)["tests"]
    assert verdicts(test) == dict.fromkeys(
        ["ttft_ms", "attainment", "goodput_rps", "good_tokens_per_s"], "pass"
    )
    (run,) = test["loads"]
    assert len(run["requests"]) == 26 and sum(r["warmup"] for r in run["requests"]) == 2
    assert run["rate"] == 8 and run["arrival"] == "poisson" and not run["saturation"]["saturated"]
    assert len(test["traces"]) == 24  # each measured request also samples ttft_ms
    result.stdout.fnmatch_lines(["*attainment*>= 0.9*pass*", "*goodput_rps*>= 2 req/s*pass*"])


def test_a_confident_attainment_is_judged_on_its_lower_bound(
    pytester: pytest.Pytester, stub: str
) -> None:
    # every request is good: 12 of 12 gives a 0.95 lower bound of 0.05^(1/12) = 0.78
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(slo={"e2e_ms": 10000}, attainment=0.7, confidence=0.95)
        def test_passes(load):
            load.run(["a"], rate=10, num_requests=12, max_new_tokens=2)

        @pytest.mark.budget(slo={"e2e_ms": 10000}, attainment=0.9, confidence=0.95)
        def test_too_few_to_tell(load):
            load.run(["a"], rate=10, num_requests=12, max_new_tokens=2)
        """
    )
    result = run_on(pytester, stub)
    result.assert_outcomes(passed=2, warnings=1)
    first, second = report(pytester)["tests"]
    assert verdicts(first) == {"attainment": "pass"}
    assert verdicts(second) == {"attainment": "inconclusive"}
    assert second["budgets"][0]["ci_low"] == pytest.approx(0.05 ** (1 / 12), abs=1e-6)


def test_a_saturated_run_leaves_latency_and_slo_budgets_inconclusive(
    pytester: pytest.Pytester, stub: str
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(slo={"ttft_ms": 100000}, attainment=0.5, ttft_ms=100000)
        def test_far_above_capacity(load):
            result = load.run(["a"], rate=300, duration_s=0.5, max_new_tokens=4, max_drain_s=5)
            assert result.saturated, result.saturation_reason
        """
    )
    result = run_on(pytester, stub)
    result.assert_outcomes(passed=1, warnings=1)
    (test,) = report(pytester)["tests"]
    assert verdicts(test) == {"ttft_ms": "inconclusive", "attainment": "inconclusive"}
    assert all("saturated" in b["reason"] for b in test["budgets"])
    result.stdout.fnmatch_lines(["*not judged: the load run at 300 req/s was saturated*"])
    strict = run_on(pytester, stub, "--inferbudget-strict")
    strict.assert_outcomes(failed=1)


def test_goodput_can_require_correct_answers(pytester: pytest.Pytester, stub: str) -> None:
    pytester.makepyfile(
        """
        import pytest

        SLO = {"ttft_ms": 5000}

        @pytest.mark.budget(slo=SLO, goodput_rps=0.1, slo_requires_correct=True)
        def test_unscored(load):
            load.run(["a"], rate=10, num_requests=4, max_new_tokens=2)

        @pytest.mark.budget(slo=SLO, attainment=0.5, slo_requires_correct=True)
        def test_half_correct(load):
            result = load.run(["a", "b"], rate=10, num_requests=8, max_new_tokens=2)
            load.score(result, correct=[r.prompt_index == 0 for r in result.requests])
            assert result.attainment == 0.5

        @pytest.mark.budget(slo=SLO, attainment=0.6, slo_requires_correct=True)
        def test_too_few_correct(load):
            result = load.run(["a", "b"], rate=10, num_requests=8, max_new_tokens=2)
            load.score(result, correct=lambda r: r.prompt_index == 0)
        """
    )
    result = run_on(pytester, stub)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*4 finished request(s) were not scored; call load.score*"])
    tests = {t["nodeid"].split("::")[1]: t for t in report(pytester)["tests"]}
    assert verdicts(tests["test_half_correct"]) == {"attainment": "pass"}
    assert len(tests["test_half_correct"]["scores"]) == 8
    assert verdicts(tests["test_too_few_correct"]) == {"attainment": "fail"}


def test_a_preset_implies_its_attainment_and_max_rate_judges_the_search(
    pytester: pytest.Pytester, stub: str
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(slo="mlperf-llama3.1-8b")
        def test_preset(load):
            load.run(["a"], rate=10, num_requests=10, max_new_tokens=2)

        @pytest.mark.budget(max_rate_rps=5)
        def test_capacity(load):
            found = load.find_max_rate(["a"], slo={"ttft_ms": 200}, attainment=0.9,
                                       start_rate=10, num_requests=12, max_new_tokens=4,
                                       precision=0.5, max_probes=5, max_drain_s=1)
            assert found.max_rate_rps is not None

        @pytest.mark.budget(max_rate_rps=5)
        def test_no_search(load):
            load.run(["a"], rate=10, num_requests=2, max_new_tokens=2)
        """
    )
    result = run_on(pytester, stub)
    result.assert_outcomes(passed=2, failed=1)
    tests = {t["nodeid"].split("::")[1]: t for t in report(pytester)["tests"]}
    (preset,) = tests["test_preset"]["budgets"]
    assert (preset["key"], preset["limit"], preset["verdict"]) == ("attainment", 0.99, "pass")
    (capacity,) = tests["test_capacity"]["budgets"]
    assert capacity["verdict"] == "pass" and capacity["measured"] >= 10
    (search,) = tests["test_capacity"]["capacity"]
    assert len(search["probes"]) == capacity["samples"] >= 2
    assert all(run["probe"] for run in tests["test_capacity"]["loads"])
    result.stdout.fnmatch_lines(["*the test ran no capacity search; call load.find_max_rate*"])


def test_the_transformers_engine_is_refused_naming_the_engines_that_work(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(slo={"ttft_ms": 500}, attainment=0.9)
        def test_load(load):
            load.run(["a"], rate=1, num_requests=2)
        """
    )
    result = pytester.runpytest(plugins=[reuse_engine])
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*cannot drive engine 'transformers:*no continuous batching*", "*the `openai` engine*"]
    )
