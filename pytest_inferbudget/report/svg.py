"""Small pieces every inline-SVG plot of the reports shares: coordinates, axis ticks."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["coord", "extent", "nice_ticks", "tick_label"]


def coord(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high], about ``count`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def tick_label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:.3g}"


def extent(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    span = high - low
    pad = span * 0.06 if span > 0 else (abs(high) * 0.1 or 1.0)
    return low - pad, high + pad
