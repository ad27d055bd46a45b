"""FLOPs, bytes moved and the roofline lower bound of one request, from a model's config.

**Parameters** of a llama-style decoder (LLaMA, Mistral, SmolLM2, Qwen-style without
q/k/v biases) from its Hugging Face ``config.json``: the token embedding ``V x d``;
per layer the attention projections ``q, o: d x (h * dh)`` and ``k, v: d x (kv * dh)``
(grouped-query attention: ``kv`` key/value heads), the gated MLP's three ``d x d_ff``
matrices (gate, up, down) and two RMSNorm weights of ``d``; a final norm of ``d``; and a
separate ``V x d`` output head unless ``tie_word_embeddings``. Biases are counted when
``attention_bias`` / ``mlp_bias`` say so.

**FLOPs** follow Kaplan et al. 2020 ("Scaling Laws for Neural Language Models",
Table 1): a forward pass costs ``2 N + 2 n_layer n_ctx d_attn`` FLOPs per token, ``N``
the non-embedding parameters (a multiply-add is 2 FLOPs per weight) and the second term
attention's scores and weighted sum over the context. We count a token at position
``t`` (it attends to ``t`` keys, itself included, through the KV cache) exactly:

    2 * N_matmul + 4 * n_layer * t * d_attn,     d_attn = num_attention_heads * head_dim

``4 = 2`` (``q . k`` scores) ``+ 2`` (weights times ``v``); with the causal mask the
average ``t`` over a prompt of ``n_ctx`` tokens is about ``n_ctx / 2``, which gives
Kaplan's ``2 n_layer n_ctx d_attn`` per token. ``N_matmul`` is the weights of the
per-layer projections plus the output head (``d x V``; Kaplan lists it apart as
"de-embed", ``2 d_model n_vocab``); the embedding lookup, norms, activations, softmax
and rotary embeddings are left out (well under 1% here).

A request of ``p`` prompt and ``o`` output tokens is, as an engine runs it:

* **prefill**: one forward pass over the ``p`` prompt tokens at positions ``1..p``,
  whose last position's logits give output token 1; the output head runs once (HF
  transformers and vLLM compute only the last position's logits);
* **decode**: ``o - 1`` forward passes of one token each, at positions ``p+1 .. p+o-1``.

**Bytes moved** (the memory-traffic floor: every byte read or written once): every
weight matrix once per forward pass (the embedding table is read as the output head;
its lookup of a few rows is left out), at the model's dtype; the KV cache written once
per token (``2 * n_layer * kv * dh`` values) and, at each decode step, read whole for
the context so far. Prefill reads no cache (its keys and values are produced and used
on chip, as FlashAttention does). Activations are left out: small beside the weights at
small batch.

**Roofline** (Williams, Waterman, Patterson 2009): a phase cannot finish faster than
``max(flops / peak_flops, bytes / bandwidth)``. :func:`roofline_ms` takes that maximum
*per phase* and sums the phases: prefill is compute-bound (thousands of FLOPs per weight
byte), decode memory-bound at small batch (about 2 FLOPs per weight, i.e. 1 FLOP/byte at
16 bits, against a ridge point of hundreds of FLOPs/byte on a GPU). Taking the maximum of
the request's totals instead would let one phase's slack hide the other's cost and give a
looser bound. Decode steps are all on the same side of the ridge point for a model and a
batch size, so the phase's maximum equals the sum of its steps' maxima.

The figures are a floor, not a forecast: real engines reach some fraction of peak
(often 30-70% of FLOP/s in prefill, 50-90% of bandwidth in decode), so compare a
measured latency with this bound as an efficiency ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, final

from pytest_inferbudget.errors import FlopsError

__all__ = [
    "ACCELERATORS",
    "DTYPE_BYTES",
    "Accelerator",
    "CpuSpec",
    "FlopsError",
    "ModelShape",
    "PhaseBound",
    "PhaseCost",
    "RequestCost",
    "request_cost",
    "roofline",
    "roofline_ms",
]


DTYPE_BYTES: Final[Mapping[str, float]] = {
    "float64": 8,
    "float32": 4,
    "fp32": 4,
    "tf32": 4,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "bfloat16": 2,
    "bf16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}
"""Bytes per stored value by dtype name (torch's names and the usual short ones)."""

_PRECISION_OF_DTYPE: Final[Mapping[str, str]] = {
    "float32": "fp32",
    "fp32": "fp32",
    "tf32": "tf32",
    "float16": "fp16",
    "fp16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "fp8": "fp8",
    "int8": "int8",
}


@final
@dataclass(frozen=True, slots=True)
class ModelShape:
    """The dimensions of a llama-style decoder that its cost depends on."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False
    dtype: str = "float32"
    """Storage dtype of the weights and the KV cache (the config's ``dtype``)."""

    def __post_init__(self) -> None:
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "vocab_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FlopsError(f"{name} must be an integer >= 1, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise FlopsError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.dtype not in DTYPE_BYTES:
            raise FlopsError(
                f"unknown dtype {self.dtype!r}; known: {', '.join(sorted(DTYPE_BYTES))}"
            )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, dtype: str | None = None) -> ModelShape:
        """Read a Hugging Face ``config.json`` (as a dict). ``dtype`` overrides the
        config's (``dtype``, or the older ``torch_dtype``; float32 when neither)."""
        missing = [
            key
            for key in (
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "vocab_size",
            )
            if key not in config
        ]
        if missing:
            raise FlopsError(
                f"the config lacks {', '.join(missing)}: only llama-style decoder configs "
                f"are understood"
            )
        heads = config["num_attention_heads"]
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        return cls(
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_hidden_layers=config["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=config.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            vocab_size=config["vocab_size"],
            tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
            attention_bias=bool(config.get("attention_bias", False)),
            mlp_bias=bool(config.get("mlp_bias", False)),
            dtype=dtype or str(config.get("dtype") or config.get("torch_dtype") or "float32"),
        )

    @property
    def d_attn(self) -> int:
        """Width of the query heads together: ``num_attention_heads * head_dim``."""
        return self.num_attention_heads * self.head_dim

    @property
    def d_kv(self) -> int:
        """Width of the key (or value) heads together: ``num_key_value_heads * head_dim``."""
        return self.num_key_value_heads * self.head_dim

    @property
    def layer_matmul_parameters(self) -> int:
        """Weights of one layer's matrix multiplies: q, k, v, o and the gated MLP."""
        d, d_ff = self.hidden_size, self.intermediate_size
        attention = 2 * d * self.d_attn + 2 * d * self.d_kv
        return attention + 3 * d * d_ff

    @property
    def layer_parameters(self) -> int:
        """All of one layer's parameters: matmul weights, biases, the two norms."""
        d = self.hidden_size
        biases = 0
        if self.attention_bias:
            biases += self.d_attn + 2 * self.d_kv + d
        if self.mlp_bias:
            biases += 2 * self.intermediate_size + d
        return self.layer_matmul_parameters + biases + 2 * d

    @property
    def embedding_parameters(self) -> int:
        """The token embedding, plus the output head when it is not tied to it."""
        table = self.vocab_size * self.hidden_size
        return table if self.tie_word_embeddings else 2 * table

    @property
    def non_embedding_parameters(self) -> int:
        """Kaplan's ``N``: every parameter but the embedding table(s)."""
        return self.num_hidden_layers * self.layer_parameters + self.hidden_size

    @property
    def parameters(self) -> int:
        """Every parameter, as ``sum(p.numel() for p in model.parameters())`` counts
        them (a tied output head shares the embedding's and is counted once)."""
        return self.embedding_parameters + self.non_embedding_parameters

    @property
    def bytes_per_value(self) -> float:
        return DTYPE_BYTES[self.dtype]

    @property
    def weight_bytes_per_pass(self) -> float:
        """Weights one forward pass reads: every layer, the final norm, the output head."""
        read = self.non_embedding_parameters + self.vocab_size * self.hidden_size
        return read * self.bytes_per_value

    @property
    def kv_bytes_per_token(self) -> float:
        """KV cache of one token over all layers: keys and values."""
        return 2 * self.num_hidden_layers * self.d_kv * self.bytes_per_value

    def token_flops(self, position: int, *, logits: bool = True) -> float:
        """Forward FLOPs of one token at ``position`` (1-based: it attends to
        ``position`` keys); ``logits=False`` leaves out the output head."""
        if position < 1:
            raise FlopsError(f"position must be >= 1, got {position}")
        head = 2 * self.hidden_size * self.vocab_size if logits else 0
        matmuls = 2 * self.num_hidden_layers * self.layer_matmul_parameters
        attention = 4 * self.num_hidden_layers * position * self.d_attn
        return float(matmuls + head + attention)


@final
@dataclass(frozen=True, slots=True)
class PhaseCost:
    """Work of one phase of a request: floating-point operations and bytes moved."""

    flops: float
    bytes_moved: float
    attention_flops: float = 0.0
    """The part of ``flops`` in attention's scores and weighted sum (``4 L t d_attn`` per
    token at position ``t``); the rest, ``matmul_flops``, is the weight matrix multiplies."""

    @property
    def matmul_flops(self) -> float:
        """FLOPs of the weight matrix multiplies: projections, MLP and the output head."""
        return self.flops - self.attention_flops


@final
@dataclass(frozen=True, slots=True)
class RequestCost:
    """A request's cost by phase; ``batch_size`` identical requests run together."""

    prompt_tokens: int
    output_tokens: int
    batch_size: int
    prefill: PhaseCost
    decode: PhaseCost
    dtype: str = "float32"
    """The model's dtype, which picks the peak :func:`roofline` compares with."""

    @property
    def phase_flops(self) -> tuple[float, float]:
        """``(prefill, decode)`` FLOPs, as :func:`roofline_ms` takes them."""
        return (self.prefill.flops, self.decode.flops)

    @property
    def phase_bytes(self) -> tuple[float, float]:
        """``(prefill, decode)`` bytes moved."""
        return (self.prefill.bytes_moved, self.decode.bytes_moved)

    @property
    def flops(self) -> float:
        return self.prefill.flops + self.decode.flops

    @property
    def bytes_moved(self) -> float:
        return self.prefill.bytes_moved + self.decode.bytes_moved


def request_cost(
    shape: ModelShape,
    prompt_tokens: int,
    output_tokens: int,
    *,
    batch_size: int = 1,
) -> RequestCost:
    """FLOPs and bytes of a request of ``p`` prompt and ``o`` output tokens.

    Prefill: ``p`` tokens at positions ``1..p``, the output head once, the weights read
    once, ``p`` tokens' KV written. Decode: ``o - 1`` steps; step ``i`` runs one token
    at position ``p + i`` with the output head, reads the weights and the ``p + i - 1``
    cached tokens' KV, and writes one token's. With ``batch_size`` rows (``b``
    identical requests run together) FLOPs and KV traffic scale with ``b``, the weights
    are read once per pass for all rows: that sharing is what batching buys in decode.
    ``o = 0`` is a prefill without its output head.
    """
    for name, value, low in (
        ("prompt_tokens", prompt_tokens, 1),
        ("output_tokens", output_tokens, 0),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise FlopsError(f"{name} must be an integer >= {low}, got {value!r}")
    p, b = prompt_tokens, batch_size
    layers, d_attn = shape.num_hidden_layers, shape.d_attn
    matmul_per_token = 2.0 * layers * shape.layer_matmul_parameters
    head = 2.0 * shape.hidden_size * shape.vocab_size
    # sum over positions 1..p of 4 * L * t * d_attn = 2 * L * d_attn * p * (p + 1)
    prefill_attention = 2.0 * layers * d_attn * p * (p + 1)
    prefill_flops = p * matmul_per_token + prefill_attention
    if output_tokens > 0:
        prefill_flops += head
    prefill_bytes = shape.weight_bytes_per_pass + b * p * shape.kv_bytes_per_token
    steps = max(0, output_tokens - 1)
    # positions p+1 .. p+steps: sum of t = steps * p + steps * (steps + 1) / 2
    positions = steps * p + steps * (steps + 1) / 2
    decode_attention = 4.0 * layers * d_attn * positions
    decode_flops = steps * (matmul_per_token + head) + decode_attention
    # cached tokens read at step i: p + i - 1, summed over i = 1..steps
    cached = steps * p + steps * (steps - 1) / 2
    decode_bytes = steps * shape.weight_bytes_per_pass + b * shape.kv_bytes_per_token * (
        cached + steps
    )
    return RequestCost(
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        batch_size=batch_size,
        prefill=PhaseCost(
            flops=b * prefill_flops,
            bytes_moved=prefill_bytes,
            attention_flops=b * prefill_attention,
        ),
        decode=PhaseCost(
            flops=b * decode_flops, bytes_moved=decode_bytes, attention_flops=b * decode_attention
        ),
        dtype=shape.dtype,
    )


@final
@dataclass(frozen=True, slots=True)
class Accelerator:
    """Peak dense throughput by precision (FLOP/s, no 2:4 sparsity) and memory bandwidth."""

    name: str
    peak_flops: Mapping[str, float]
    """FLOP/s by precision: ``bf16``, ``fp16``, ``fp32`` (``tf32`` where it differs)."""
    bandwidth_bytes_s: float
    memory_gb: float
    source: str

    def flops_for(self, precision: str) -> float:
        """Peak FLOP/s at ``precision``; an fp8/int8 model falls back to 16-bit peaks."""
        for name in (precision, "bf16", "fp16") if precision in ("fp8", "int8") else (precision,):
            if name in self.peak_flops:
                return self.peak_flops[name]
        raise FlopsError(
            f"{self.name} has no {precision} peak listed; known: "
            f"{', '.join(sorted(self.peak_flops))}"
        )


@final
@dataclass(frozen=True, slots=True)
class CpuSpec:
    """A CPU (or any device) described by the user: its peak FLOP/s and bandwidth.

    ``peak_flops`` is for the precision the model runs at; for a CPU roughly
    ``cores * GHz * FLOPs per cycle per core`` (e.g. 32 for AVX-512 fp32 with two FMA
    units), and the bandwidth about ``channels * MT/s * 8 bytes``.
    """

    peak_flops: float
    bandwidth_bytes_s: float
    name: str = "cpu"
    source: str = field(default="given by the user")

    def __post_init__(self) -> None:
        for label, value in (
            ("peak_flops", self.peak_flops),
            ("bandwidth_bytes_s", self.bandwidth_bytes_s),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise FlopsError(f"{label} must be a finite number > 0, got {value!r}")

    def flops_for(self, precision: str) -> float:
        return self.peak_flops


def _accelerator(
    name: str,
    bandwidth_tb_s: float,
    memory_gb: float,
    source: str,
    **peak_tflops: float,
) -> Accelerator:
    return Accelerator(
        name=name,
        peak_flops={k: v * 1e12 for k, v in peak_tflops.items()},
        bandwidth_bytes_s=bandwidth_tb_s * 1e12,
        memory_gb=memory_gb,
        source=source,
    )


# Dense peaks (vendor sheets print 2:4-sparse tensor figures at twice these). fp32 is the
# non-tensor (CUDA-core / vector) peak; tf32 the tensor-core peak for fp32 matmuls.
ACCELERATORS: Final[Mapping[str, Accelerator]] = {
    # NVIDIA H100 Tensor Core GPU datasheet: SXM5 80 GB HBM3, BF16/FP16 1,979 TFLOPS
    # sparse, TF32 989 sparse, FP32 67 TFLOPS, 3.35 TB/s.
    "h100-sxm": _accelerator(
        "NVIDIA H100 SXM 80GB",
        3.35,
        80,
        "NVIDIA H100 datasheet",
        bf16=989.4,
        fp16=989.4,
        tf32=494.7,
        fp32=66.9,
    ),
    # Same datasheet, H100 PCIe 80 GB HBM2e: BF16/FP16 1,513 sparse, TF32 756 sparse,
    # FP32 51 TFLOPS, 2.0 TB/s.
    "h100-pcie": _accelerator(
        "NVIDIA H100 PCIe 80GB",
        2.0,
        80,
        "NVIDIA H100 datasheet",
        bf16=756.5,
        fp16=756.5,
        tf32=378.0,
        fp32=51.2,
    ),
    # NVIDIA H200 Tensor Core GPU datasheet: SXM 141 GB HBM3e, the H100's compute
    # (BF16/FP16 1,979 sparse, FP32 67), 4.8 TB/s.
    "h200": _accelerator(
        "NVIDIA H200 SXM 141GB",
        4.8,
        141,
        "NVIDIA H200 datasheet",
        bf16=989.4,
        fp16=989.4,
        tf32=494.7,
        fp32=66.9,
    ),
    # NVIDIA A100 Tensor Core GPU datasheet: BF16/FP16 312 TFLOPS dense, TF32 156,
    # FP32 19.5; SXM 40 GB HBM2 1,555 GB/s, SXM 80 GB HBM2e 2,039 GB/s.
    "a100-40gb": _accelerator(
        "NVIDIA A100 SXM 40GB",
        1.555,
        40,
        "NVIDIA A100 datasheet",
        bf16=312,
        fp16=312,
        tf32=156,
        fp32=19.5,
    ),
    "a100-80gb": _accelerator(
        "NVIDIA A100 SXM 80GB",
        2.039,
        80,
        "NVIDIA A100 datasheet",
        bf16=312,
        fp16=312,
        tf32=156,
        fp32=19.5,
    ),
    # NVIDIA L4 datasheet: FP16/BF16 tensor 242 TFLOPS sparse, TF32 120 sparse, FP32
    # 30.3 TFLOPS, 24 GB GDDR6 at 300 GB/s.
    "l4": _accelerator(
        "NVIDIA L4 24GB",
        0.300,
        24,
        "NVIDIA L4 datasheet",
        bf16=121,
        fp16=121,
        tf32=60,
        fp32=30.3,
    ),
    # A10G (AWS G5): NVIDIA publishes no datasheet; AWS and third parties list 24 GB
    # GDDR6 at 600 GB/s, FP32 35 TFLOPS and about 70 TFLOPS dense BF16/FP16 tensor
    # (the A10's datasheet: 125). Treat these as approximate.
    "a10g": _accelerator(
        "NVIDIA A10G 24GB",
        0.600,
        24,
        "AWS G5 specifications (approximate)",
        bf16=70,
        fp16=70,
        tf32=35,
        fp32=35,
    ),
    # NVIDIA T4 datasheet: FP16 mixed-precision tensor 65 TFLOPS, FP32 8.1 TFLOPS,
    # 16 GB GDDR6 at 320 GB/s. Turing has no bf16.
    "t4": _accelerator(
        "NVIDIA T4 16GB",
        0.320,
        16,
        "NVIDIA T4 datasheet",
        fp16=65,
        fp32=8.1,
    ),
    # NVIDIA Ada Lovelace architecture whitepaper (GeForce RTX 4090): FP16/BF16 tensor
    # with FP32 accumulate 165.2 TFLOPS dense (330.3 with FP16 accumulate), FP32 82.6,
    # 24 GB GDDR6X at 1,008 GB/s.
    "rtx-4090": _accelerator(
        "NVIDIA GeForce RTX 4090 24GB",
        1.008,
        24,
        "NVIDIA Ada Lovelace whitepaper",
        bf16=165.2,
        fp16=165.2,
        tf32=82.6,
        fp32=82.6,
    ),
    # AMD Instinct MI300X datasheet: FP16/BF16 matrix 1,307.4 TFLOPS dense (2,614.9
    # sparse), FP32 163.4 TFLOPS, 192 GB HBM3 at 5.3 TB/s.
    "mi300x": _accelerator(
        "AMD Instinct MI300X 192GB",
        5.3,
        192,
        "AMD Instinct MI300X datasheet",
        bf16=1307.4,
        fp16=1307.4,
        tf32=653.7,
        fp32=163.4,
    ),
}
"""Common accelerators by key. Peaks are the vendors' dense figures, never reached in
practice; for a machine not listed, build an :class:`Accelerator` or a :class:`CpuSpec`."""


@final
@dataclass(frozen=True, slots=True)
class PhaseBound:
    """One phase on the roofline: its compute and memory times and which one binds."""

    phase: str
    flops: float
    bytes_moved: float
    compute_ms: float
    memory_ms: float

    @property
    def bound_ms(self) -> float:
        return max(self.compute_ms, self.memory_ms)

    @property
    def limited_by(self) -> str:
        """``compute`` or ``memory``: the larger of the two times."""
        return "compute" if self.compute_ms >= self.memory_ms else "memory"

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved; above the device's ridge point means compute-bound."""
        return self.flops / self.bytes_moved if self.bytes_moved else math.inf


def roofline(
    cost: RequestCost,
    accelerator: Accelerator | CpuSpec,
    *,
    precision: str | None = None,
) -> tuple[PhaseBound, PhaseBound]:
    """Prefill and decode placed on the roofline of ``accelerator``.

    ``precision`` picks the peak (``bf16``, ``fp16``, ``fp32``, ``tf32``); by default the
    one of the model's dtype (``float32`` -> ``fp32``, the non-tensor peak: pass
    ``precision="tf32"`` where fp32 matmuls run on tensor cores).
    """
    peak = accelerator.flops_for(precision or _precision(cost.dtype))
    bandwidth = accelerator.bandwidth_bytes_s
    return (
        _bound("prefill", cost.prefill, peak, bandwidth),
        _bound("decode", cost.decode, peak, bandwidth),
    )


def roofline_ms(
    request_flops: float | Sequence[float],
    request_bytes: float | Sequence[float],
    accelerator: Accelerator | CpuSpec,
    *,
    precision: str = "bf16",
) -> float:
    """The roofline lower bound on a request's latency, in ms.

    ``request_flops`` and ``request_bytes`` are one number each (one phase) or one per
    phase in the same order (``cost.phase_flops``, ``cost.phase_bytes``); each phase
    takes at least ``max(flops / peak, bytes / bandwidth)`` and the phases run one after
    the other, so the bound is the sum of the per-phase maxima.
    """
    flops = [float(request_flops)] if isinstance(request_flops, int | float) else request_flops
    moved = [float(request_bytes)] if isinstance(request_bytes, int | float) else request_bytes
    if len(flops) != len(moved):
        raise FlopsError(
            f"{len(flops)} phases of FLOPs but {len(moved)} of bytes; give one of each per phase"
        )
    if any(v < 0 or not math.isfinite(v) for v in (*flops, *moved)):
        raise FlopsError("FLOPs and bytes must be finite numbers >= 0")
    peak = accelerator.flops_for(precision)
    return sum(
        _bound("phase", PhaseCost(f, b), peak, accelerator.bandwidth_bytes_s).bound_ms
        for f, b in zip(flops, moved, strict=True)
    )


def _bound(phase: str, cost: PhaseCost, peak: float, bandwidth: float) -> PhaseBound:
    return PhaseBound(
        phase=phase,
        flops=cost.flops,
        bytes_moved=cost.bytes_moved,
        compute_ms=cost.flops / peak * 1e3,
        memory_ms=cost.bytes_moved / bandwidth * 1e3,
    )


def _precision(dtype: str) -> str:
    try:
        return _PRECISION_OF_DTYPE[dtype]
    except KeyError:
        raise FlopsError(
            f"no peak-precision for dtype {dtype!r}; pass precision= one of bf16, fp16, fp32"
        ) from None
