"""A run (and its comparison with a baseline) as Markdown, e.g. for a GitHub step summary.

Every text that comes from a test or a model (node ids, outputs, reasons) is escaped:
HTML's ``&``, ``<`` and ``>`` become entities and Markdown's punctuation is
backslash-escaped, so it shows as written and cannot break a table or inject markup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pytest_inferbudget.records import BudgetResult, RunRecord, TestRecord
from pytest_inferbudget.report.terminal import (
    format_interval,
    format_limit,
    format_value,
    shows_reason,
)
from pytest_inferbudget.vocabulary import Verdict

if TYPE_CHECKING:
    from pytest_inferbudget.records import Comparison

NOTABLE = ("regression", "improvement", "exact-changed")
"""Comparison verdicts listed in the main table; every row is in a collapsed one below."""
SAMPLE_OUTPUTS = 3
"""Outputs shown under a test whose budgets did not all pass or that regressed."""
OUTPUT_CHARS = 300
"""Longer outputs are cut, with an ellipsis."""

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def escape_markdown(text: str) -> str:
    """``text`` as literal inline Markdown, safe in a table cell or a heading.

    ``&``, ``<``, ``>`` become HTML entities (no tag or entity of the text survives), Markdown
    punctuation gets a backslash (``|`` cannot split a cell, a backtick opens no code span),
    and line breaks become ``<br>``. ``(``, ``!``, ``-`` and ``+`` are left alone: with
    brackets escaped no link or image can form, and the text never starts a block.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return _NEWLINES.sub("<br>", text)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def parse_run(run: dict[str, Any]) -> RunRecord:
    """The record behind a ``RunRecord.to_dict()`` dict (its schema version checked)."""
    return RunRecord.from_dict(run)


def run_totals(run: RunRecord) -> list[tuple[str, str]]:
    """(label, value) pairs: tests, budgets by verdict, requests and tokens."""
    verdicts = [b.verdict for t in run.tests for b in t.budgets]
    traces = [trace for t in run.tests for trace in t.traces]
    generations = [g for trace in traces for g in trace.generations]
    by_verdict = ", ".join(f"{verdicts.count(v)} {v.value}" for v in Verdict if verdicts.count(v))
    totals = [
        ("tests", str(len(run.tests))),
        ("budgets", f"{len(verdicts)}" + (f" ({by_verdict})" if by_verdict else "")),
        ("requests", str(len(traces))),
        ("generations", str(len(generations))),
        ("prompt tokens", str(sum(g.prompt_tokens for g in generations))),
        ("completion tokens", str(sum(g.completion_tokens for g in generations))),
    ]
    timed = [t.e2e_ms for t in traces if t.e2e_ms is not None]
    if timed:
        totals.append(("request time", format_value(sum(timed), "ms")))
    return totals


def describe_run(run: RunRecord) -> list[tuple[str, str]]:
    """(label, value) pairs naming the engine, the hardware and the run."""
    engine = run.engine
    described = ", ".join(
        str(engine[k]) for k in ("engine", "device", "dtype", "gpu") if engine.get(k)
    )
    hardware = run.hardware
    machine = ", ".join(
        str(v)
        for v in (
            hardware.get("machine"),
            hardware.get("cpu_model"),
            f"{hardware['cpu_count']} CPUs" if hardware.get("cpu_count") else None,
        )
        if v
    )
    pairs = [
        ("engine", str(engine.get("spec", "")) + (f" ({described})" if described else "")),
        ("hardware", machine),
        ("machine load", run.machine.describe() if run.machine is not None else ""),
        ("run", f"{run.run_id} started {run.started_at}"),
    ]
    return [(label, value) for label, value in pairs if value.strip()]


def budget_cells(result: BudgetResult) -> tuple[str, str, str, str, str]:
    """key, limit, measured, interval, verdict: plain text, not yet escaped."""
    return (
        result.key,
        format_limit(result.limit, result.unit, result.direction),
        format_value(result.measured, result.unit),
        format_interval(result),
        result.verdict.upper() if result.verdict != "pass" else result.verdict,
    )


def needs_attention(test: TestRecord, regressed: set[str]) -> bool:
    return test.nodeid in regressed or any(b.verdict != "pass" for b in test.budgets)


def output_texts(test: TestRecord) -> list[str]:
    """Every generation's text, in order (a strategy's chosen answer is a trace's answer)."""
    return [g.text for trace in test.traces for g in trace.generations]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub table; the cells are escaped here."""
    lines = [
        "| " + " | ".join(escape_markdown(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(escape_markdown(c) or " " for c in row) + " |" for row in rows]
    return lines


def render_markdown(run: dict[str, Any], comparison: Comparison | None, html_link: str = "") -> str:
    """The run's budgets per test, its comparison with a baseline when given, and totals;
    sized for a CI step summary, with a link to the HTML report (plots, outputs, history)
    when one was written."""
    record = parse_run(run)
    lines = ["## pytest-inferbudget", ""]
    lines += [f"- **{label}:** {escape_markdown(value)}" for label, value in describe_run(record)]
    if html_link:
        target = html_link.replace(" ", "%20").replace(")", "%29")
        lines.append(f"- **full report:** [HTML, with plots and outputs]({target})")
    lines.append("")
    from pytest_inferbudget.report.attention import attention_lines

    first = attention_lines(record.tests, [comparison, record.ab_comparison])
    if first:
        lines += [f"### Needs attention ({len(first)})", ""]
        lines += [f"- {escape_markdown(line)}" for line in first]
        lines.append("")
    regressed: set[str] = set()
    sections = [
        ("Comparison with baseline", comparison),
        ("Interleaved A/B:", record.ab_comparison),
    ]
    for title, compared in sections:
        if compared is not None:
            lines += _comparison_section(title, compared)
            regressed |= {c.nodeid for c in compared.regressions}
    if record.sweep is not None:
        from pytest_inferbudget.report.sweep import sweep_markdown

        lines += sweep_markdown(record.sweep)
    budgeted = [t for t in record.tests if t.budgets]
    if budgeted:
        lines += ["### Budgets", ""]
    for test in budgeted:
        outcome = f" ({escape_markdown(test.outcome)})" if test.outcome else ""
        lines += [f"#### {escape_markdown(test.nodeid)}{outcome}", ""]
        lines += _table(
            ("budget", "limit", "measured", "interval", "verdict"),
            [budget_cells(b) for b in test.budgets],
        )
        lines.append("")
        reasons = [b for b in test.budgets if shows_reason(b)]
        lines += [f"- {escape_markdown(b.key)}: {escape_markdown(b.reason)}" for b in reasons]
        if reasons:
            lines.append("")
        if needs_attention(test, regressed):
            texts = output_texts(test)[:SAMPLE_OUTPUTS]
            if texts:
                lines += ["<details><summary>Sample outputs</summary>", ""]
                lines += _table(
                    ("#", "output"),
                    [(str(i), shorten(t, OUTPUT_CHARS)) for i, t in enumerate(texts, 1)],
                )
                lines += ["", "</details>", ""]
    unbudgeted = len(record.tests) - len(budgeted)
    if unbudgeted:
        lines += [f"{unbudgeted} test(s) recorded requests without budgets.", ""]
    lines += ["### Totals", ""]
    lines += _table(("", "total"), run_totals(record))
    return "\n".join(lines) + "\n"


def _comparison_section(title: str, comparison: Comparison) -> list[str]:
    from pytest_inferbudget.report.comparison import (
        COMPARISON_HEADER,
        comparison_rows,
        summary_line,
    )

    regressed = bool(comparison.regressions)
    lines = [
        f"### {title} " + escape_markdown(comparison.baseline_label or comparison.baseline_run_id),
        "",
        ("**" if regressed else "")
        + escape_markdown(summary_line(comparison))
        # the bold markers are ours, outside the escaped text
        + ("**" if regressed else ""),
        "",
    ]
    rows = comparison_rows(comparison, grouped=True)
    notable = [r for r, c in zip(rows, comparison.changes, strict=True) if c.verdict in NOTABLE]
    if notable:
        lines += _table(COMPARISON_HEADER, notable)
    elif rows:
        lines.append("No regression, improvement or changed token count.")
    if len(notable) < len(rows):
        lines += ["", f"<details><summary>All {len(rows)} compared metrics</summary>", ""]
        lines += _table(COMPARISON_HEADER, rows)
        lines += ["", "</details>"]
    lines.append("")
    for label, nodeids in (("Added", comparison.added), ("Removed", comparison.removed)):
        if nodeids:
            lines.append(f"{label} tests: " + ", ".join(escape_markdown(n) for n in nodeids))
            lines.append("")
    return lines
