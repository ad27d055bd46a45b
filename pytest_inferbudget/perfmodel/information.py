"""Information capacity of a model on a text: its code length, and the FLOPs it spent.

Where the engine's prompt log-probabilities (the optional ``text_logprobs`` of the Engine
protocol) meet the FLOPs model (``N`` of :func:`~pytest_inferbudget.perfmodel.flops.
mean_token_flops`); the formula is the pure
:func:`~pytest_inferbudget.metrics.information_capacity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_inferbudget.metrics.information import (
    DEFAULT_NUMERATOR_BIAS,
    bits_per_byte,
    code_length_bits,
    information_capacity,
)

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine
    from pytest_inferbudget.records import TextMeasurement

DEFAULT_WINDOW_TOKENS = 1024
"""The authors' ``max_sample_length``: each sample is cut at 1,024 tokens."""


def measure_text(
    engine: Engine,
    text: str,
    *,
    name: str = "",
    b: float = DEFAULT_NUMERATOR_BIAS,
    window_tokens: int = DEFAULT_WINDOW_TOKENS,
) -> TextMeasurement:
    """Score ``text`` with ``engine`` and compute its bits per byte and information
    capacity; ``N`` is the FLOPs per token over a window of ``window_tokens``, as the
    authors take it over their ``max_sample_length``."""
    from pytest_inferbudget.engines import text_scorer
    from pytest_inferbudget.perfmodel.flops import mean_token_flops
    from pytest_inferbudget.perfmodel.predictions import model_shape
    from pytest_inferbudget.records import TextMeasurement

    if not isinstance(text, str) or not text:
        raise ValueError(f"measure_text takes a non-empty string, got {text!r}")
    scored = text_scorer(engine).text_logprobs(text, window_tokens=window_tokens)
    flops = mean_token_flops(model_shape(engine.describe(), "information capacity"), window_tokens)
    bits = code_length_bits(scored.logprobs)
    return TextMeasurement(
        name=name,
        text_bytes=len(text.encode("utf-8")),
        scored_bytes=scored.scored_bytes,
        scored_tokens=scored.scored_tokens,
        tokens=scored.tokens,
        total_bits=bits,
        flops_per_token=flops,
        b=b,
        window_tokens=window_tokens,
        engine=engine.spec,
        information_capacity=information_capacity(
            scored.scored_bytes, bits, flops, tokens=scored.scored_tokens, b=b
        ),
        bits_per_byte=bits_per_byte(scored.scored_bytes, bits),
    )


def text_figure(
    key: str, texts: Sequence[TextMeasurement], name: str | None
) -> tuple[float | None, int, str]:
    """``(figure, texts used, why unmeasured)`` of ``information_capacity`` or
    ``bits_per_byte`` over the text named ``name``, or over every text pooled: bits and
    bytes summed, the capacity's per-token terms over all scored tokens (one ``N``)."""
    chosen = [t for t in texts if name is None or t.name == name]
    if not chosen:
        known = ", ".join(repr(t.name) for t in texts)
        wanted = f"no text named {name!r}" if name else "no text"
        also = f" (it measured {known})" if known else ""
        return None, 0, f"the test measured {wanted} with infer.measure_text{also}"
    if len({(t.flops_per_token, t.b) for t in chosen}) > 1:
        reason = "the texts were measured with different windows or b; name one with text="
        return None, len(chosen), reason
    scored_bytes = sum(t.scored_bytes for t in chosen)
    bits = math.fsum(t.total_bits for t in chosen)
    if key == "bits_per_byte":
        return bits_per_byte(scored_bytes, bits), len(chosen), ""
    tokens = sum(t.scored_tokens for t in chosen)
    first = chosen[0]
    figure = information_capacity(
        scored_bytes, bits, first.flops_per_token, tokens=tokens, b=first.b
    )
    return figure, len(chosen), ""
