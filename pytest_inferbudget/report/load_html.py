"""The HTML report's load sections: each load run's per-request timeline, and each capacity
search's attainment and latency percentiles against rate. Inline SVG, every text escaped,
as the rest of :mod:`pytest_inferbudget.report.html`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pytest_inferbudget.metrics.stats import quantile
from pytest_inferbudget.records import CapacitySearch, LoadRun, TestRecord

TIMELINE_ROWS = 200
"""Requests drawn per run; the rest are counted."""
WIDTH = 760.0
LEFT, RIGHT = 60.0, 24.0


def _n(value: float) -> str:
    return f"{value:.1f}"


def _svg(title: str, height: float, body: Sequence[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(WIDTH)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(WIDTH)} {_n(height)}" role="img" class="ib-plot" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="{_n(LEFT)}" y="14" font-weight="600">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def timeline(run: LoadRun) -> str:
    """One row per request: a line from its scheduled arrival to its last token, a dot at
    its first token, red when it failed (or never finished); warm-up greyed."""
    requests = run.requests[:TIMELINE_ROWS]
    if not requests:
        return ""
    ends = [r.done_s for r in requests if r.done_s is not None]
    span = max([*ends, *(r.scheduled_s for r in requests)]) or 1.0
    row, top = 3.0, 24.0
    height = top + row * len(requests) + 30.0

    def x(seconds: float) -> float:
        return LEFT + seconds / span * (WIDTH - LEFT - RIGHT)

    body = []
    for position, r in enumerate(requests):
        y = top + row * position
        end = r.done_s if r.done_s is not None else span
        kind = "budget" if not r.ok else "baseline" if r.warmup else "current"
        tip = (
            f"#{r.index} due {r.scheduled_s:.3f} s, late {r.lateness_ms or 0:.1f} ms, "
            f"TTFT {r.ttft_ms or 0:.0f} ms, E2E {r.e2e_ms or 0:.0f} ms"
            + (f", {r.error}" if r.error else "")
        )
        body.append(
            f'<line class="{kind}" x1="{_n(x(r.scheduled_s))}" y1="{_n(y)}" '
            f'x2="{_n(x(end))}" y2="{_n(y)}" stroke="currentColor"><title>{escape(tip)}'
            "</title></line>"
        )
        if r.ttft_ms is not None:
            first = r.sent_s if run.clock == "sent" and r.sent_s is not None else r.scheduled_s
            body.append(
                f'<circle class="pt {kind}" cx="{_n(x(first + r.ttft_ms / 1000))}" '
                f'cy="{_n(y)}" r="1.5"/>'
            )
    axis = top + row * len(requests) + 6
    body.append(
        f'<line class="axis" x1="{_n(LEFT)}" y1="{_n(axis)}" x2="{_n(WIDTH - RIGHT)}" '
        f'y2="{_n(axis)}"/><text x="{_n(LEFT)}" y="{_n(axis + 16)}">0 s</text>'
        f'<text x="{_n(WIDTH - RIGHT)}" y="{_n(axis + 16)}" text-anchor="end">'
        f"{span:.2f} s</text>"
    )
    rate = f"{run.rate:g} req/s {run.arrival}" if run.rate else f"concurrency {run.concurrency}"
    more = len(run.requests) - len(requests)
    title = f"Load run at {rate}: arrival → first token (dot) → last token" + (
        f" (first {TIMELINE_ROWS} of {len(run.requests)})" if more else ""
    )
    return _svg(title, height, body)


def capacity_plot(search: CapacitySearch, runs: Sequence[LoadRun]) -> str:
    """Attainment of each probe against its rate, the target as a line; and a table of
    each probe's p50/p99 TTFT and E2E."""
    probes = sorted(search.probes, key=lambda p: p.rate)
    if not probes:
        return ""
    top, plot_height = 30.0, 160.0
    height = top + plot_height + 34.0
    low, high = min(p.rate for p in probes), max(p.rate for p in probes)
    high = high if high > low else low + 1.0

    def x(rate: float) -> float:
        return LEFT + (rate - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    def y(share: float) -> float:
        return top + (1.0 - share) * plot_height

    body = [
        f'<line class="budget" x1="{_n(LEFT)}" y1="{_n(y(search.attainment))}" '
        f'x2="{_n(WIDTH - RIGHT)}" y2="{_n(y(search.attainment))}"/>'
        f'<text class="budget-label" x="{_n(WIDTH - RIGHT)}" y="{_n(y(search.attainment) - 4)}" '
        f'text-anchor="end">target {search.attainment:g}</text>'
    ]
    for p in probes:
        kind = "current" if p.passed else "budget"
        tip = f"{p.rate:.3g} req/s: attainment {p.attainment:.3f}" + (
            " (saturated)" if p.saturated else ""
        )
        body.append(
            f'<circle class="pt {kind}" cx="{_n(x(p.rate))}" cy="{_n(y(p.attainment))}" r="4">'
            f"<title>{escape(tip)}</title></circle>"
        )
    axis = top + plot_height
    body.append(
        f'<line class="axis" x1="{_n(LEFT)}" y1="{_n(axis)}" x2="{_n(WIDTH - RIGHT)}" '
        f'y2="{_n(axis)}"/><text x="{_n(LEFT)}" y="{_n(axis + 16)}">{low:.3g} req/s</text>'
        f'<text x="{_n(WIDTH - RIGHT)}" y="{_n(axis + 16)}" text-anchor="end">'
        f"{high:.3g} req/s</text>"
    )
    found = "none" if search.max_rate_rps is None else f"{search.max_rate_rps:.3g} req/s"
    svg = _svg(f"Capacity search: attainment against rate (max rate {found})", height, body)
    rows = []
    for p in probes:
        run = runs[p.run] if 0 <= p.run < len(runs) else None
        cells = [f"{p.rate:.3g}", f"{p.attainment:.3f}", _verdict(p.passed, p.saturated)]
        for metric in ("ttft_ms", "e2e_ms"):
            values = [
                v for r in (run.measured if run else ()) if r.ok and (v := getattr(r, metric))
            ]
            for q in (0.5, 0.99):
                cells.append(f"{quantile(values, q):.0f}" if values else "-")
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("rate (req/s)", "attainment", "probe", "p50 TTFT", "p99 TTFT", "p50 E2E",
                  "p99 E2E")
    )  # fmt: skip
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return svg + table + (f"<p>{escape(search.note)}</p>" if search.note else "")


def _verdict(passed: bool | None, saturated: bool) -> str:
    text = "held" if passed else "missed" if passed is False else "indeterminate"
    return text + (" (saturated)" if saturated else "")


def load_sections(test: TestRecord) -> str:
    """Every plain load run's timeline and every capacity search of the test."""
    parts = [timeline(run) for run in test.loads if not run.probe]
    for run in test.loads:
        if not run.probe and run.saturated:
            parts.append(f"<p>{escape(run.saturation.reason)}</p>")
    parts += [capacity_plot(search, test.loads) for search in test.capacity]
    return "".join(p for p in parts if p)
