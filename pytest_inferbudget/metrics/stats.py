"""Summary statistics of per-request samples."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pytest_inferbudget.vocabulary import QUANTILES


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics.

    Hyndman and Fan's definition 7, the default of numpy and R, so a figure here
    matches what a user recomputes from the JSON report.
    """
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    if fraction == 0.0 or ordered[lower] == ordered[upper]:
        return ordered[lower]  # no interpolation: inf - inf would make an infinite bound nan
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _quantile_of(q: float) -> Callable[[Sequence[float]], float]:
    return lambda values: quantile(values, q)


STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": _mean,
    **{name: _quantile_of(q) for name, q in QUANTILES.items()},
    "max": max,
}
"""The statistics a budget's ``stat`` may name (``vocabulary.Statistic``), as functions."""


def summarize(values: Sequence[float], stat: str) -> float:
    if stat not in STATISTICS:
        raise ValueError(f"unknown statistic {stat!r}; choose one of {', '.join(STATISTICS)}")
    if not values:
        raise ValueError("no values to summarize")
    return STATISTICS[stat](values)
