"""Budget specs: parsed and checked at collection, judged against records after the test.

A budget marker holds limits (``ms_per_request=1500``) and modifiers (``stat="p95"``).
A marker's ``stat`` applies to the limits in that same marker, so one test can hold a
mean and a tail limit on the same key through two markers; the same key with the same
statistic given two different limits is a conflict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_inferbudget.errors import BudgetSpecError
from pytest_inferbudget.metrics import STATISTICS, summarize

if TYPE_CHECKING:
    from pytest_inferbudget.records import BudgetResult, Response

DEFAULT_STAT = "mean"


@dataclass(frozen=True, slots=True)
class BudgetMetric:
    """A quantity a budget key limits, and how to read it off one response."""

    key: str
    unit: str
    samples: Callable[[Response], Sequence[float | None]]
    fixed_stat: str | None = None
    """Set for keys whose statistic is part of their meaning (``max_tokens`` is a maximum)."""
    unmeasured_hint: str = ""


BUDGET_METRICS: dict[str, BudgetMetric] = {
    metric.key: metric
    for metric in (
        BudgetMetric(
            "max_tokens",
            "tokens",
            lambda r: [g.completion_tokens for g in r.generations],
            fixed_stat="max",
        ),
        BudgetMetric("tokens_per_request", "tokens", lambda r: [r.completion_tokens]),
        BudgetMetric(
            "ms_per_request",
            "ms",
            lambda r: [r.e2e_ms],
            unmeasured_hint="the engine measured no end-to-end time (replayed results carry none)",
        ),
        BudgetMetric(
            "ttft_ms",
            "ms",
            lambda r: [r.ttft_ms],
            unmeasured_hint="the engine measured no time to first token",
        ),
        BudgetMetric(
            "tpot_ms",
            "ms",
            lambda r: [r.tpot_ms],
            unmeasured_hint="time per output token needs a completion of two or more tokens",
        ),
    )
}

MODIFIERS = ("stat",)

PLANNED_KEYS = frozenset(
    {
        "joules_per_token",
        "joules_per_request",
        "eff_at_k",
        "pass_at_k",
        "cost_of_pass",
        "idealized_ms_per_request",
        "confidence",
        "hardware",
    }
)
"""Keys DESIGN.md names that this version does not check yet: refused, never ignored."""


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    key: str
    limit: float
    stat: str

    @property
    def metric(self) -> BudgetMetric:
        return BUDGET_METRICS[self.key]


def parse_marker_kwargs(kwargs: Mapping[str, Any], *, where: str) -> list[BudgetLimit]:
    """Validate one ``budget`` marker's keywords; ``where`` names the test in errors."""
    stat = kwargs.get("stat", DEFAULT_STAT)
    if not isinstance(stat, str) or stat not in STATISTICS:
        raise BudgetSpecError(
            f"{where}: budget stat={stat!r} is not a statistic; "
            f"use one of {', '.join(repr(s) for s in STATISTICS)}"
        )
    limits = []
    for key, value in kwargs.items():
        if key in MODIFIERS:
            continue
        if key not in BUDGET_METRICS:
            raise BudgetSpecError(_unknown_key_message(key, where))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BudgetSpecError(
                f"{where}: budget {key}={value!r} must be a number "
                f"(in {BUDGET_METRICS[key].unit}), got {type(value).__name__}"
            )
        if not math.isfinite(value) or value <= 0:
            raise BudgetSpecError(
                f"{where}: budget {key}={value!r} must be a finite number above 0 "
                f"(in {BUDGET_METRICS[key].unit})"
            )
        metric = BUDGET_METRICS[key]
        limits.append(BudgetLimit(key, float(value), metric.fixed_stat or stat))
    if not limits:
        raise BudgetSpecError(
            f"{where}: budget marker sets no limit; give at least one of "
            f"{', '.join(BUDGET_METRICS)}"
        )
    return limits


def _unknown_key_message(key: str, where: str) -> str:
    if key in PLANNED_KEYS:
        return (
            f"{where}: budget key {key!r} is not supported by this version of "
            f"pytest-inferbudget yet; supported keys: {', '.join(BUDGET_METRICS)}"
        )
    known = [*BUDGET_METRICS, *MODIFIERS]
    import difflib  # only on this error path: start-up stays light

    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{where}: unknown budget key {key!r}; {hint}known keys: {', '.join(known)}"


def parse_markers(
    markers: Iterable[tuple[Sequence[Any], Mapping[str, Any]]], *, where: str
) -> tuple[BudgetLimit, ...]:
    """Merge several ``budget`` markers (``(args, kwargs)`` each) into one set of limits."""
    merged: dict[tuple[str, str], BudgetLimit] = {}
    for args, kwargs in markers:
        if args:
            raise BudgetSpecError(
                f"{where}: budget takes keyword limits only, such as "
                f"@pytest.mark.budget(ms_per_request=500); got positional {tuple(args)!r}"
            )
        for limit in parse_marker_kwargs(kwargs, where=where):
            slot = (limit.key, limit.stat)
            earlier = merged.get(slot)
            if earlier is not None and earlier.limit != limit.limit:
                raise BudgetSpecError(
                    f"{where}: budget markers conflict on {limit.key} (stat {limit.stat}): "
                    f"{_number(earlier.limit)} vs {_number(limit.limit)}; keep one"
                )
            merged[slot] = limit
    return tuple(merged.values())


def evaluate(limits: Iterable[BudgetLimit], responses: Sequence[Response]) -> list[BudgetResult]:
    """Judge each limit against every response the test recorded."""
    from pytest_inferbudget.records import BudgetResult

    results = []
    for limit in limits:
        metric = limit.metric
        samples = [
            value
            for response in responses
            for value in metric.samples(response)
            if value is not None
        ]
        if not samples:
            reason = (
                "the test recorded no generation"
                if not responses
                else metric.unmeasured_hint or f"no request measured {limit.key}"
            )
            results.append(
                BudgetResult(
                    limit.key, limit.limit, limit.stat, metric.unit, None, 0, "unmeasured", reason
                )
            )
            continue
        measured = summarize(samples, limit.stat)
        verdict = "pass" if measured <= limit.limit else "fail"
        results.append(
            BudgetResult(
                limit.key, limit.limit, limit.stat, metric.unit, measured, len(samples), verdict
            )
        )
    return results


def _number(value: float) -> str:
    return f"{value:g}"
