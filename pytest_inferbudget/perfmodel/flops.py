"""FLOPs and bytes moved by one request, from a model's config.

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

The roofline that turns these into a lower bound on latency is in
:mod:`~pytest_inferbudget.perfmodel.roofline`, the devices' peaks in
:mod:`~pytest_inferbudget.perfmodel.accelerators`. Only the standard library is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from pytest_inferbudget.errors import FlopsError

__all__ = [
    "DTYPE_BYTES",
    "ModelShape",
    "PhaseCost",
    "RequestCost",
    "mean_token_flops",
    "request_cost",
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


def mean_token_flops(shape: ModelShape, context: int = 1024) -> float:
    """Forward FLOPs per token averaged over generating ``context`` tokens from an empty
    cache, as the Information Capacity authors count ``N`` (``flops.py``,
    ``decode_total / gen_len``): each step's projections, MLP and output head, and
    attention over ``0 .. context - 1`` cached keys (their step at cache length ``t``
    costs ``4 L t d_attn``, one key less than :meth:`ModelShape.token_flops` counts, which
    lets the token attend to itself)."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise FlopsError(f"context must be an integer >= 1, got {context!r}")
    layers = shape.num_hidden_layers
    matmuls = (
        2.0 * layers * shape.layer_matmul_parameters + 2.0 * shape.hidden_size * shape.vocab_size
    )
    return matmuls + 4.0 * layers * shape.d_attn * (context - 1) / 2
