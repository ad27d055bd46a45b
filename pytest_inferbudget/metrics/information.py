"""Information capacity: a model's text compression per unit of compute.

Yuan, Shao, Li 2025, "Information Capacity: Evaluating the Efficiency of Large Language
Models via Text Compression" (arXiv:2511.08066; code: TeleAI-AI-Flow/InformationCapacity,
``calc_ic.py``). A model that predicts text well is a good compressor (arithmetic coding
spends ``-log2 p`` bits per token); dividing the bits it saves by the log of the FLOPs it
spends per token makes models of one series score alike, so the figure compares series.
The authors' code computes it per token:

    IC = (C / T - L / T + b) / log2 N

``C`` the scored text's size in bits (8 x UTF-8 bytes), ``L = sum -log2 p(x_i | x_<i)``
the model's code length of it, ``T`` the tokens scored, ``N`` the model's FLOPs per token
and ``b`` a fitted constant: -27 in ``calc_ic.py`` by default (-24 for their
``mixed_text.jsonl``, -18.7 for ``Ch-FineWeb-Edu.jsonl``). Pure functions: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "DEFAULT_NUMERATOR_BIAS",
    "bits_per_byte",
    "code_length_bits",
    "information_capacity",
    "token_windows",
]

DEFAULT_NUMERATOR_BIAS = -27.0
"""``b`` of ``calc_ic.py`` for data sets other than the authors' two named ones."""


def code_length_bits(logprobs: Iterable[float]) -> float:
    """Bits an arithmetic coder driven by the model spends on the tokens whose natural-log
    probabilities these are: ``sum(-ln p) / ln 2``."""
    values = []
    for value in logprobs:
        if not math.isfinite(value) or value > 0:
            raise ValueError(
                f"a log-probability must be a finite number <= 0 (natural log), got {value!r}"
            )
        values.append(-value)
    return math.fsum(values) / math.log(2)


def bits_per_byte(text_bytes: int, total_bits: float) -> float:
    """The model's code length per byte of text: 8 would be no compression at all."""
    _check(text_bytes, total_bits)
    return total_bits / text_bytes


def information_capacity(
    text_bytes: int,
    total_bits: float,
    flops_per_token: float,
    *,
    tokens: int,
    b: float = DEFAULT_NUMERATOR_BIAS,
) -> float:
    """``(8 text_bytes / tokens - total_bits / tokens + b) / log2(flops_per_token)``.

    ``text_bytes`` and ``total_bits`` cover the same ``tokens`` scored tokens (in the
    authors' code a sample's first token is context and not counted in either).
    """
    _check(text_bytes, total_bits)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"tokens must be an integer >= 1, got {tokens!r}")
    if not (math.isfinite(flops_per_token) and flops_per_token > 1):
        raise ValueError(f"flops_per_token must be a finite number > 1, got {flops_per_token!r}")
    if not math.isfinite(b):
        raise ValueError(f"b must be a finite number, got {b!r}")
    saved_per_token = (8 * text_bytes - total_bits) / tokens
    return (saved_per_token + b) / math.log2(flops_per_token)


def token_windows(count: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` windows of at most ``size`` of ``count`` tokens, as the authors
    cut a text at ``max_sample_length`` tokens; each window's first token is context only,
    so a last window of one token (nothing to score) joins none and is left out."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"a window must hold at least 2 tokens, got {size!r}")
    if count < 2:
        raise ValueError(
            f"the text is {count} token(s) long: at least 2 are needed (the first is context)"
        )
    return [(start, min(start + size, count)) for start in range(0, count - 1, size)]


def _check(text_bytes: int, total_bits: float) -> None:
    if isinstance(text_bytes, bool) or not isinstance(text_bytes, int) or text_bytes < 1:
        raise ValueError(f"text_bytes must be an integer >= 1, got {text_bytes!r}")
    if not (math.isfinite(total_bits) and total_bits >= 0):
        raise ValueError(f"total_bits must be a finite number >= 0, got {total_bits!r}")
