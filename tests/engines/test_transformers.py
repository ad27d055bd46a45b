"""The transformers engine on the real SmolLM2 model, on CPU."""

from __future__ import annotations

import pytest

from pytest_inferbudget.engines import Engine
from pytest_inferbudget.records import Request

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
    for prompt, batched in zip(prompts, batch, strict=True):
        alone = smollm_engine.generate([Request(prompt, max_new_tokens=24)])[0]
        assert batched.text == alone.text
        assert batched.completion_tokens == alone.completion_tokens
        assert batched.prompt_tokens == alone.prompt_tokens


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


def test_describe_names_model_device_and_dtype(smollm_engine: Engine) -> None:
    info = smollm_engine.describe()
    assert info["engine"] == "transformers"
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["parameters"] > 100_000_000


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
