"""``load`` on real vLLM: a real ``vllm serve`` (the ``vllm_server`` fixture) through the
``openai`` engine, and the in-process ``vllm`` engine with requests added at their
arrival times. Budgets pass at a rate well under capacity; a rate far above it is flagged
saturated and its latency budgets are left inconclusive. Each run is seconds of load.

Capacity here (SmolLM2-135M on 2 CPU cores, 16 output tokens): a few requests per second;
1 req/s is well under it and 40 req/s far above it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.vllm import VllmEngine
from pytest_inferbudget.load.tester import LoadTester
from pytest_inferbudget.recorder import Recorder
from pytest_inferbudget.records import Request
from pytest_inferbudget.servers import SERVED_MODEL_NAME
from tests.conftest import ReuseEngine

VLLM_SPEC = "vllm:smollm2-135m-instruct?dtype=float32"

SUITE = """
import pytest

CAPITAL = "What is the capital of France? Answer in one word."
PROMPTS = [CAPITAL, "Write a haiku about the sea.", "What is 12 + 7?", "Name a fruit."]


def correct(request):
    # greedy SmolLM2 answers the capital right; the other prompts need any answer
    return "Paris" in request.text if request.prompt_index == 0 else bool(request.text.strip())


@pytest.mark.budget(slo={"ttft_ms": 5000, "tpot_ms": 1000}, attainment=0.9, goodput_rps=0.3,
                    good_tokens_per_s=2, slo_requires_correct=True)
@pytest.mark.budget(ttft_ms=5000, stat="p90")
def test_well_under_capacity(load):
    result = load.run(PROMPTS, rate=1.0, duration_s=6, warmup=1, seed=0, max_new_tokens=16)
    load.score(result, correct=correct)
    assert not result.saturated, result.saturation_reason
    assert result.errors == 0 and len(result.requests) >= 3
    assert result.attainment == 1.0
    print("FIGURES", result.figures())


@pytest.mark.budget(slo={"ttft_ms": 60000}, attainment=0.5, ttft_ms=60000)
def test_far_above_capacity(load):
    result = load.run(PROMPTS, rate=40.0, duration_s=2, seed=0, max_new_tokens=32,
                      max_drain_s=4)
    assert result.saturated, result.saturation_reason
    print("SATURATED", result.saturation_reason)
"""


def run_suite(pytester: pytest.Pytester, spec: str, *plugins: object) -> dict[str, Any]:
    """Both tests pass; the first's budgets pass, the second's are inconclusive (a
    warning) because its run was saturated. Returns the JSON report.

    Without a reused engine the suite runs in a subprocess: an in-process inner session
    that imports torch (the openai engine's tokenizer fallback may) has it dropped from
    ``sys.modules`` afterwards, and torch cannot be imported twice in one process."""
    pytester.makepyfile(test_serving_load=SUITE)
    args = (f"--inferbudget-engine={spec}", "--inferbudget-json=r.json", "-s")
    if plugins:
        result = pytester.runpytest(*args, plugins=list(plugins))
    else:
        result = pytester.runpytest_subprocess(*args, timeout=600)
    result.assert_outcomes(passed=2, warnings=1)
    report: dict[str, Any] = json.loads((pytester.path / "r.json").read_text())
    under, over = report["tests"]
    assert {b["key"]: b["verdict"] for b in under["budgets"]} == dict.fromkeys(
        ["attainment", "goodput_rps", "good_tokens_per_s", "ttft_ms"], "pass"
    )
    assert {b["key"]: b["verdict"] for b in over["budgets"]} == dict.fromkeys(
        ["attainment", "ttft_ms"], "inconclusive"
    )
    assert all("saturated" in b["reason"] for b in over["budgets"])
    # the JSON report keeps every request of every run, scored ones with their score
    (run,) = under["loads"]
    assert all(r["correct"] is True for r in run["requests"] if not r["warmup"])
    (saturated,) = over["loads"]
    assert saturated["saturation"]["saturated"]
    assert len(saturated["requests"]) > 40
    return report


def test_load_against_a_real_vllm_server(pytester: pytest.Pytester, vllm_server: str) -> None:
    report = run_suite(pytester, f"openai:{vllm_server}?model={SERVED_MODEL_NAME}")
    (run,) = report["tests"][0]["loads"]
    assert run["clock"] == "sent"
    lateness = [r["sent_s"] - r["scheduled_s"] for r in run["requests"]]
    assert max(lateness) < 0.5  # the async client keeps a 1 req/s schedule easily


@pytest.fixture(scope="module")
def vllm_engine() -> Iterator[VllmEngine]:
    engine = VllmEngine.from_spec(EngineSpec.parse(VLLM_SPEC), lambda line: None)
    yield engine
    engine.close()


def test_load_on_the_in_process_vllm_engine(
    pytester: pytest.Pytester, vllm_engine: VllmEngine
) -> None:
    report = run_suite(pytester, VLLM_SPEC, ReuseEngine(vllm_engine, VLLM_SPEC))
    (run,) = report["tests"][0]["loads"]
    assert run["clock"] == "scheduled"
    for request in run["requests"]:
        assert request["prompt_tokens"] > 0 and request["completion_tokens"] > 0
        assert 0 < request["ttft_ms"] <= request["e2e_ms"]


def test_capacity_search_on_the_in_process_vllm_engine(vllm_engine: VllmEngine) -> None:
    prompts = ["Write a haiku about the sea.", "Write a long story about a dragon."]
    # the SLO is relative to this machine: 2.5 x a request's end-to-end time alone, easy at
    # a request or so in flight, missed once many requests share every engine step
    alone = max(
        vllm_engine.generate([Request(p, max_new_tokens=32)])[0].e2e_ms or 0.0 for p in prompts
    )
    recorder = Recorder(vllm_engine)
    tester = LoadTester(vllm_engine, recorder)
    found = tester.find_max_rate(
        prompts,
        slo={"e2e_ms": 2.5 * alone},
        attainment=0.9,
        start_rate=1.0,
        duration_s=5,
        max_new_tokens=32,
        precision=0.5,
        max_probes=4,
        max_drain_s=3,
    )
    probes = found.search.probes
    print([(p.rate, round(p.attainment, 2), p.passed, p.saturated) for p in probes], alone)
    assert 2 <= len(probes) <= 4
    assert any(p.passed for p in probes) and any(p.passed is not True for p in probes)
    assert found.max_rate_rps is not None and found.max_rate_rps > 0
    assert found.max_rate_rps == max(p.rate for p in probes if p.passed)
    assert len(recorder.loads) == len(probes) and all(run.probe for run in recorder.loads)
