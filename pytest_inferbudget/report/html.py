"""A run as one self-contained HTML page, its plots inline SVG drawn here.

No network: no external script, style sheet, font or image, and a Content-Security-Policy
that forbids loading any and allows only the page's own script (by hash). Every text that
comes from a test or a model is escaped with :func:`html.escape`.

Plots: per test, the per-request latency (and time to first token) as a strip plot over
a box plot, against the test's budget lines, the baseline's distribution beside the
current one when a baseline run is given; and an accuracy-cost frontier of the tests that
recorded scores (fraction correct against mean completion tokens per scored sample).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from pytest_inferbudget.metrics.stats import quantile
from pytest_inferbudget.records import BudgetResult, RunRecord, TestRecord, Trace
from pytest_inferbudget.report.history import Series, history_section
from pytest_inferbudget.report.load_html import load_sections
from pytest_inferbudget.report.markdown import (
    budget_cells,
    describe_run,
    parse_run,
    run_totals,
    shorten,
)
from pytest_inferbudget.report.svg import (
    coord as _n,
    extent as _extent,
    nice_ticks,
    tick_label as _tick_label,
)
from pytest_inferbudget.report.terminal import format_value

if TYPE_CHECKING:
    from pytest_inferbudget.records import Comparison

TRACES_SHOWN = 50
"""Requests listed per test; the rest are counted."""
OUTPUT_CHARS = 4000
PROMPT_CHARS = 1000

LATENCY_PLOTS: tuple[tuple[str, str, Callable[[Trace], float | None]], ...] = (
    ("ms_per_request", "ms per request", lambda t: t.e2e_ms),
    ("ttft_ms", "time to first token (ms)", lambda t: t.ttft_ms),
)

_SCRIPT = """(function () {
  var button = document.getElementById("ib-toggle");
  if (button) {
    button.addEventListener("click", function () {
      var all = document.querySelectorAll("details");
      var open = false;
      for (var i = 0; i < all.length; i++) { if (!all[i].open) { open = true; } }
      for (var j = 0; j < all.length; j++) { all[j].open = open; }
      button.textContent = open ? "Collapse all outputs" : "Expand all outputs";
    });
  }
  document.documentElement.setAttribute("data-ib-ready", "1");
})();"""

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #1f2328; max-width: 1100px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; }
h3 { font-size: 15px; margin: 18px 0 6px; word-break: break-all; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.fail, .regression { color: #b42318; font-weight: 600; }
.pass, .improvement { color: #1a7f37; }
.inconclusive, .unmeasured, .insignificant { color: #6e7781; }
section.test { border-top: 1px solid #d0d7de; padding-top: 6px; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; max-height: 20em;
      overflow: auto; font-size: 12px; }
svg { display: block; margin: 6px 0; font: 11px sans-serif; }
svg .axis { stroke: #8c959f; } svg .grid { stroke: #eaeef2; }
svg .box { fill: #ddf4ff; stroke: #0969da; } svg .box.baseline { fill: #eaeef2; stroke: #6e7781; }
svg .median { stroke: #0550ae; stroke-width: 2; } svg .baseline .median { stroke: #57606a; }
svg .pt { fill: #0969da; fill-opacity: 0.55; } svg .pt.baseline { fill: #6e7781; }
svg .budget { stroke: #cf222e; stroke-dasharray: 5 3; stroke-width: 1.5; }
svg .budget-label { fill: #cf222e; }
svg .frontier { fill: none; stroke: #1a7f37; stroke-width: 1.5; }
svg .dot { fill: #0969da; } svg .dot.baseline { fill: #ffffff; stroke: #6e7781; }
button { margin: 4px 0 12px; }
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{digest}'"
    )


def _budget_label(budget: BudgetResult) -> str:
    relation = "≤" if budget.direction == "at_most" else "≥"
    return f"{budget.stat} {relation} {budget.limit:g} {budget.unit}".strip()


def strip_plot(
    title: str,
    rows: Sequence[tuple[str, Sequence[float]]],
    budgets: Sequence[BudgetResult],
    unit: str,
) -> str:
    """Horizontal strip-over-box plot: one row per (label, samples), budget lines across.

    Each row shows every sample as a dot (jittered vertically, deterministically), the box
    from the first to the third quartile with the median, and whiskers to min and max.
    """
    rows = [(label, list(values)) for label, values in rows if values]
    if not rows:
        return ""
    left, right, top, row_height, bottom = 90.0, 24.0, 40.0, 46.0, 34.0
    width = 760.0
    height = top + row_height * len(rows) + bottom
    everything = [v for _, values in rows for v in values] + [b.limit for b in budgets]
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


def _score_point(test: TestRecord) -> tuple[float, float] | None:
    """(mean completion tokens per scored sample, fraction correct)."""
    if not test.scores:
        return None
    count = len(test.scores)
    return (
        sum(s.tokens for s in test.scores) / count,
        sum(bool(s.correct) for s in test.scores) / count,
    )


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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str]) -> str:
    """A table of escaped text; ``classes`` styles each row's last cell (a verdict)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row, css in zip(rows, classes, strict=True):
        cells = [f"<td>{escape(c)}</td>" for c in row[:-1]]
        cells.append(f'<td class="{escape(css)}">{escape(row[-1])}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in prompt)


def _outputs(test: TestRecord) -> str:
    if not test.traces:
        return ""
    rows = []
    for number, trace in enumerate(test.traces[:TRACES_SHOWN], 1):
        first = trace.responses[0].request.prompt if trace.responses else ""
        texts = [g.text for g in trace.generations]
        output = "\n\n---\n\n".join(texts) if len(texts) > 1 else "".join(texts)
        cost = f"{trace.completion_tokens} tokens, {format_value(trace.e2e_ms, 'ms')}" + (
            f", {trace.strategy}" if trace.strategy else ""
        )
        rows.append(
            f'<tr><td class="num">{number}</td>'
            f"<td><pre>{escape(shorten(_prompt_text(first), PROMPT_CHARS))}</pre></td>"
            f"<td><pre>{escape(shorten(output, OUTPUT_CHARS))}</pre></td>"
            + (
                f"<td><pre>{escape(shorten(trace.answer, PROMPT_CHARS))}</pre></td>"
                if trace.answer is not None
                else "<td></td>"
            )
            + f"<td>{escape(cost)}</td></tr>"
        )
    more = len(test.traces) - TRACES_SHOWN
    note = f"<p>{more} more request(s) not shown.</p>" if more > 0 else ""
    return (
        f"<details><summary>Requests and outputs ({len(test.traces)})</summary>"
        "<table><thead><tr><th>#</th><th>prompt</th><th>output</th><th>answer</th>"
        f"<th>cost</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{note}</details>"
    )


def _test_section(index: int, test: TestRecord, baseline: TestRecord | None) -> str:
    parts = [
        f'<section class="test" id="test-{index}"><h3>{escape(test.nodeid)}'
        + (
            f' <span class="{escape(test.outcome)}">({escape(test.outcome)})</span>'
            if test.outcome
            else ""
        )
        + "</h3>"
    ]
    if test.budgets:
        parts.append(
            _table(
                ("budget", "limit", "measured", "interval", "verdict"),
                [budget_cells(b) for b in test.budgets],
                [b.verdict for b in test.budgets],
            )
        )
        reasons = [b for b in test.budgets if b.verdict != "pass" and b.reason]
        if reasons:
            parts.append(
                "<ul>"
                + "".join(f"<li>{escape(b.key)}: {escape(b.reason)}</li>" for b in reasons)
                + "</ul>"
            )
    for key, title, read in LATENCY_PLOTS:
        rows: list[tuple[str, list[float]]] = []
        if baseline is not None:
            rows.append(("baseline", [v for t in baseline.traces if (v := read(t)) is not None]))
        rows.append(("current", [v for t in test.traces if (v := read(t)) is not None]))
        budgets = [b for b in test.budgets if b.key == key and math.isfinite(b.limit)]
        parts.append(strip_plot(title, rows, budgets, "ms"))
    parts.append(load_sections(test))
    parts.append(_outputs(test))
    parts.append("</section>")
    return "".join(parts)


def _calm(test: TestRecord, attention: Sequence[str]) -> bool:
    return test.outcome in ("passed", "") and not any(f" {test.nodeid} " in a for a in attention)


def _comparison_section(comparison: Comparison, title: str = "") -> str:
    from pytest_inferbudget.report.comparison import (
        COMPARISON_HEADER,
        comparison_rows,
        summary_line,
    )

    rows = comparison_rows(comparison, grouped=True)
    verdicts = [c.verdict for c in comparison.changes]
    parts = [
        f"<h2>{escape(title or 'Comparison with baseline run ' + comparison.baseline_run_id)}</h2>",
        f'<p class="{"regression" if comparison.regressions else ""}">'
        f"{escape(summary_line(comparison))}</p>",
    ]
    if rows:
        parts.append(_table(COMPARISON_HEADER, rows, verdicts))
    for label, nodeids in (("Added", comparison.added), ("Removed", comparison.removed)):
        if nodeids:
            items = "".join(f"<li>{escape(n)}</li>" for n in nodeids)
            parts.append(f"<p>{label} tests:</p><ul>{items}</ul>")
    return "".join(parts)


def _definition_list(pairs: Sequence[tuple[str, str]]) -> str:
    return (
        "<table>"
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in pairs)
        + "</table>"
    )


def render_history_page(sections: Sequence[tuple[str, Sequence[Series]]]) -> str:
    """``inferbudget history --html``: per hardware key, every metric over its saved runs."""
    body = ["<h1>pytest-inferbudget history</h1>"]
    body += [history_section(series, heading=key) for key, series in sections]
    return _page("pytest-inferbudget history", body)


def render_html(
    run: dict[str, Any],
    comparison: Comparison | None,
    baseline: dict[str, Any] | None = None,
    history: Sequence[Series] = (),
) -> str:
    """The page: run description and totals, comparison, frontier, every test, and the
    history of saved runs on this hardware key when given."""
    record = parse_run(run)
    base_record: RunRecord | None = parse_run(baseline) if baseline is not None else None
    base_tests = {t.nodeid: t for t in base_record.tests} if base_record else {}
    title = f"pytest-inferbudget run {record.run_id}"
    body = [f"<h1>{escape(title)}</h1>", _definition_list(describe_run(record))]
    from pytest_inferbudget.report.attention import attention_lines

    first = attention_lines(record.tests, [comparison, record.ab_comparison])
    if first:
        items = "".join(f"<li>{escape(line)}</li>" for line in first)
        body.append(f'<h2 class="fail">Needs attention ({len(first)})</h2><ul>{items}</ul>')
    body += ["<h2>Totals</h2>", _definition_list(run_totals(record))]
    if comparison is not None:
        body.append(_comparison_section(comparison))
    if record.ab_comparison is not None:
        ab = record.ab_comparison
        body.append(_comparison_section(ab, f"Interleaved A/B: {ab.baseline_label}"))
    scored = [(t.nodeid, p) for t in record.tests if (p := _score_point(t)) is not None]
    if scored:
        base_scored = [
            (t.nodeid, p)
            for nodeid, _ in scored
            if (t := base_tests.get(nodeid)) is not None and (p := _score_point(t)) is not None
        ]
        body.append("<h2>Accuracy and cost</h2>")
        body.append(frontier_plot(scored, base_scored))
        legend = [
            (str(n), name, f"{acc:.1%}", f"{cost:.1f}")
            for n, (name, (cost, acc)) in enumerate(scored, 1)
        ]
        body.append(_table(("#", "test", "accuracy", "mean tokens"), legend, ["num"] * len(legend)))
    body.append("<h2>Tests</h2>")
    body.append('<button type="button" id="ib-toggle">Expand all outputs</button>')
    calm = [i for i, t in enumerate(record.tests) if _calm(t, first)]
    body += [
        _test_section(index, test, base_tests.get(test.nodeid))
        for index, test in enumerate(record.tests)
        if index not in calm
    ]
    if calm:  # passed, nothing to look at: collapsed
        body.append(f"<details><summary>{len(calm)} test(s) passed with nothing to note</summary>")
        body += [
            _test_section(i, record.tests[i], base_tests.get(record.tests[i].nodeid)) for i in calm
        ]
        body.append("</details>")
    body.append(history_section(history, highlight=record.run_id))
    return _page(title, body)


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(part for part in body if part)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )
