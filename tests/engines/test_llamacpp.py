"""The ``openai`` engine against llama.cpp's server (llama-cpp-python), for real, on the
GGUF file the default model comes from.

That server is the engine's test of a server unlike vLLM's: it sends no usage in its
streams (tokens are counted by the model's tokenizer, and labelled so) and ignores
``n`` (samples are fanned out as concurrent streams). The example suites run through it
unchanged.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.records import Request
from pytest_inferbudget.servers import (
    LLAMACPP_ARGS,
    SERVED_MODEL_NAME,
    LlamaCppServer,
    packaged_gguf,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CAPITAL = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def llamacpp_engine(llamacpp_server: str) -> Iterator[OpenAIEngine]:
    engine = OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{llamacpp_server}"), print)
    yield engine
    engine.close()


def test_the_probe_finds_what_llamacpp_lacks(llamacpp_engine: OpenAIEngine) -> None:
    assert llamacpp_engine.model == SERVED_MODEL_NAME  # the fixture serves it under the alias
    capabilities = llamacpp_engine.capabilities()
    assert capabilities is not None
    assert not capabilities.stream_usage and capabilities.response_usage
    assert not capabilities.n
    assert capabilities.completions
    info = llamacpp_engine.describe()
    assert info["n"] == "one stream per sample (the server ignores n)"
    assert info["tokens"] == (
        "estimated: tokenizer smollm2-135m-instruct (the server sends no usage in streams)"
    )
    assert info["capabilities"]["summary"].startswith("usage in stream: no")


def test_tokens_come_from_the_tokenizer_and_timings_from_the_stream(
    llamacpp_engine: OpenAIEngine,
) -> None:
    greedy, cut = llamacpp_engine.generate(
        [Request(CAPITAL, max_new_tokens=16), Request("Tell me about the sea.", max_new_tokens=12)]
    )
    (g,), (c,) = greedy.generations, cut.generations
    assert "Paris" in g.text and g.finish_reason == "stop"
    assert (g.token_source, c.token_source) == ("tokenizer", "tokenizer")
    # the server made exactly max_tokens tokens: the re-tokenized text counts as many
    assert c.finish_reason == "length" and c.completion_tokens == 12
    assert c.ttft_ms is not None and c.e2e_ms is not None and c.tpot_ms is not None
    assert 0 < c.ttft_ms < c.e2e_ms
    assert c.tpot_ms == pytest.approx((c.e2e_ms - c.ttft_ms) / 11)
    (timing,) = llamacpp_engine.last_timings[1]
    # one token per chunk, and no usage per chunk: one gap per chunk, none split
    assert not timing.itl_per_token and len(timing.itl_ms) == timing.output_chunks - 1
    assert sum(timing.itl_ms) == pytest.approx(c.e2e_ms - c.ttft_ms)


def test_n_is_fanned_out_with_derived_seeds(llamacpp_engine: OpenAIEngine) -> None:
    request = Request("Name a fruit.", temperature=0.9, n=3, seed=7, max_new_tokens=12)
    (response,) = llamacpp_engine.generate([request])
    assert len(response.generations) == 3  # the server alone would have given one
    (timings,) = llamacpp_engine.last_timings
    assert len(timings) == 3 and all(t.ttft_ms is not None for t in timings)
    assert [g.ttft_ms for g in response.generations] == [t.ttft_ms for t in timings]
    capabilities = llamacpp_engine.capabilities()
    assert capabilities is not None
    if capabilities.seed:  # seeds seed + i: samples differ, and come back the same
        (again,) = llamacpp_engine.generate([request])
        assert again.texts == response.texts and len(set(response.texts)) > 1


@pytest.mark.model  # starts a second llama.cpp server, with its default settings
def test_a_server_that_cuts_streams_off_is_sent_one_at_a_time(tmp_path: Path) -> None:
    """llama-cpp-python's default ends a stream early when another request arrives; the
    probe sees it, and the engine's fanned-out samples then go one at a time."""
    args = list(LLAMACPP_ARGS)
    flag = args.index("--interrupt_requests")
    del args[flag : flag + 2]  # back to the server's default: interrupt
    server = LlamaCppServer(
        packaged_gguf(SERVED_MODEL_NAME, print), tmp_path / "log", extra_args=args
    )
    url = server.start()
    engine = OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{url}"), print)
    try:
        capabilities = engine.capabilities()
        assert capabilities is not None and not capabilities.concurrent
        request = Request("Name a fruit.", temperature=0.9, n=3, seed=1, max_new_tokens=8)
        start = time.perf_counter()
        (response,) = engine.generate([request])
        wall_ms = (time.perf_counter() - start) * 1000
    finally:
        engine.close()
        server.stop()
    assert len(response.generations) == 3
    assert all(g.finish_reason in ("stop", "length") for g in response.generations)
    # one at a time: each sample's clock starts when it is sent, after the one before it
    # ended, so their latencies add up within the call's wall time
    assert sum(g.e2e_ms or 0.0 for g in response.generations) <= wall_ms


def copy_examples(pytester: pytest.Pytester, *names: str) -> None:
    for name in names:
        shutil.copy(EXAMPLES / name, pytester.path / name)
    shutil.copytree(EXAMPLES / "data", pytester.path / "data")


def run_examples(
    pytester: pytest.Pytester, url: str, *names: str, **outcomes: int
) -> dict[str, Any]:
    """Run example files on an ``openai`` engine at ``url``; the JSON report. The summary
    says what the server lacks and that the token counts were estimated."""
    copy_examples(pytester, *names)
    result = pytester.runpytest(
        f"--inferbudget-engine=openai:{url}", "--inferbudget-json=r.json", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(**outcomes)
    result.stdout.fnmatch_lines(
        [
            "server: usage in stream: no, usage unstreamed: yes, n: ignored, *",
            "tokens: estimated: tokenizer smollm2-135m-instruct (the server sends no usage*",
            "token counts of * generation(s) are estimated by re-tokenizing*",
        ]
    )
    report: dict[str, Any] = json.loads((pytester.path / "r.json").read_text())
    return report


def generations(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        g
        for t in report["tests"]
        for trace in t["traces"]
        for r in trace["responses"]
        for g in r["generations"]
    ]


def test_the_efficiency_suite_example_passes_on_llamacpp(
    pytester: pytest.Pytester, llamacpp_server: str
) -> None:
    report = run_examples(
        pytester, llamacpp_server, "test_efficiency_suite.py", passed=5, xfailed=1
    )
    assert report["engine"]["tokens"].startswith("estimated: tokenizer")
    assert report["engine"]["capabilities"]["stream_usage"] is False
    assert {g["token_source"] for g in generations(report)} == {"tokenizer"}
    sampled = next(t for t in report["tests"] if "sampling_four" in t["nodeid"])
    (trace,) = sampled["traces"]
    four = trace["responses"][0]["generations"]
    assert len(four) == 4 and all(g["ttft_ms"] is not None for g in four)


def test_the_strategy_examples_pass_on_llamacpp(
    pytester: pytest.Pytester, llamacpp_server: str
) -> None:
    report = run_examples(pytester, llamacpp_server, "test_strategies.py", passed=4)
    assert {g["token_source"] for g in generations(report)} == {"tokenizer"}
    consistency = next(t for t in report["tests"] if "self_consistency" in t["nodeid"])
    # three votes per sum, each its own stream on a server that ignores n
    assert all(len(trace["responses"][0]["generations"]) == 3 for trace in consistency["traces"])
