"""Prompt log-probabilities and information capacity on the real SmolLM2 model, checked
against a forward pass summed by hand and against the authors' formula (calc_ic.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_inferbudget.engines import Engine, text_scorer
from pytest_inferbudget.errors import EngineSpecError
from pytest_inferbudget.metrics import bits_per_byte, information_capacity
from pytest_inferbudget.perfmodel import ModelShape, mean_token_flops
from pytest_inferbudget.perfmodel.information import measure_text

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data"
TEXT = (CORPUS / "declaration_of_independence.txt").read_text(encoding="utf-8")[:1200]


def _by_hand(engine: Engine, ids: list[int]) -> list[float]:
    """Natural-log probability of each token after the first, in float64, from logits."""
    import torch

    model = engine.model  # type: ignore[attr-defined]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].double()
    log_z = torch.logsumexp(logits[:-1], dim=-1)
    chosen = logits[:-1].gather(-1, torch.tensor(ids[1:], device=logits.device)[:, None])[:, 0]
    values: list[float] = (chosen - log_z).tolist()
    return values


def _authors_flops_per_token(config: dict[str, int], gen_len: int) -> float:
    """``gqa_model_theoretical_flops(cfg, seq_len=0, gen_len)["decode_total_TFLOPs"] * 1e12
    / gen_len`` of the authors' flops.py, written out for a llama-style config."""
    d, heads, layers = (
        config["hidden_size"],
        config["num_attention_heads"],
        config["num_hidden_layers"],
    )
    d_k = d // heads
    kv_dim = config["num_key_value_heads"] * d_k
    proj = 4 * d * d + 4 * d * kv_dim
    mlp = 6 * d * config["intermediate_size"]
    attention = 4 * heads * d_k * (gen_len * (gen_len - 1) // 2)
    head = 2 * gen_len * d * config["vocab_size"]
    return (layers * (gen_len * (proj + mlp) + attention) + head) / gen_len


def test_text_logprobs_equal_a_forward_pass_summed_by_hand(smollm_engine: Engine) -> None:
    tokenizer = smollm_engine.tokenizer  # type: ignore[attr-defined]
    ids = tokenizer(TEXT)["input_ids"]
    scored = text_scorer(smollm_engine).text_logprobs(TEXT)
    assert scored.tokens == len(ids) and scored.scored_tokens == len(ids) - 1
    expected = _by_hand(smollm_engine, ids)
    assert scored.logprobs == pytest.approx(expected, rel=1e-9, abs=1e-9)
    hand_bits = -math.fsum(expected) / math.log(2)
    text_bytes = len(tokenizer.decode(ids[1:]).encode("utf-8"))
    assert scored.scored_bytes == text_bytes

    info = smollm_engine.describe()
    config = json.loads((Path(str(info["model"])) / "config.json").read_text())
    flops = _authors_flops_per_token(config, 1024)
    assert mean_token_flops(ModelShape.from_config(config), 1024) == pytest.approx(flops, rel=1e-12)
    # the authors' calc_ic.py: (mean text bits per token - mean NLL bits per token + b) / log2 N
    tokens = len(ids) - 1
    authors = (8 * text_bytes / tokens - hand_bits / tokens - 27) / math.log2(flops)
    measured = measure_text(smollm_engine, TEXT, name="declaration")
    assert measured.information_capacity == pytest.approx(authors, rel=1e-6)
    assert measured.bits_per_byte == pytest.approx(hand_bits / text_bytes, rel=1e-6)
    assert information_capacity(text_bytes, hand_bits, flops, tokens=tokens) == pytest.approx(
        authors, rel=1e-12
    )
    assert bits_per_byte(text_bytes, hand_bits) == pytest.approx(hand_bits / text_bytes)
    assert 0 < measured.bits_per_byte < 8  # the model compresses English prose


def test_a_long_text_is_scored_in_windows_whose_first_token_is_context(
    smollm_engine: Engine,
) -> None:
    tokenizer = smollm_engine.tokenizer  # type: ignore[attr-defined]
    ids = tokenizer(TEXT)["input_ids"]
    scored = text_scorer(smollm_engine).text_logprobs(TEXT, window_tokens=64)
    windows = [ids[i : i + 64] for i in range(0, len(ids) - 1, 64)]
    windows = [w for w in windows if len(w) > 1]
    assert scored.scored_tokens == sum(len(w) - 1 for w in windows)
    expected = [lp for w in windows for lp in _by_hand(smollm_engine, w)]
    assert scored.logprobs == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # less context per token: a longer code than one window over the same text
    whole = text_scorer(smollm_engine).text_logprobs(TEXT)
    assert -sum(scored.logprobs) / scored.scored_bytes > -sum(whole.logprobs) / whole.scored_bytes


def test_an_engine_without_text_logprobs_names_the_engines_that_have_it() -> None:
    class Remote:
        spec = "openai:http://127.0.0.1:1/v1"

    with pytest.raises(EngineSpecError, match="transformers, vllm"):
        text_scorer(Remote())
