"""Idealized runtime (HELM's f(p) + g (o - 1)), FLOPs, bytes moved and the roofline.

The arithmetic is checked against the definitions on hand-made profiles and synthetic
samples; the parameter count against the real SmolLM2 model; and one quick calibration
runs on the real default model.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from pytest_inferbudget.engines import Engine
from pytest_inferbudget.hardware import Machine
from pytest_inferbudget.models import resolve_model
from pytest_inferbudget.perfmodel import (
    ACCELERATORS,
    PROFILE_SCHEMA_VERSION,
    PROMPT_LENGTHS,
    QUICK_PROMPT_LENGTHS,
    CpuSpec,
    FitError,
    FlopsError,
    ModelShape,
    ProfileError,
    RuntimeProfile,
    TimingSample,
    build_profile,
    calibrate,
    fit_profile,
    predict_ms,
    request_cost,
    roofline,
    roofline_ms,
)
from pytest_inferbudget.records import Request

DOC = Path(__file__).resolve().parents[2] / "docs" / "idealized-runtime.md"

# SmolLM2-135M-Instruct's config.json, as the model folder holds it
SMOLLM2_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "dtype": "float32",
    "head_dim": 64,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 9,
    "num_hidden_layers": 30,
    "num_key_value_heads": 3,
    "tie_word_embeddings": True,
    "vocab_size": 49152,
}
SMOLLM2_PARAMETERS = 134_515_008


def make_profile(overhead_ms: float | None = None) -> RuntimeProfile:
    return RuntimeProfile(
        model="m",
        hardware_key="hw",
        engine_spec="fake:m",
        prompt_ms={1: 10.0, 256: 100.0, 512: 300.0, 1024: 700.0, 1536: 1200.0},
        per_output_token_ms=5.0,
        overhead_ms=overhead_ms,
    )


def reference_runtime(profile: RuntimeProfile, p: int, o: int) -> float:
    """The definition, written out independently of the module's bisect."""
    lengths = sorted(profile.prompt_ms)
    key = next((k for k in lengths if p <= k), lengths[-1])
    runtime = profile.prompt_ms[key] * p / key
    if o > 0:
        runtime += profile.per_output_token_ms * (o - 1)
    return runtime + (profile.overhead_ms or 0.0)


# --- predict_ms: the definition, exactly -------------------------------------------


def test_predict_at_and_between_tabulated_lengths() -> None:
    profile = make_profile()
    assert predict_ms(profile, 1, 1) == 10.0
    assert predict_ms(profile, 256, 1) == 100.0
    assert predict_ms(profile, 256, 11) == 100.0 + 5.0 * 10
    # scaled from the next tabulated length at or above p
    assert predict_ms(profile, 100, 1) == pytest.approx(100.0 * 100 / 256)
    assert predict_ms(profile, 257, 3) == pytest.approx(300.0 * 257 / 512 + 10.0)
    assert predict_ms(profile, 1024, 2) == pytest.approx(705.0)
    # beyond the largest: scaled from the largest
    assert predict_ms(profile, 3072, 1) == pytest.approx(2400.0)
    # o = 0: the prompt alone (HELM's convention)
    assert predict_ms(profile, 512, 0) == 300.0


def test_predict_adds_the_overhead_unless_asked_not_to() -> None:
    profile = make_profile(overhead_ms=7.0)
    assert predict_ms(profile, 256, 3) == 100.0 + 10.0 + 7.0
    assert predict_ms(profile, 256, 3, overhead=False) == 110.0


@given(p=st.integers(0, 5000), o=st.integers(0, 2000), overhead=st.sampled_from([None, 3.5]))
def test_predict_matches_the_definition(p: int, o: int, overhead: float | None) -> None:
    profile = make_profile(overhead)
    assert predict_ms(profile, p, o) == pytest.approx(reference_runtime(profile, p, o))
    assert predict_ms(profile, p, o + 1) >= predict_ms(profile, p, o)


def test_predict_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="prompt_tokens"):
        predict_ms(make_profile(), -1, 3)
    with pytest.raises(ValueError, match="output_tokens"):
        predict_ms(make_profile(), 3, -1)


# --- fit_profile ---------------------------------------------------------------------


def synthetic_samples(
    profile: RuntimeProfile,
    prompts: list[int],
    outputs: list[int],
    *,
    repeats: int = 1,
    noise: float = 0.0,
    with_ttft: bool = True,
    seed: int = 0,
) -> list[TimingSample]:
    rng = random.Random(seed)
    samples = []
    for _ in range(repeats):
        for p in prompts:
            for o in outputs:
                ttft = predict_ms(profile, p, 1) * (1 + rng.gauss(0, noise))
                decode = profile.per_output_token_ms * (o - 1) * (1 + rng.gauss(0, noise))
                samples.append(TimingSample(p, o, ttft if with_ttft else None, ttft + decode))
    return samples


PROMPTS = [1, 100, 256, 300, 512, 800, 1024, 1536, 2000]


@pytest.mark.parametrize("method", ["split", "joint"])
def test_fit_recovers_known_coefficients_exactly_without_noise(method: str) -> None:
    truth = make_profile()
    samples = synthetic_samples(truth, PROMPTS, [1, 8, 32], with_ttft=method == "split")
    fit = fit_profile(samples)  # "auto" picks split with TTFTs, joint without
    assert fit.diagnostics.method == method
    assert fit.prompt_lengths == PROMPT_LENGTHS
    for k, value in truth.prompt_ms.items():
        assert fit.prompt_ms[k] == pytest.approx(value, rel=1e-9)
    assert fit.per_output_token_ms == pytest.approx(5.0, rel=1e-9)
    assert fit.overhead_ms is None
    assert fit.diagnostics.r_squared == pytest.approx(1.0, abs=1e-9)
    assert fit.diagnostics.max_abs_residual_ms == pytest.approx(0.0, abs=1e-6)
    assert fit.diagnostics.samples == len(samples)
    assert sum(fit.diagnostics.samples_per_length.values()) == len(samples)


def test_fit_recovers_known_coefficients_approximately_with_noise() -> None:
    truth = make_profile()
    samples = synthetic_samples(truth, PROMPTS, [8, 32, 64], repeats=20, noise=0.03, seed=7)
    for method in ("split", "joint"):
        fit = fit_profile(samples, method=method)
        for k, value in truth.prompt_ms.items():
            # joint extrapolates f to o = 1 from e2e noise of several ms: hence the abs
            assert fit.prompt_ms[k] == pytest.approx(value, rel=0.05, abs=3.0), (method, k)
        assert fit.per_output_token_ms == pytest.approx(5.0, rel=0.03)
        r_squared = fit.diagnostics.r_squared
        assert r_squared is not None and 0.95 < r_squared < 1.0
        assert len(fit.diagnostics.residuals_ms) == len(samples)
    split = fit_profile(samples, method="split").diagnostics
    assert split.r_squared_prompt is not None and split.r_squared_decode is not None


def test_overhead_fit_recovers_a_fixed_term() -> None:
    # f linear in p (0.5 ms a token), so the straight line through TTFT is exact
    truth = RuntimeProfile(
        model="m",
        hardware_key="hw",
        engine_spec="fake:m",
        prompt_ms={k: 0.5 * k for k in PROMPT_LENGTHS},
        per_output_token_ms=4.0,
        overhead_ms=20.0,
    )
    for with_ttft in (True, False):
        samples = synthetic_samples(truth, PROMPTS, [1, 8, 32], with_ttft=with_ttft)
        fit = fit_profile(samples, overhead=True)
        assert fit.overhead_ms == pytest.approx(20.0, rel=1e-9)
        assert fit.per_output_token_ms == pytest.approx(4.0, rel=1e-9)
        for k in PROMPT_LENGTHS:
            assert fit.prompt_ms[k] == pytest.approx(0.5 * k, rel=1e-9)


def test_overhead_leaves_predictions_at_tabulated_lengths_unchanged() -> None:
    truth = make_profile()
    samples = synthetic_samples(truth, list(PROMPT_LENGTHS), [4, 16], repeats=3, noise=0.02)
    plain = fit_profile(samples)
    denoised = fit_profile(samples, overhead=True)
    assert denoised.overhead_ms is not None and denoised.overhead_ms >= 0.0
    assert denoised.overhead_ms <= min(plain.prompt_ms.values()) + 1e-9
    for k in PROMPT_LENGTHS:
        assert predict_ms(denoised, k, 9) == pytest.approx(predict_ms(plain, k, 9))


def test_overhead_at_its_ceiling_gives_zero_not_a_rounding_negative() -> None:
    # vLLM on a CPU: the time to first token barely grows with the prompt, so the
    # straight line's intercept reaches the ceiling min f(k) and one f(k) is zero
    # (a one-token prompt a little faster than the line through the others)
    def ttft(p: int, r: int) -> float:
        return (40.0 if p == 1 else 50.0 + 0.01 * p) + 0.37 * r  # rounds to -4.7e-15

    samples = [
        TimingSample(p, o, ttft_ms=ttft(p, r), e2e_ms=ttft(p, r) + 40.0 * (o - 1))
        for p in (1, 200, 256, 400, 512)
        for o in (8, 32)
        for r in range(3)
    ]
    # least squares over every sample: here f(1) comes out -4.7e-15 before the clamp
    fit = fit_profile(samples, (1, 256, 512), overhead=True, statistic="mean")
    assert fit.overhead_ms is not None and fit.overhead_ms > 0.0
    assert min(fit.prompt_ms.values()) == 0.0
    assert all(v >= 0.0 for v in fit.prompt_ms.values())


def test_median_fit_ignores_a_stalled_request() -> None:
    # measured with the transformers engine on a shared CPU: one of three repeats of a
    # 2.7 s cell took 26 s; least squares spreads that over g, the cell median drops it
    truth = make_profile()
    samples = synthetic_samples(truth, PROMPTS, [8, 32], repeats=3, noise=0.01, seed=3)
    index = next(
        i for i, s in enumerate(samples) if s.prompt_tokens == 1024 and s.output_tokens == 32
    )
    stalled = samples[index]
    samples[index] = TimingSample(
        stalled.prompt_tokens, stalled.output_tokens, stalled.ttft_ms, stalled.e2e_ms * 10
    )
    median = fit_profile(samples)
    mean = fit_profile(samples, statistic="mean")
    assert median.diagnostics.statistic == "median" and mean.diagnostics.statistic == "mean"
    assert median.per_output_token_ms == pytest.approx(5.0, rel=0.03)
    assert mean.per_output_token_ms > 1.5 * 5.0
    # the diagnostics still see every sample, the outlier included
    assert median.diagnostics.samples == len(samples)
    assert max(median.diagnostics.residuals_ms) == pytest.approx(
        samples[index].e2e_ms - predict_ms(median, 1024, 32)
    )
    with pytest.raises(ValueError, match="statistic"):
        fit_profile(samples, statistic="mode")


def test_fit_explains_what_it_cannot_determine() -> None:
    truth = make_profile()
    with pytest.raises(FitError, match="no samples for the tabulated prompt length"):
        fit_profile(synthetic_samples(truth, [1, 256], [1, 8]))  # nothing in (256, 1536]
    with pytest.raises(FitError, match="single output token"):
        fit_profile(synthetic_samples(truth, list(PROMPT_LENGTHS), [1]))
    with pytest.raises(FitError, match="two output lengths"):
        fit_profile(synthetic_samples(truth, list(PROMPT_LENGTHS), [8], with_ttft=False))
    with pytest.raises(FitError, match="no timing samples"):
        fit_profile([])
    with pytest.raises(FitError, match="ttft_ms"):
        fit_profile(synthetic_samples(truth, PROMPTS, [8, 16], with_ttft=False), method="split")
    with pytest.raises(ValueError, match="method"):
        fit_profile(synthetic_samples(truth, PROMPTS, [8]), method="magic")
    with pytest.raises(ValueError, match="strictly increasing"):
        fit_profile(synthetic_samples(truth, PROMPTS, [8]), (256, 1))


def test_timing_sample_is_validated() -> None:
    with pytest.raises(ValueError, match="after e2e_ms"):
        TimingSample(8, 2, ttft_ms=5.0, e2e_ms=4.0)
    with pytest.raises(ValueError, match="output_tokens"):
        TimingSample(8, 0, ttft_ms=None, e2e_ms=4.0)


# --- profiles on disk ------------------------------------------------------------------


def fitted_profile() -> RuntimeProfile:
    samples = synthetic_samples(make_profile(), PROMPTS, [4, 16], repeats=2, noise=0.02)
    return build_profile(
        fit_profile(samples),
        samples,
        model="m",
        hardware_key=Machine({"cpu_model": "Test CPU 3000", "cpu_count": 2}, {}).profile_key,
        engine_spec="fake:m",
        engine_info={"device": "cpu", "dtype": "float32"},
        calibration={"quick": False},
    )


def test_profile_round_trips_through_a_file(tmp_path: Path) -> None:
    profile = fitted_profile()
    assert len(profile.table) == len(PROMPTS) * 2 * 2
    assert profile.hardware_key.startswith("test-cpu-3000-")
    path = tmp_path / "profiles" / "m.json"
    profile.save(path)
    loaded = RuntimeProfile.load(path)
    assert loaded == profile
    assert json.loads(path.read_text())["schema_version"] == PROFILE_SCHEMA_VERSION


def test_a_saved_profile_can_be_fitted_again_from_its_table(tmp_path: Path) -> None:
    samples = synthetic_samples(make_profile(), PROMPTS, [4, 16], repeats=2, noise=0.02)
    fit = fit_profile(samples)
    profile = build_profile(fit, samples, model="m", hardware_key="hw", engine_spec="fake:m")
    path = tmp_path / "m.json"
    profile.save(path)
    loaded = RuntimeProfile.load(path)
    assert loaded.samples() == tuple(samples)  # TTFTs included, so split can refit
    again = fit_profile(loaded.samples(), loaded.prompt_lengths)
    assert again.prompt_ms == fit.prompt_ms
    assert again.per_output_token_ms == fit.per_output_token_ms
    denoised = fit_profile(loaded.samples(), loaded.prompt_lengths, overhead=True)
    assert denoised.overhead_ms is not None
    # a profile file from before TTFTs were kept still loads; its samples lack them
    data = json.loads(path.read_text())
    for row in data["table"]:
        del row["ttft_ms"]
    path.write_text(json.dumps(data))
    assert all(s.ttft_ms is None for s in RuntimeProfile.load(path).samples())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON"),
        ('{"schema_version": 99}', "upgrade pytest-inferbudget"),
        ('{"schema_version": 1, "model": "m"}', "lacks the key 'hardware_key'"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_a_corrupt_profile_is_an_error_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ProfileError, match=re.escape(message)) as caught:
        RuntimeProfile.load(path)
    assert str(path) in str(caught.value)


def test_a_malformed_value_in_a_profile_is_an_error(tmp_path: Path) -> None:
    data = fitted_profile().to_dict()
    data["prompt_ms"]["256"] = -3.0
    path = tmp_path / "negative.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"prompt_ms\[256\]") as caught:
        RuntimeProfile.load(path)
    assert str(path) in str(caught.value)
    with pytest.raises(ProfileError, match="no such file"):
        RuntimeProfile.load(tmp_path / "missing.json")


# --- FLOPs, parameters, bytes ----------------------------------------------------------


def test_parameter_count_of_smollm2_from_its_config() -> None:
    shape = ModelShape.from_config(SMOLLM2_CONFIG)
    assert shape.parameters == SMOLLM2_PARAMETERS
    assert shape.embedding_parameters == 49152 * 576
    assert shape.d_attn == 576 and shape.d_kv == 192
    untied = ModelShape.from_config({**SMOLLM2_CONFIG, "tie_word_embeddings": False})
    assert untied.parameters == SMOLLM2_PARAMETERS + 49152 * 576


def test_parameter_count_equals_the_real_model(smollm_engine: Engine) -> None:
    folder = resolve_model("smollm2-135m-instruct", lambda line: None)
    config = json.loads((folder / "config.json").read_text())
    shape = ModelShape.from_config(config)
    assert shape.parameters == smollm_engine.describe()["parameters"] == SMOLLM2_PARAMETERS


def test_request_flops_and_bytes_equal_a_token_by_token_sum() -> None:
    shape = ModelShape.from_config(SMOLLM2_CONFIG, dtype="bfloat16")
    p, o = 37, 11
    cost = request_cost(shape, p, o)
    prefill = sum(shape.token_flops(t, logits=False) for t in range(1, p + 1))
    prefill += 2 * shape.hidden_size * shape.vocab_size  # the output head, once
    decode = sum(shape.token_flops(t) for t in range(p + 1, p + o))
    assert cost.prefill.flops == pytest.approx(prefill, rel=1e-12)
    assert cost.decode.flops == pytest.approx(decode, rel=1e-12)
    kv = shape.kv_bytes_per_token
    assert kv == 2 * 30 * 192 * 2
    assert cost.prefill.bytes_moved == pytest.approx(shape.weight_bytes_per_pass + p * kv)
    decode_bytes = sum(shape.weight_bytes_per_pass + (t - 1) * kv + kv for t in range(p + 1, p + o))
    assert cost.decode.bytes_moved == pytest.approx(decode_bytes)
    assert shape.weight_bytes_per_pass == SMOLLM2_PARAMETERS * 2  # tied head: read once


def test_flops_and_bytes_of_a_tiny_config_by_hand() -> None:
    """Every figure below is counted by hand from the definitions, not by the module."""
    tiny = ModelShape(
        hidden_size=4,
        intermediate_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=2,
        vocab_size=10,
    )
    # per layer: q and o 4 x (2*2) = 16 each, k and v 4 x (1*2) = 8 each, MLP 3 x 4 x 8 = 96
    assert tiny.layer_matmul_parameters == 16 + 16 + 8 + 8 + 96 == 144
    # + two norms of 4 per layer, a final norm of 4, the tied 10 x 4 embedding
    assert tiny.parameters == 2 * (144 + 8) + 4 + 40 == 348
    # one token: 2 FLOPs per matmul weight over 2 layers = 576; head 2 * 4 * 10 = 80;
    # attention at position t: 4 * 2 layers * t * d_attn 4 = 32 t
    assert tiny.token_flops(1) == 576 + 80 + 32
    cost = request_cost(tiny, 3, 2)
    assert cost.prefill.flops == 3 * 576 + 32 * (1 + 2 + 3) + 80 == 2000
    assert cost.prefill.attention_flops == 192 and cost.prefill.matmul_flops == 1808
    assert cost.decode.flops == 576 + 80 + 32 * 4 == 784  # one step, at position 4
    # float32: weights (308 non-embedding + 40 head) * 4 bytes = 1392 a pass; KV per
    # token 2 (k, v) * 2 layers * 1 head * 2 dims * 4 bytes = 32
    assert cost.prefill.bytes_moved == 1392 + 3 * 32
    assert cost.decode.bytes_moved == 1392 + 3 * 32 + 32  # read 3 cached tokens, write 1


def test_forward_flops_agree_with_torch_flop_counter(smollm_engine: Engine) -> None:
    """Our FLOPs against ``torch.utils.flop_counter.FlopCounterMode`` on the real model.

    The counter counts matrix multiplies only (``aten.mm`` for the linear layers,
    ``aten.bmm`` for eager attention's ``q k^T`` and ``weights v``): nothing else here
    is one (the rotary embedding, norms, activations and softmax are elementwise), and our
    formula leaves exactly those out. Attention runs eager for the count, because the CPU
    SDPA kernel (``_scaled_dot_product_flash_attention_for_cpu``) has no formula in the
    counter and would be missed. The weight matmuls then agree exactly, in prefill and in
    a decode step. Prefill attention differs by a known factor, not a tolerance: eager
    attention computes the full ``p x p`` score matrix and masks it afterwards, which the
    counter counts (``4 L d_attn p^2``), while we count the causal work a token needs
    (``t`` keys at position ``t``: ``2 L d_attn p (p + 1)``). A decode step's query sees
    every cached key, so there the two agree exactly.
    """
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    model: Any = getattr(smollm_engine, "model", None)
    if model is None:
        pytest.skip(f"{smollm_engine.spec} exposes no torch model")
    folder = resolve_model("smollm2-135m-instruct", lambda line: None)
    shape = ModelShape.from_config(json.loads((folder / "config.json").read_text()))
    p = 48
    cost = request_cost(shape, p, 2)

    def counted(**inputs: Any) -> tuple[dict[str, int], Any]:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            # logits of the last position only, as generate() asks for them
            output = model(**inputs, use_cache=True, logits_to_keep=1)
        counts = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
        return counts, output

    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        prompt = torch.arange(1000, 1000 + p).unsqueeze(0)
        prefill, output = counted(input_ids=prompt)
        token = output.logits[:, -1:].argmax(-1)
        decode, _ = counted(input_ids=token, past_key_values=output.past_key_values)
    finally:
        model.set_attn_implementation(before)
    assert model.config._attn_implementation == before

    assert set(prefill) == set(decode) == {"aten.mm", "aten.bmm"}
    assert prefill["aten.mm"] == pytest.approx(cost.prefill.matmul_flops, rel=1e-12)
    assert decode["aten.mm"] == pytest.approx(cost.decode.matmul_flops, rel=1e-12)
    layers, d_attn = shape.num_hidden_layers, shape.d_attn
    assert prefill["aten.bmm"] == 4 * layers * d_attn * p * p
    assert cost.prefill.attention_flops == pytest.approx(
        prefill["aten.bmm"] * (p + 1) / (2 * p), rel=1e-12
    )
    assert decode["aten.bmm"] == pytest.approx(cost.decode.attention_flops, rel=1e-12)
    assert sum(decode.values()) == pytest.approx(cost.decode.flops, rel=1e-12)


def test_prefill_flops_per_token_match_kaplan() -> None:
    """Kaplan et al. 2020: C_forward = 2N + 2 n_layer n_ctx d_attn per token."""
    shape = ModelShape.from_config(SMOLLM2_CONFIG)
    n = shape.num_hidden_layers * shape.layer_matmul_parameters
    for n_ctx in (128, 1024):
        per_token = request_cost(shape, n_ctx, 0).prefill.flops / n_ctx
        kaplan = 2 * n + 2 * shape.num_hidden_layers * n_ctx * shape.d_attn
        assert per_token == pytest.approx(kaplan, rel=1 / n_ctx)


def test_flops_inputs_are_checked() -> None:
    with pytest.raises(FlopsError, match="lacks intermediate_size"):
        ModelShape.from_config(
            {k: v for k, v in SMOLLM2_CONFIG.items() if k != "intermediate_size"}
        )
    with pytest.raises(FlopsError, match="multiple"):
        ModelShape.from_config({**SMOLLM2_CONFIG, "num_key_value_heads": 4})
    with pytest.raises(FlopsError, match="prompt_tokens"):
        request_cost(ModelShape.from_config(SMOLLM2_CONFIG), 0, 4)
    with pytest.raises(FlopsError, match="peak_flops"):
        CpuSpec(peak_flops=0, bandwidth_bytes_s=1e9)


# --- roofline ----------------------------------------------------------------------------


def test_accelerator_table_is_sane() -> None:
    assert {"h100-sxm", "h100-pcie", "h200", "a100-40gb", "a100-80gb", "l4", "a10g", "t4"} <= set(
        ACCELERATORS
    )
    assert {"rtx-4090", "mi300x"} <= set(ACCELERATORS)
    for accelerator in ACCELERATORS.values():
        assert accelerator.bandwidth_bytes_s > 1e11 and accelerator.source
        assert accelerator.flops_for("fp16") > accelerator.flops_for("fp32") > 1e12
    assert ACCELERATORS["h200"].bandwidth_bytes_s > ACCELERATORS["h100-sxm"].bandwidth_bytes_s
    with pytest.raises(FlopsError, match="no bf16 peak"):
        ACCELERATORS["t4"].flops_for("bf16")


@settings(max_examples=50, deadline=None)
@given(p=st.integers(1, 4000), o=st.integers(0, 1000), key=st.sampled_from(sorted(ACCELERATORS)))
def test_roofline_is_monotone_in_tokens(p: int, o: int, key: str) -> None:
    shape = ModelShape.from_config(SMOLLM2_CONFIG, dtype="float16")
    accelerator = ACCELERATORS[key]

    def bound(p: int, o: int) -> float:
        cost = request_cost(shape, p, o)
        return roofline_ms(cost.phase_flops, cost.phase_bytes, accelerator, precision="fp16")

    assert bound(p + 1, o) >= bound(p, o)
    assert bound(p, o + 1) >= bound(p, o)
    if o >= 1:  # one more decode step always reads the weights once more
        assert bound(p, o + 1) > bound(p, o)


def test_decode_is_memory_bound_at_small_batch_and_long_prefill_compute_bound() -> None:
    shape = ModelShape.from_config(SMOLLM2_CONFIG, dtype="bfloat16")
    for key, accelerator in ACCELERATORS.items():
        precision = "fp16" if key == "t4" else "bf16"  # Turing has no bf16
        for batch in (1, 8):
            cost = request_cost(shape, 512, 128, batch_size=batch)
            _, decode = roofline(cost, accelerator, precision=precision)
            assert decode.limited_by == "memory", (key, batch)
            assert decode.arithmetic_intensity < 10
        prefill, _ = roofline(request_cost(shape, 4096, 1), accelerator, precision=precision)
        assert prefill.limited_by == "compute", key


def test_roofline_ms_sums_the_per_phase_maxima() -> None:
    shape = ModelShape.from_config(SMOLLM2_CONFIG, dtype="bfloat16")
    cost = request_cost(shape, 2048, 256)
    h100 = ACCELERATORS["h100-sxm"]
    phases = roofline(cost, h100)
    total = roofline_ms(cost.phase_flops, cost.phase_bytes, h100)
    assert total == pytest.approx(sum(phase.bound_ms for phase in phases))
    # never below the bound from the request's totals
    peak, bandwidth = h100.flops_for("bf16"), h100.bandwidth_bytes_s
    assert total >= 1e3 * max(cost.flops / peak, cost.bytes_moved / bandwidth)
    assert roofline_ms(2e12, 1e9, h100) == pytest.approx(max(2e12 / peak, 1e9 / bandwidth) * 1e3)
    cpu = CpuSpec(peak_flops=1e11, bandwidth_bytes_s=2e10)
    assert roofline_ms(1e11, 1e9, cpu) == pytest.approx(1000.0)
    with pytest.raises(FlopsError, match="phases"):
        roofline_ms([1.0, 2.0], [1.0], h100)


# --- the documentation's examples, and import weight -------------------------------------


def test_the_docs_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    runnable = [block for block in blocks if not block.startswith("# needs the model")]
    assert len(runnable) >= 3
    for block in runnable:
        exec(compile(block, str(DOC), "exec"), {})


def test_modules_import_no_heavy_library() -> None:
    code = (
        "import sys, pytest_inferbudget.perfmodel;"
        "print(sorted({'torch','transformers','numpy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- one real calibration ---------------------------------------------------------------


def test_quick_calibration_on_the_default_model(smollm_engine: Engine, tmp_path: Path) -> None:
    lines: list[str] = []
    profile = calibrate(
        smollm_engine, quick=True, output_lengths=(4, 12), warmup=0, progress=lines.append
    )
    assert profile.prompt_lengths == QUICK_PROMPT_LENGTHS
    assert profile.model == "smollm2-135m-instruct"
    assert profile.engine_info["parameters"] == SMOLLM2_PARAMETERS
    assert profile.calibration["quick"] is True and profile.calibration["duration_s"] > 0
    # every timed prompt starts differently, so no prefix cache can serve one
    assert profile.calibration["distinct_prompt_starts"] == len(profile.table)
    assert len(profile.table) == 3 * 2 * 2
    assert {row.prompt_tokens for row in profile.table} == set(QUICK_PROMPT_LENGTHS)
    assert all(v > 0 for v in profile.prompt_ms.values()) and profile.per_output_token_ms > 0
    diagnostics = profile.diagnostics
    assert diagnostics is not None and diagnostics.method == "split"
    assert diagnostics.r_squared is not None and diagnostics.r_squared <= 1.0
    assert any("calibrated in" in line for line in lines)

    # a fresh request, of a length and text the calibration never saw
    generation = smollm_engine.generate(
        [Request("Once upon a time, in a small village by the sea,", max_new_tokens=12, chat=False)]
    )[0].generations[0]
    assert generation.e2e_ms is not None
    predicted = predict_ms(profile, generation.prompt_tokens, generation.completion_tokens)
    assert 1 / 3 < generation.e2e_ms / predicted < 3, (generation, profile.to_dict())

    path = tmp_path / "smollm2.json"
    profile.save(path)
    assert RuntimeProfile.load(path) == profile
