"""How each test's metrics moved over the saved runs of one hardware key, in commit order,
with the change points PELT finds (:mod:`pytest_inferbudget.metrics.changepoint`): the
``inferbudget history`` command and the History section of the HTML report.

A run contributes one value per test and metric: the median of its per-request samples
(cost metrics: what the comparison's medians are) or the measured value of an accuracy
budget (``pass_at_k@4``). Every chart has its table beside it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from pytest_inferbudget.budget import KEYS
from pytest_inferbudget.metrics.changepoint import Step, log_steps
from pytest_inferbudget.records import RunRecord
from pytest_inferbudget.report.svg import coord, extent, nice_ticks, tick_label
from pytest_inferbudget.report.terminal import format_value
from pytest_inferbudget.verdicts import samples_of

__all__ = ["Point", "Series", "history_series", "history_table", "series_svg"]


@dataclass(frozen=True, slots=True)
class Point:
    """One saved run's value of one metric of one test."""

    run_id: str
    label: str
    """The commit (12 hex digits) or, outside git, the run's start time."""
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    nodeid: str
    metric: str
    unit: str
    points: tuple[Point, ...]
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "nodeid": self.nodeid,
            "metric": self.metric,
            "unit": self.unit,
            "points": [
                {"run_id": p.run_id, "label": p.label, "value": p.value} for p in self.points
            ],
            "change_points": [
                {"index": s.index, "run_id": self.points[s.index].run_id, "factor": s.factor}
                for s in self.steps
            ],
        }


def _order(run: RunRecord) -> tuple[str, str]:
    """Commit order: a run's commit time where git gave one, else its start time."""
    commit_time = run.commit.time if run.commit is not None else None
    return (commit_time or run.started_at, run.started_at)


def _label(run: RunRecord) -> str:
    if run.commit is not None:
        return run.commit.id[:12] + ("-dirty" if run.commit.dirty else "")
    return run.started_at[:19]


def _values(run: RunRecord) -> dict[tuple[str, str], tuple[str, float]]:
    found = {}
    for test in run.tests:
        traces = [t for t in test.traces if t.generations]
        for name, key in KEYS.items():
            if not key.compared or key.accuracy:
                continue
            values = [v for v in samples_of(name, traces) if math.isfinite(v)]
            if values:
                found[(test.nodeid, name)] = (key.unit, statistics.median(values))
        for budget in test.budgets:
            accuracy = KEYS.get(budget.key.partition("@")[0])
            if accuracy is not None and accuracy.accuracy and budget.measured is not None:
                found[(test.nodeid, budget.key)] = (budget.unit, budget.measured)
    return found


def history_series(runs: Sequence[RunRecord], *, min_runs: int = 2) -> list[Series]:
    """Every (test, metric) measured in at least ``min_runs`` of ``runs``, in commit order,
    with its change points (on the log scale; none where a value is 0 or below)."""
    ordered = sorted(runs, key=_order)
    table: dict[tuple[str, str], tuple[str, list[Point]]] = {}
    for run in ordered:
        for where, (unit, value) in _values(run).items():
            table.setdefault(where, (unit, []))[1].append(Point(run.run_id, _label(run), value))
    series = []
    for (nodeid, metric), (unit, points) in sorted(table.items()):
        if len(points) < min_runs:
            continue
        steps = tuple(log_steps([p.value for p in points]))
        series.append(Series(nodeid, metric, unit, tuple(points), steps))
    return series


def history_table(series: Sequence[Series]) -> list[tuple[str, ...]]:
    """One row per series: runs, first and latest value, and each change point."""
    rows: list[tuple[str, ...]] = []
    for s in series:
        steps = "; ".join(
            f"{s.points[step.index].label}: {step.factor - 1:+.0%}" for step in s.steps
        )
        rows.append(
            (
                s.nodeid,
                s.metric,
                str(len(s.points)),
                format_value(s.points[0].value, s.unit),
                format_value(s.points[-1].value, s.unit),
                steps or "-",
            )
        )
    return rows


HISTORY_HEADER = ("test", "metric", "runs", "first", "latest", "change points (PELT)")


def series_svg(series: Series, highlight: str = "") -> str:
    """A line over the runs, change points as dashed lines; the run ``highlight`` (an id)
    drawn larger. The commits label the axis."""
    values = [p.value for p in series.points]
    left, right, top, bottom, width, height = 70.0, 60.0, 26.0, 60.0, 760.0, 220.0
    low, high = extent(values)
    span = len(values) - 1 or 1

    def x(index: int) -> float:
        return left + index / span * (width - left - right)

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - bottom)

    title = f"{series.nodeid} {series.metric}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{coord(width)}" '
        f'height="{coord(height)}" viewBox="0 0 {coord(width)} {coord(height)}" role="img" '
        f'class="ib-plot" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="{coord(left)}" y="14" font-weight="600">{escape(title)}</text>',
    ]
    for tick in nice_ticks(low, high, 4):
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{coord(left)}" y1="{coord(ty)}" '
            f'x2="{coord(width - right)}" y2="{coord(ty)}"/>'
            f'<text x="{coord(left - 6)}" y="{coord(ty + 4)}" text-anchor="end">'
            f"{escape(tick_label(tick))}</text>"
        )
    for step in series.steps:
        sx = (x(step.index - 1) + x(step.index)) / 2
        parts.append(
            f'<line class="budget" x1="{coord(sx)}" y1="{coord(top)}" x2="{coord(sx)}" '
            f'y2="{coord(height - bottom)}"><title>change point: '
            f"{step.factor - 1:+.0%}</title></line>"
        )
    line = " ".join(f"{coord(x(i))},{coord(y(v))}" for i, v in enumerate(values))
    parts.append(f'<polyline class="frontier" points="{line}"/>')
    for i, point in enumerate(series.points):
        current = point.run_id == highlight
        parts.append(
            f'<circle class="dot{" current" if current else ""}" cx="{coord(x(i))}" '
            f'cy="{coord(y(point.value))}" r="{6 if current else 3}"><title>'
            f"{escape(point.label)}: {escape(format_value(point.value, series.unit))}"
            f"</title></circle>"
            f'<text transform="translate({coord(x(i))},{coord(height - bottom + 10)}) '
            f'rotate(40)" font-size="9">{escape(point.label[:12])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def history_section(series: Sequence[Series], highlight: str = "", heading: str = "") -> str:
    """The HTML fragment: a table of every series, then each series' chart."""
    if not series:
        return ""
    rows = history_table(series)
    head = "".join(f"<th>{escape(h)}</th>" for h in HISTORY_HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return (
        f"<h2>History{(': ' + escape(heading)) if heading else ''}</h2>"
        "<p>Each metric of each test over the saved runs of this hardware key, in commit "
        "order; dashed lines are change points found by PELT (Killick et al. 2012) on the "
        "log scale; the larger dot is the run reported.</p>"
        f"<table><tr>{head}</tr>{body}</table>" + "".join(series_svg(s, highlight) for s in series)
    )
