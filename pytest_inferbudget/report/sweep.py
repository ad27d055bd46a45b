"""An engine sweep in the reports: one table per test and in total, the best engine
marked, the ``relative_to_best`` verdicts, and (HTML) bar charts of throughput and
latency per engine.

Text from engines and tests (ids, specs) is escaped by the Markdown and HTML renderers.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pytest_inferbudget.records.sweep import EngineFigures, EngineSweep
from pytest_inferbudget.report.svg import coord, nice_ticks, tick_label

__all__ = [
    "SWEEP_HEADER",
    "sweep_chart",
    "sweep_html",
    "sweep_lines",
    "sweep_markdown",
    "sweep_rows",
]

SWEEP_HEADER = (
    "test",
    "engine",
    "requests",
    "prompt tokens",
    "output tokens",
    "tokens/s",
    "ms/req p50",
    "p90",
    "p99",
    "ttft p50",
    "best",
)
BEST_MARK = "best"
TOTAL = "(total)"


def _ms(values: dict[str, float], stat: str) -> str:
    value = values.get(stat)
    return "-" if value is None else f"{value:.1f}"


def _row(test: str, f: EngineFigures) -> tuple[str, ...]:
    return (
        test,
        f.engine,
        str(f.requests),
        str(f.prompt_tokens),
        str(f.completion_tokens),
        "-" if f.tokens_per_s is None else f"{f.tokens_per_s:.1f}",
        _ms(f.ms_per_request, "p50"),
        _ms(f.ms_per_request, "p90"),
        _ms(f.ms_per_request, "p99"),
        _ms(f.ttft_ms, "p50"),
        BEST_MARK if f.best else "",
    )


def sweep_rows(sweep: EngineSweep) -> list[tuple[str, ...]]:
    """The total first, then each test; a test's id is shown on its first engine's row."""
    rows = [_row(TOTAL if i == 0 else "", f) for i, f in enumerate(sweep.total)]
    for test in sweep.tests:
        rows += [_row(test.test if i == 0 else "", f) for i, f in enumerate(test.engines)]
    return rows


def _headline(sweep: EngineSweep) -> str:
    best = sweep.best
    return f"engine sweep over {len(sweep.engines)} engines; best overall: " + (
        f"{best} ({sweep.criterion})" if best else "none measured"
    )


def sweep_lines(sweep: EngineSweep) -> list[str]:
    """The terminal summary's section."""
    from pytest_inferbudget.report.terminal import render_table

    lines = [_headline(sweep)]
    lines += [
        f"  {engine_id} = {info.get('spec', '')}" for engine_id, info in sweep.engines.items()
    ]
    lines += render_table(SWEEP_HEADER, sweep_rows(sweep))
    lines += [f"relative_to_best: {r.describe()}" for r in sweep.relative]
    return lines


def sweep_markdown(sweep: EngineSweep) -> list[str]:
    """The Markdown report's section (cells escaped by the caller's table)."""
    from pytest_inferbudget.report.markdown import _table, escape_markdown

    lines = ["### Engine sweep", "", escape_markdown(_headline(sweep)), ""]
    lines += _table(
        ("engine", "spec"), [(k, str(v.get("spec", ""))) for k, v in sweep.engines.items()]
    )
    lines.append("")
    lines += _table(SWEEP_HEADER, sweep_rows(sweep))
    lines.append("")
    if sweep.relative:
        lines += [
            f"- relative\\_to\\_best: {escape_markdown(r.describe())}" for r in sweep.relative
        ]
        lines.append("")
    return lines


def sweep_html(sweep: EngineSweep) -> str:
    """The HTML report's section: the table, the verdicts, two bar charts."""
    head = "".join(f"<th>{escape(h)}</th>" for h in SWEEP_HEADER)
    body = []
    for row in sweep_rows(sweep):
        css = ' class="pass"' if row[-1] == BEST_MARK else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    specs = "".join(
        f"<li><code>{escape(k)}</code>: <code>{escape(str(v.get('spec', '')))}</code></li>"
        for k, v in sweep.engines.items()
    )
    verdicts = "".join(
        f'<li class="{escape(str(r.verdict))}">{escape(r.describe())}</li>' for r in sweep.relative
    )
    total = sweep.total
    charts = [
        sweep_chart(
            [(f.engine, f.tokens_per_s, f.best) for f in total],
            "Output tokens per second of engine time (higher is better)",
        ),
        sweep_chart(
            [(f.engine, f.ms_per_request.get("p50"), f.best) for f in total],
            "Median ms per request (lower is better)",
        ),
    ]
    return (
        f"<h2>Engine sweep</h2><p>{escape(_headline(sweep))}</p><ul>{specs}</ul>"
        + "".join(c for c in charts if c)
        + f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + (f"<h3>relative_to_best</h3><ul>{verdicts}</ul>" if verdicts else "")
    )


def sweep_chart(bars: Sequence[tuple[str, float | None, bool]], title: str) -> str:
    """Horizontal bars, one per engine, the best one filled darker; "" when nothing was
    measured. Engines with no figure are listed with no bar."""
    values = [v for _, v, _ in bars if v is not None]
    if not values:
        return ""
    label_w, right, top, row_h = 220.0, 70.0, 28.0, 22.0
    width = 760.0
    height = top + row_h * len(bars) + 28.0
    high = max(values) * 1.05 or 1.0

    def x(value: float) -> float:
        return label_w + value / high * (width - label_w - right)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{coord(width)}" '
        f'height="{coord(height)}" viewBox="0 0 {coord(width)} {coord(height)}" role="img" '
        f'class="ib-plot ib-sweep" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="{coord(label_w)}" y="14" font-weight="600">{escape(title)}</text>'
    ]
    bottom = top + row_h * len(bars)
    for tick in nice_ticks(0.0, high):
        parts.append(
            f'<line class="grid" x1="{coord(x(tick))}" y1="{coord(top)}" '
            f'x2="{coord(x(tick))}" y2="{coord(bottom)}"/>'
            f'<text x="{coord(x(tick))}" y="{coord(bottom + 16)}" text-anchor="middle">'
            f"{escape(tick_label(tick))}</text>"
        )
    for i, (name, value, best) in enumerate(bars):
        y = top + i * row_h
        parts.append(
            f'<text x="{coord(label_w - 6)}" y="{coord(y + row_h * 0.7)}" '
            f'text-anchor="end">{escape(name)}</text>'
        )
        if value is None:
            continue
        fill = "#1a7f37" if best else "#54aeff"
        shown = f"{value:.4g}" + (" (best)" if best else "")
        parts.append(
            f'<rect x="{coord(label_w)}" y="{coord(y + 3)}" '
            f'width="{coord(max(0.5, x(value) - label_w))}" height="{coord(row_h - 6)}" '
            f'fill="{fill}"><title>{escape(name)}: {escape(shown)}</title></rect>'
            f'<text x="{coord(x(value) + 4)}" y="{coord(y + row_h * 0.7)}">'
            f"{escape(shown)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
