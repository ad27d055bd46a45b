"""The transformers engine on the real SmolLM2 model, on whatever device ``auto`` takes.

On CUDA the engine runs in bfloat16, whose rounding depends on the batch's shape: a greedy
row of a batch may then differ from the same prompt run alone, so exact token equality is
asserted in float32 only, and within :data:`BF16_TOKEN_TOLERANCE` in bfloat16 (see
docs/energy.md, "Token gates on GPU").
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pytest_inferbudget.engines import Engine
from pytest_inferbudget.engines.transformers import DEVICES, DTYPES, TransformersEngine
from pytest_inferbudget.records import Request, Response
from tests.engines.devices import auto_device_type, auto_dtype

BF16_TOKEN_TOLERANCE = 0.25
"""Largest relative change of a greedy row's completion tokens between batched and alone
in bfloat16, as docs/energy.md states it for token gates on GPU."""

CAPITAL = "What is the capital of France? Answer in one word."


def test_prompt_and_completion_tokens_are_exact(smollm_engine: Engine) -> None:
    tokenizer = smollm_engine.tokenizer  # type: ignore[attr-defined]
    response = smollm_engine.generate([Request(CAPITAL, max_new_tokens=32)])[0]
    generation = response.generations[0]
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": CAPITAL}], add_generation_prompt=True, tokenize=False
    )
    assert generation.prompt_tokens == len(tokenizer(templated, add_special_tokens=False).input_ids)
    assert generation.finish_reason == "stop"
    # the completion is its text's tokens plus the end-of-sequence token that stopped it
    text_ids = tokenizer(generation.text, add_special_tokens=False).input_ids
    assert generation.completion_tokens == len(text_ids) + 1
    assert "Paris" in generation.text


def test_batched_greedy_rows_equal_single_runs(smollm_engine: Engine) -> None:
    prompts = [CAPITAL, "Name a color.", "What is 3 + 4? Reply with a number only."]
    batch = smollm_engine.generate([Request(p, max_new_tokens=24) for p in prompts])
    exact = smollm_engine.describe()["dtype"] == "float32"
    for prompt, batched in zip(prompts, batch, strict=True):
        alone = smollm_engine.generate([Request(prompt, max_new_tokens=24)])[0]
        assert batched.prompt_tokens == alone.prompt_tokens
        if exact:
            assert batched.text == alone.text
            assert batched.completion_tokens == alone.completion_tokens
        else:
            change = abs(batched.completion_tokens - alone.completion_tokens)
            assert change <= BF16_TOKEN_TOLERANCE * alone.completion_tokens


def test_timings_follow_vllm_definitions(smollm_engine: Engine) -> None:
    response = smollm_engine.generate([Request("Write a haiku about the sea.", max_new_tokens=24)])[
        0
    ]
    g = response.generations[0]
    assert g.completion_tokens > 1
    assert g.e2e_ms is not None and g.ttft_ms is not None and g.tpot_ms is not None
    assert 0 < g.ttft_ms < g.e2e_ms
    assert g.tpot_ms == pytest.approx((g.e2e_ms - g.ttft_ms) / (g.completion_tokens - 1))


def test_length_limit_sets_finish_reason(smollm_engine: Engine) -> None:
    g = smollm_engine.generate([Request("Write a haiku about the sea.", max_new_tokens=5)])[0]
    assert g.generations[0].finish_reason == "length"
    assert g.completion_tokens == 5


def test_single_token_completion_has_no_tpot(smollm_engine: Engine) -> None:
    g = smollm_engine.generate([Request(CAPITAL, max_new_tokens=1)])[0].generations[0]
    assert g.completion_tokens == 1
    assert g.tpot_ms is None
    assert g.ttft_ms == g.e2e_ms


def test_seeded_sampling_is_reproducible_and_n_counts_every_sample(smollm_engine: Engine) -> None:
    request = Request("Name a fruit.", temperature=0.9, n=3, seed=7, max_new_tokens=12)
    first, second = (smollm_engine.generate([request])[0] for _ in range(2))
    assert len(first.generations) == 3
    assert first.texts == second.texts
    assert first.completion_tokens == sum(g.completion_tokens for g in first.generations)
    other_seed = smollm_engine.generate(
        [Request("Name a fruit.", temperature=0.9, n=3, seed=8, max_new_tokens=12)]
    )[0]
    assert other_seed.texts != first.texts


def test_mixed_settings_in_one_call_keep_request_order(smollm_engine: Engine) -> None:
    requests = [
        Request(CAPITAL, max_new_tokens=16),
        Request("Name a fruit.", temperature=0.8, n=2, seed=1, max_new_tokens=8),
        Request("Name a color.", max_new_tokens=4),
    ]
    responses = smollm_engine.generate(requests)
    assert [r.request for r in responses] == requests
    assert [len(r.generations) for r in responses] == [1, 2, 1]
    assert responses[2].completion_tokens <= 4


def test_messages_and_raw_prompts(smollm_engine: Engine) -> None:
    messages = (
        {"role": "system", "content": "Reply in lowercase with one word, no punctuation."},
        {"role": "user", "content": "What animal says meow?"},
    )
    chat, raw = smollm_engine.generate(
        [
            Request(messages, max_new_tokens=16),
            Request("The capital of France is", chat=False, max_new_tokens=4),
        ]
    )
    assert "cat" in chat.text.lower()
    assert raw.generations[0].prompt_tokens == 5
    assert raw.completion_tokens == 4


def test_describe_names_model_device_dtype_and_what_keys_the_run(smollm_engine: Engine) -> None:
    import torch

    info = smollm_engine.describe()
    assert info["engine"] == "transformers"
    assert info["device"].partition(":")[0] == auto_device_type()
    assert info["dtype"] == auto_dtype()
    assert info["parameters"] > 100_000_000
    assert info["torch"] == torch.__version__ and info["transformers"]
    if auto_device_type() == "cuda":  # the meter finds its GPU by ordinal and UUID
        assert info["cuda_devices"] == [torch.device(info["device"]).index]
        assert info["gpu"] and info["cuda"] == torch.version.cuda
    else:
        assert info["threads"] == torch.get_num_threads()
        assert "cuda_devices" not in info and "gpu" not in info


def test_warm_up_runs_sampling_a_full_batch_and_log_probs(smollm_engine: Engine) -> None:
    engine = smollm_engine
    assert isinstance(engine, TransformersEngine)
    seen: list[Sequence[Request]] = []
    real = engine.generate

    def spy(requests: Sequence[Request]) -> list[Response]:
        seen.append(requests)
        return real(requests)

    engine.generate = spy  # type: ignore[method-assign]
    try:
        engine.warm_up()
    finally:
        del engine.generate  # back to the class's method
    requests = [r for call in seen for r in call]
    assert any(r.greedy for r in requests)
    sampled = [r for r in requests if not r.greedy]
    assert sampled and max(r.n for r in sampled) == engine.batch_size
    assert any(r.logprobs for r in sampled)


def test_gpu_memory_is_reported_on_cuda_only(smollm_engine: Engine) -> None:
    response = smollm_engine.generate([Request(CAPITAL, max_new_tokens=4)])[0]
    if auto_device_type() == "cuda":
        assert response.peak_gpu_memory_mb is not None and response.peak_gpu_memory_mb > 0
    else:
        assert response.peak_gpu_memory_mb is None


@pytest.mark.parametrize(
    ("option", "value", "accepted"), [("device", "gpu", DEVICES), ("dtype", "fp16", DTYPES)]
)
def test_bad_option_values_fail_before_loading(
    option: str, value: str, accepted: tuple[str, ...]
) -> None:
    from pytest_inferbudget.engines import EngineSpec
    from pytest_inferbudget.errors import EngineSpecError

    spec = EngineSpec.parse(f"transformers:smollm2-135m-instruct?{option}={value}")
    with pytest.raises(EngineSpecError) as raised:
        TransformersEngine.from_spec(spec, lambda line: None)
    message = str(raised.value)
    assert f"{option}={value!r} is not accepted" in message
    assert ", ".join(accepted) in message


def test_cuda_on_a_machine_without_it_says_so() -> None:
    if auto_device_type() == "cuda":
        pytest.skip("this machine has CUDA: device=cuda is accepted here")
    from pytest_inferbudget.engines import EngineSpec
    from pytest_inferbudget.errors import EngineSpecError

    spec = EngineSpec.parse("transformers:smollm2-135m-instruct?device=cuda:0")
    with pytest.raises(EngineSpecError, match=r"torch sees no CUDA GPU.*use device=cpu"):
        TransformersEngine.from_spec(spec, lambda line: None)


def test_prefill_is_continued_and_logprobs_are_the_models(smollm_engine: Engine) -> None:
    prefilled, plain = smollm_engine.generate(
        [
            Request(CAPITAL, prefill="The answer is", max_new_tokens=8, logprobs=True),
            Request(CAPITAL, max_new_tokens=16, logprobs=True),
        ]
    )
    assert not prefilled.text.startswith("The answer is")  # only the continuation is returned
    assert "Paris" in prefilled.text
    logprob = plain.generations[0].mean_logprob
    assert logprob is not None and logprob < 0
    # greedy tokens of a confident short answer are likely: mean probability above 1/2
    assert logprob > -0.7
    no_logprobs = smollm_engine.generate([Request(CAPITAL, max_new_tokens=4)])[0]
    assert no_logprobs.generations[0].mean_logprob is None
