"""Kinetics' memory-aware cost (eFLOPs): the formula by hand, and why it matters."""

from __future__ import annotations

import pytest

from pytest_inferbudget.perfmodel import (
    ACCELERATORS,
    CpuSpec,
    ModelShape,
    eflops,
    hardware_intensity,
    request_cost,
)
from pytest_inferbudget.perfmodel.predictions import Predictor
from pytest_inferbudget.records import Generation, Request, Response, Score, Trace

TINY = ModelShape(
    hidden_size=4,
    intermediate_size=8,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=2,
    vocab_size=10,
    dtype="float32",
)
SMOLLM2_135M = ModelShape(  # HuggingFaceTB/SmolLM2-135M-Instruct's config.json
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    vocab_size=49152,
    dtype="bfloat16",
)


def test_eflops_of_a_tiny_request_match_a_hand_count() -> None:
    """d=4, d_ff=8, one layer, 2 query heads and 1 KV head of width 2, V=10, fp32;
    2 prompt and 3 output tokens on a device of 100 FLOP/s and 10 B/s (intensity 10)."""
    d, d_ff, d_attn, d_kv, vocab, value = 4, 8, 4, 2, 10, 4
    weights = 2 * d * d_attn + 2 * d * d_kv + 3 * d * d_ff  # q, o, k, v, gate/up/down
    per_token = 2 * weights  # a multiply-add per weight
    head = 2 * d * vocab
    attention = [4 * t * d_attn for t in range(1, 5)]  # scores + weighted sum, position t
    flops = (
        2 * per_token + attention[0] + attention[1] + head  # prefill: positions 1, 2
        + (per_token + head + attention[2])  # decode step 1: position 3
        + (per_token + head + attention[3])  # decode step 2: position 4
    )  # fmt: skip
    weight_bytes = (weights + 2 * d + d + vocab * d) * value  # layer, 2 norms, final norm, head
    kv_token = 2 * d_kv * value  # keys and values of one token, one layer
    moved = (
        weight_bytes + 2 * kv_token  # prefill: weights once, 2 tokens' KV written
        + weight_bytes + 2 * kv_token + kv_token  # step 1: reads 2 cached, writes 1
        + weight_bytes + 3 * kv_token + kv_token  # step 2: reads 3 cached, writes 1
    )  # fmt: skip
    device = CpuSpec(peak_flops=100.0, bandwidth_bytes_s=10.0)
    cost = request_cost(TINY, 2, 3)
    assert (cost.flops, cost.bytes_moved) == (flops, moved)
    assert hardware_intensity(device, "fp32") == 10.0
    assert eflops(cost, device) == flops + moved * 10.0


def test_eflops_price_bytes_at_the_devices_ridge_point() -> None:
    cost = request_cost(SMOLLM2_135M, 100, 50)
    h100 = ACCELERATORS["h100-sxm"]
    ridge = h100.peak_flops["bf16"] / h100.bandwidth_bytes_s
    assert eflops(cost, h100) == pytest.approx(cost.flops + cost.bytes_moved * ridge)
    # a device with more bandwidth per FLOP prices the same bytes lower
    assert eflops(cost, ACCELERATORS["h200"]) < eflops(cost, h100)
    assert eflops(cost, h100, precision="fp32") < eflops(cost, h100)


def _response(prompt_tokens: int, lengths: list[int]) -> Response:
    n = len(lengths)
    request = Request("q", max_new_tokens=max(lengths), temperature=0.7 if n > 1 else 0.0, n=n)
    generations = tuple(Generation("a", prompt_tokens, m, "length") for m in lengths)
    return Response(request, generations)


def test_best_of_n_and_one_long_generation_of_equal_tokens_differ_in_eflops() -> None:
    """Kinetics' argument: n samples of m tokens share the weights and read n short KV
    caches; one generation of n*m tokens reads its ever longer cache at every step, a
    cost quadratic in its length that parameter FLOPs do not see."""
    predictor = Predictor(shape=SMOLLM2_135M, accelerator=ACCELERATORS["h100-sxm"])
    n, m, prompt = 8, 1024, 128
    best_of_n = Trace((predictor.annotate(_response(prompt, [m] * n)),))
    long = Trace((predictor.annotate(_response(prompt, [n * m])),))
    assert best_of_n.completion_tokens == long.completion_tokens
    flops_ratio = request_cost(SMOLLM2_135M, prompt, n * m).flops / (
        request_cost(SMOLLM2_135M, prompt, m, batch_size=n).flops
    )
    assert best_of_n.eflops is not None and long.eflops is not None
    eflops_ratio = long.eflops / best_of_n.eflops
    assert eflops_ratio > 2 * flops_ratio  # memory dominates what FLOPs call comparable
    # the long generation's KV reads grow quadratically: twice as long, about 4x the reads
    kv = [
        request_cost(SMOLLM2_135M, prompt, length).decode.bytes_moved
        - (length - 1) * SMOLLM2_135M.weight_bytes_per_pass
        for length in (n * m, 2 * n * m)
    ]
    assert 3.5 < kv[1] / kv[0] < 4.5


def test_a_scored_sample_carries_its_share_of_the_requests_eflops() -> None:
    response = Predictor(shape=TINY, accelerator=CpuSpec(100.0, 10.0)).annotate(
        _response(2, [3, 5])
    )
    assert response.eflops is not None
    restored = Response.from_dict(response.to_dict())
    assert restored.eflops == response.eflops
    score = Score("p", True, 3, None, eflops=1.5)
    assert Score.from_dict(score.to_dict()) == score
    old = score.to_dict()
    del old["eflops"]  # a run saved before eFLOPs were recorded still loads
    assert Score.from_dict(old).eflops is None
    assert "eflops" not in Response.from_dict(_response(2, [3]).to_dict()).to_dict()


def test_cost_of_pass_and_eff_at_k_count_cost_in_eflops() -> None:
    from pytest_inferbudget.budget import parse_marker_kwargs
    from pytest_inferbudget.verdicts import evaluate

    scores = [
        Score("p", True, 10, None, eflops=2e9),
        Score("p", False, 30, None, eflops=6e9),
        Score("q", True, 20, None, eflops=4e9),
    ]
    limits = parse_marker_kwargs(
        {"cost_of_pass": 1e10, "cost_unit": "eflops", "eff_at_k": (1, 0.1),
         "eff_cost": "eflops", "eff_reference": 4e9},
        where="t",
    )  # fmt: skip
    results = {r.key: r for r in evaluate(limits, [], scores)}
    mean_cost = (2e9 + 6e9 + 4e9) / 3
    assert results["cost_of_pass"].measured == pytest.approx(mean_cost / (2 / 3))
    assert results["cost_of_pass"].unit == "eflops"
    # ENAMEL's score against the reference, alpha 2: (8e9 - cost) / 4e9, 0 when wrong
    p_scores = sorted([(8e9 - 2e9) / 4e9, 0.0])
    assert results["eff_at_k@1"].measured == pytest.approx((sum(p_scores) / 2 + 1.0) / 2)


def test_cost_in_eflops_without_a_prediction_says_what_to_pass() -> None:
    from pytest_inferbudget.budget import parse_marker_kwargs
    from pytest_inferbudget.verdicts import evaluate

    limits = parse_marker_kwargs({"cost_of_pass": 1.0, "cost_unit": "eflops"}, where="t")
    [result] = evaluate(limits, [], [Score("p", True, 10, None)])
    assert result.verdict == "unmeasured"
    assert "eflops" in result.reason
    [trace_result] = evaluate(
        parse_marker_kwargs({"eflops_per_request": 1.0}, where="t"),
        [Trace((_response(2, [3]),))],
    )
    assert trace_result.verdict == "unmeasured"
    assert "--inferbudget-accelerator" in trace_result.reason
