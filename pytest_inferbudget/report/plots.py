"""The HTML report's plots, inline SVG drawn here: per-request latency as a strip plot
over a box plot (the baseline's beside, with the comparison's change and interval), and
the accuracy-cost frontier. Every text from a test or a model is escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from pytest_inferbudget.metrics.stats import quantile
from pytest_inferbudget.records import BudgetResult, Score, TestRecord
from pytest_inferbudget.report.svg import (
    coord as _n,
    extent as _extent,
    nice_ticks,
    tick_label as _tick_label,
)
from pytest_inferbudget.report.terminal import format_value

if TYPE_CHECKING:
    from pytest_inferbudget.records import MetricChange


def _budget_label(budget: BudgetResult) -> str:
    relation = "≤" if budget.direction == "at_most" else "≥"
    return f"{budget.stat} {relation} {budget.limit:g} {budget.unit}".strip()


def change_caption(change: MetricChange) -> str:
    """``change +12.3% [+5.0%, +20.1%]: REGRESSION (Holm p 0.003)``: the comparison's
    judgement of the metric a plot shows, in the words of the comparison table."""
    from pytest_inferbudget.report.comparison import format_change, format_p, format_verdict

    text = format_change(change)
    if change.ci_low is not None and change.ci_high is not None and "[" not in text:
        text += f" [{change.ci_low:+.1%}, {change.ci_high:+.1%}]"  # the table shows it apart
    return f"change {text} vs baseline: {format_verdict(change)} ({format_p(change)})"


def _change_interval(change: MetricChange | None) -> tuple[float, float] | None:
    """Where the current median may lie by the change's interval, in the plot's unit."""
    if change is None or change.ci_low is None or change.ci_high is None:
        return None
    base = change.baseline_median
    bounds = (base * (1 + change.ci_low), base * (1 + change.ci_high))
    return bounds if all(math.isfinite(b) for b in bounds) else None


def strip_plot(
    title: str,
    rows: Sequence[tuple[str, Sequence[float]]],
    budgets: Sequence[BudgetResult],
    unit: str,
    change: MetricChange | None = None,
) -> str:
    """Horizontal strip-over-box plot: one row per (label, samples), budget lines across.

    Each row shows every sample as a dot (jittered vertically, deterministically), the box
    from the first to the third quartile with the median, and whiskers to min and max.
    With a comparison's ``change`` of this metric, its caption sits under the title and
    the interval it puts on the current median is drawn under the current row.
    """
    rows = [(label, list(values)) for label, values in rows if values]
    if not rows:
        return ""
    interval = _change_interval(change)
    left, right, row_height, bottom = 90.0, 24.0, 46.0, 34.0
    top = 40.0 if change is None else 56.0
    width = 760.0
    height = top + row_height * len(rows) + bottom
    everything = [v for _, values in rows for v in values] + [b.limit for b in budgets]
    everything += list(interval or ())
    low, high = _extent(everything)
    low = max(low, 0.0) if min(everything) >= 0 else low

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (width - left - right)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" class="ib-plot" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_n(left)}" y="14" font-weight="600">{escape(title)}</text>',
    ]
    if change is not None:
        kind = change.verdict.value
        parts.append(
            f'<text class="change {escape(kind)}" x="{_n(left)}" y="30">'
            f"{escape(change_caption(change))}</text>"
        )
    axis_y = top + row_height * len(rows)
    for tick in nice_ticks(low, high):
        tx = x(tick)
        parts.append(
            f'<line class="grid" x1="{_n(tx)}" y1="{_n(top)}" x2="{_n(tx)}" y2="{_n(axis_y)}"/>'
            f'<line class="axis" x1="{_n(tx)}" y1="{_n(axis_y)}" x2="{_n(tx)}" '
            f'y2="{_n(axis_y + 4)}"/>'
            f'<text x="{_n(tx)}" y="{_n(axis_y + 16)}" text-anchor="middle">'
            f"{escape(_tick_label(tick))}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{_n(left)}" y1="{_n(axis_y)}" x2="{_n(width - right)}" '
        f'y2="{_n(axis_y)}"/>'
        f'<text x="{_n(width - right)}" y="{_n(axis_y + 30)}" text-anchor="end">'
        f"{escape(unit)}</text>"
    )
    for index, (label, values) in enumerate(rows):
        kind = "baseline" if label == "baseline" else "current"
        middle = top + row_height * index + row_height / 2
        q1, median, q3 = (quantile(values, q) for q in (0.25, 0.5, 0.75))
        parts.append(f'<g class="{kind}">')
        parts.append(
            f'<text x="{_n(left - 8)}" y="{_n(middle + 4)}" text-anchor="end">'
            f"{escape(label)} (n={len(values)})</text>"
            f'<line class="axis" x1="{_n(x(min(values)))}" y1="{_n(middle)}" '
            f'x2="{_n(x(max(values)))}" y2="{_n(middle)}"/>'
            f'<rect class="box {kind}" x="{_n(x(q1))}" y="{_n(middle - 10)}" '
            f'width="{_n(max(1.0, x(q3) - x(q1)))}" height="20"/>'
            f'<line class="median" x1="{_n(x(median))}" y1="{_n(middle - 10)}" '
            f'x2="{_n(x(median))}" y2="{_n(middle + 10)}"/>'
        )
        for position, value in enumerate(values):
            jitter = ((position * 0.6180339887) % 1.0 - 0.5) * 26.0
            parts.append(
                f'<circle class="pt {kind}" cx="{_n(x(value))}" cy="{_n(middle + jitter)}" '
                f'r="3"><title>{escape(format_value(value, unit))}</title></circle>'
            )
        if interval is not None and change is not None and kind == "current":
            low_x, high_x, bar_y = x(interval[0]), x(interval[1]), middle + 18
            parts.append(
                f'<g class="interval"><line x1="{_n(low_x)}" y1="{_n(bar_y)}" '
                f'x2="{_n(high_x)}" y2="{_n(bar_y)}"/>'
                f'<line x1="{_n(low_x)}" y1="{_n(bar_y - 4)}" x2="{_n(low_x)}" '
                f'y2="{_n(bar_y + 4)}"/><line x1="{_n(high_x)}" y1="{_n(bar_y - 4)}" '
                f'x2="{_n(high_x)}" y2="{_n(bar_y + 4)}"/>'
                f"<title>{escape(change_caption(change))}</title></g>"
            )
        parts.append("</g>")
    for budget in budgets:
        bx = x(budget.limit)
        fraction = (bx - left) / (width - left - right)
        anchor = "start" if fraction < 0.2 else "end" if fraction > 0.8 else "middle"
        parts.append(
            f'<line class="budget" x1="{_n(bx)}" y1="{_n(top - 8)}" x2="{_n(bx)}" '
            f'y2="{_n(axis_y)}"/>'
            f'<text class="budget-label" x="{_n(bx)}" y="{_n(top - 11)}" text-anchor="{anchor}">'
            f"budget {escape(_budget_label(budget))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _score_point(scores: Sequence[Score]) -> tuple[float, float]:
    """(mean completion tokens per scored sample, fraction correct)."""
    count = len(scores)
    return (
        sum(s.tokens for s in scores) / count,
        sum(bool(s.correct) for s in scores) / count,
    )


def score_points(test: TestRecord) -> list[tuple[str, tuple[float, float]]]:
    """The test's points on the accuracy-cost frontier: one, or one per strategy when the
    test scored several on its problems (a routed strategy beside its ``versus=``
    baseline), labelled ``nodeid [strategy]``."""
    groups: dict[str, list[Score]] = {}
    for score in test.scores:
        groups.setdefault(score.strategy, []).append(score)
    if len(groups) <= 1:
        return [(test.nodeid, _score_point(test.scores))] if test.scores else []
    return [
        (f"{test.nodeid} [{name or 'plain requests'}]", _score_point(group))
        for name, group in groups.items()
    ]


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and accuracy (higher)."""
    frontier: list[tuple[float, float]] = []
    for cost, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not frontier or accuracy > frontier[-1][1]:
            frontier.append((cost, accuracy))
    return frontier


def frontier_plot(
    current: Sequence[tuple[str, tuple[float, float]]],
    baseline: Sequence[tuple[str, tuple[float, float]]],
) -> str:
    """Accuracy against mean tokens, one numbered dot per test; the frontier as a line."""
    if not current:
        return ""
    left, right, top, bottom, width, height = 56.0, 24.0, 28.0, 44.0, 760.0, 380.0
    costs = [p[0] for _, p in (*current, *baseline)]
    high = max(costs) * 1.1 if max(costs) > 0 else 1.0

    def x(cost: float) -> float:
        return left + cost / high * (width - left - right)

    def y(accuracy: float) -> float:
        return top + (1.0 - accuracy) * (height - top - bottom)

    title = "Accuracy-cost frontier"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" class="ib-plot ib-frontier" '
        f'aria-label="{title}"><title>{title}</title>'
        f'<text x="{_n(left)}" y="14" font-weight="600">{title}</text>'
    ]
    for tick in nice_ticks(0.0, 1.0):
        parts.append(
            f'<line class="grid" x1="{_n(left)}" y1="{_n(y(tick))}" x2="{_n(width - right)}" '
            f'y2="{_n(y(tick))}"/><text x="{_n(left - 6)}" y="{_n(y(tick) + 4)}" '
            f'text-anchor="end">{tick:g}</text>'
        )
    for tick in nice_ticks(0.0, high):
        parts.append(
            f'<text x="{_n(x(tick))}" y="{_n(height - bottom + 16)}" text-anchor="middle">'
            f"{escape(_tick_label(tick))}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{_n(left)}" y1="{_n(height - bottom)}" '
        f'x2="{_n(width - right)}" y2="{_n(height - bottom)}"/>'
        f'<line class="axis" x1="{_n(left)}" y1="{_n(top)}" x2="{_n(left)}" '
        f'y2="{_n(height - bottom)}"/>'
        f'<text x="{_n(width - right)}" y="{_n(height - 8)}" text-anchor="end">'
        "mean completion tokens per scored sample</text>"
        f'<text transform="translate(14 {_n((top + height - bottom) / 2)}) rotate(-90)" '
        'text-anchor="middle">accuracy (fraction correct)</text>'
    )
    frontier = pareto_frontier([p for _, p in current])
    if len(frontier) > 1:
        path = " ".join(f"{_n(x(c))},{_n(y(a))}" for c, a in frontier)
        parts.append(f'<polyline class="frontier" points="{path}"/>')
    for kind, points in (("baseline", baseline), ("current", current)):
        for number, (name, (cost, accuracy)) in enumerate(points, 1):
            tip = f"{name}: {accuracy:.1%} correct, {cost:.1f} tokens" + (
                " (baseline)" if kind == "baseline" else ""
            )
            parts.append(
                f'<g><circle class="dot {kind}" cx="{_n(x(cost))}" cy="{_n(y(accuracy))}" '
                f'r="5"><title>{escape(tip)}</title></circle>'
                f'<text x="{_n(x(cost) + 7)}" y="{_n(y(accuracy) - 6)}">{number}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)
