"""A run as one self-contained HTML page.

No network: no external script, style sheet, font or image, and a Content-Security-Policy
that forbids loading any and allows only the page's own script (by hash). Every text that
comes from a test or a model is escaped with :func:`html.escape`. The plots are inline
SVG from :mod:`pytest_inferbudget.report.plots`; the load, sweep and history sections
from their own modules.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from pytest_inferbudget.records import RunRecord, TestRecord, Trace
from pytest_inferbudget.report.history import Series, history_section
from pytest_inferbudget.report.load_html import load_sections
from pytest_inferbudget.report.markdown import (
    budget_cells,
    describe_run,
    parse_run,
    run_totals,
    shorten,
)
from pytest_inferbudget.report.plots import frontier_plot, score_points, strip_plot
from pytest_inferbudget.report.terminal import format_value, shows_reason

if TYPE_CHECKING:
    from pytest_inferbudget.records import Comparison, MetricChange

NUMERIC_COLUMNS = frozenset(
    {"baseline", "current", "change", "n", "threshold", "p", "limit", "measured", "interval"}
)
"""Right-aligned, unwrapped columns of the report's tables."""
TRACES_SHOWN = 50
"""Requests listed per test; the rest are counted."""
OUTPUT_CHARS = 4000
PROMPT_CHARS = 1000

LATENCY_PLOTS: tuple[tuple[str, str, Callable[[Trace], float | None]], ...] = (
    ("ms_per_request", "ms per request", lambda t: t.e2e_ms),
    ("ttft_ms", "time to first token (ms)", lambda t: t.ttft_ms),
    ("ttfat_ms", "time to first answer token (ms)", lambda t: _answer_time(t)),
)
"""Per-request latencies drawn for each test; TTFAT only where a request reasoned."""


def _answer_time(trace: Trace) -> float | None:
    """TTFAT of a trace that reasoned (else it is TTFT, drawn already)."""
    reasoned = any(g.reasoning_text or g.reasoning_tokens for g in trace.generations)
    return trace.ttfat_ms if reasoned else None


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
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.grouped tbody.group { border-top: 2px solid #8c959f; }
table.grouped td[title] { cursor: help; text-decoration: underline dotted #8c959f; }
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
svg .change { font-size: 11px; } svg .change.regression { fill: #cf222e; font-weight: 600; }
svg .change.improvement { fill: #1a7f37; } svg .interval line { stroke: #0550ae; stroke-width: 2; }
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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str]) -> str:
    """A table of escaped text; ``classes`` styles each row's last cell (a verdict)."""
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if h in NUMERIC_COLUMNS else f"<th>{escape(h)}</th>"
        for h in header
    )
    body = []
    for row, css in zip(rows, classes, strict=True):
        cells = [
            f'<td class="num">{escape(c)}</td>' if h in NUMERIC_COLUMNS else f"<td>{escape(c)}</td>"
            for h, c in zip(header, row[:-1], strict=False)
        ]
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


def _test_section(
    index: int,
    test: TestRecord,
    baseline: TestRecord | None,
    changes: Mapping[str, MetricChange] | None = None,
) -> str:
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
        reasons = [b for b in test.budgets if shows_reason(b)]
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
        if key == "ttfat_ms" and not any(values for _, values in rows):
            continue  # no request reasoned: nothing to draw beside TTFT
        budgets = [b for b in test.budgets if b.key == key and math.isfinite(b.limit)]
        change = (changes or {}).get(key) if baseline is not None else None
        parts.append(strip_plot(title, rows, budgets, "ms", change))
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
    parts = [
        f"<h2>{escape(title or 'Comparison with baseline run ' + comparison.baseline_run_id)}</h2>",
        f'<p class="{"regression" if comparison.regressions else ""}">'
        f"{escape(summary_line(comparison))}</p>",
    ]
    if rows:
        parts.append(_comparison_table(COMPARISON_HEADER, rows, comparison))
    for label, nodeids in (("Added", comparison.added), ("Removed", comparison.removed)):
        if nodeids:
            items = "".join(f"<li>{escape(n)}</li>" for n in nodeids)
            parts.append(f"<p>{label} tests:</p><ul>{items}</ul>")
    return "".join(parts)


def _comparison_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], comparison: Comparison
) -> str:
    """One row group (``tbody``) per test, its metrics beneath; numbers right-aligned and
    unwrapped; the p cell's tooltip says what judged the change and why."""
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if h in NUMERIC_COLUMNS else f"<th>{escape(h)}</th>"
        for h in header
    )
    groups, row_iter = [], iter(rows)
    for test in comparison.tests:
        body = []
        for change, row in zip(test.changes, row_iter, strict=False):
            cells = []
            for name, cell in zip(header, row, strict=True):
                if name == "verdict":
                    cells.append(f'<td class="{escape(change.verdict)}">{escape(cell)}</td>')
                elif name == "p":
                    tip = f"judged by {change.method}" + (
                        f": {change.detail}" if change.detail else ""
                    )
                    cells.append(f'<td class="num" title="{escape(tip)}">{escape(cell)}</td>')
                else:
                    css = ' class="num"' if name in NUMERIC_COLUMNS else ""
                    cells.append(f"<td{css}>{escape(cell)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        groups.append(f'<tbody class="group">{"".join(body)}</tbody>')
    return f'<table class="grouped"><thead><tr>{head}</tr></thead>{"".join(groups)}</table>'


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
    history_note: str = "",
) -> str:
    """The page: run description and totals, comparison, frontier, every test (its
    latency beside the baseline's, with the comparison's change, when ``baseline`` is the
    compared run), and the history of saved runs on this hardware key when given
    (``history_note`` names the saved runs it could not read)."""
    record = parse_run(run)
    base_record: RunRecord | None = parse_run(baseline) if baseline is not None else None
    base_tests = {t.nodeid: t for t in base_record.tests} if base_record else {}
    changes: dict[str, dict[str, MetricChange]] = {}
    for change in comparison.changes if comparison is not None else ():
        changes.setdefault(change.nodeid, {})[change.metric] = change
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
    if record.sweep is not None:
        from pytest_inferbudget.report.sweep import sweep_html

        body.append(sweep_html(record.sweep))
    scored = [point for test in record.tests for point in score_points(test)]
    if scored:
        base_points = dict(
            point
            for test in (base_record.tests if base_record else ())
            for point in score_points(test)
        )
        base_scored = [(name, base_points[name]) for name, _ in scored if name in base_points]
        body.append("<h2>Accuracy and cost</h2>")
        body.append(frontier_plot(scored, base_scored))
        legend = [
            (str(n), name, f"{acc:.1%}", f"{cost:.1f}")
            for n, (name, (cost, acc)) in enumerate(scored, 1)
        ]
        body.append(_table(("#", "test", "accuracy", "mean tokens"), legend, ["num"] * len(legend)))
    body.append("<h2>Tests</h2>")
    body.append('<button type="button" id="ib-toggle">Expand all outputs</button>')
    sections = {
        index: _test_section(index, test, base_tests.get(test.nodeid), changes.get(test.nodeid))
        for index, test in enumerate(record.tests)
    }
    calm = [i for i, t in enumerate(record.tests) if _calm(t, first)]
    body += [section for index, section in sections.items() if index not in calm]
    if calm:  # passed, nothing to look at: collapsed
        body.append(f"<details><summary>{len(calm)} test(s) passed with nothing to note</summary>")
        body += [sections[i] for i in calm]
        body.append("</details>")
    body.append(history_section(history, highlight=record.run_id))
    if history_note:
        body.append(f'<p class="fail">{escape(history_note)}</p>')
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
