"""JSON has no infinity and no NaN: how records write the floats JSON cannot hold."""

from __future__ import annotations

import math


def encode_float(value: float | None) -> float | str | None:
    """JSON has no infinity; cost-of-pass with no success is infinite, written "inf"."""
    if value is not None and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decode_float(value: float | str | None) -> float | None:
    return float(value) if isinstance(value, str) else value
