"""Plain-text tables of budgets against what was measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_inferbudget.vocabulary import Direction, Verdict

if TYPE_CHECKING:
    from pytest_inferbudget.records import BudgetResult, RunRecord, TestRecord

HEADER = ("budget", "limit", "measured", "interval", "stat", "samples", "verdict")


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    suffix = f" {unit}" if unit else ""
    if value in (float("inf"), float("-inf")):
        return f"{value}{suffix}"
    if unit == "tokens" and float(value).is_integer():
        return f"{int(value)} tokens"
    if unit in ("tokens", "ms"):
        return f"{value:.1f}{suffix}" if abs(value) < 1e5 else f"{value:.4g}{suffix}"
    return f"{value:.4g}{suffix}"


def format_limit(limit: float, unit: str, direction: Direction) -> str:
    text = f"{limit:g}" + (f" {unit}" if unit else "")
    return text if direction is Direction.AT_MOST else f">= {text}"


def format_interval(result: BudgetResult) -> str:
    """``[low, high] @95%``; a side no sample could bound shows as ``?``, and a budget with
    neither side bounded says so instead of ``[?, ?]`` (its reason says why)."""
    if result.confidence is None:
        return ""
    if result.ci_low is None and result.ci_high is None:
        return "no interval"
    low, high = (
        "?" if v is None else format_value(v, "").strip() for v in (result.ci_low, result.ci_high)
    )
    return f"[{low}, {high}] @{result.confidence:.0%}"


NOTED_KEYS = ("spec_acceptance_rate", "spec_accept_length")
"""Keys whose reason is a note shown on a pass too (what the i.i.d. model expects)."""


def shows_reason(result: BudgetResult) -> bool:
    """A failed or unsure budget's reason, or a noted key's note."""
    noted = result.key.startswith(NOTED_KEYS)
    return bool(result.reason) and (result.verdict != Verdict.PASS or noted)


def budget_rows(results: Sequence[BudgetResult]) -> list[tuple[str, ...]]:
    return [
        (
            r.key,
            format_limit(r.limit, r.unit, r.direction),
            format_value(r.measured, r.unit),
            format_interval(r),
            r.stat,
            str(r.samples),
            r.verdict.upper() if r.verdict is not Verdict.PASS else r.verdict.value,
        )
        for r in results
    ]


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def violation_message(results: Sequence[BudgetResult]) -> str:
    """The failure text of a test whose budgets did not all pass."""
    failed = [r for r in results if r.verdict != "pass"]
    only_unsure = all(r.verdict == Verdict.INCONCLUSIVE for r in failed)
    state = "inconclusive" if only_unsure else "not met"  # a warning is not a failed budget
    lines = [f"inferbudget: {len(failed)} of {len(results)} budget(s) {state}"]
    lines += render_table(HEADER, budget_rows(results))
    lines += [f"{r.key}: {r.reason}" for r in failed if r.reason]
    return "\n".join(lines)


def summary_lines(run: RunRecord) -> list[str]:
    """The terminal summary section: every budgeted test, its measured values and limits."""
    budgeted = [t for t in run.tests if t.budgets]
    if not budgeted:
        return _uncontained(run)
    header = ("test", *HEADER)
    rows = []
    for test in budgeted:
        for position, row in enumerate(budget_rows(test.budgets)):
            rows.append((test.nodeid if position == 0 else "", *row))
    engine = run.engine.get("spec", "")
    described = ", ".join(str(run.engine[k]) for k in ("device", "dtype") if k in run.engine)
    lines = [f"engine: {engine}" + (f" ({described})" if described else "")] if engine else []
    lines += _token_lines(run)
    machine = run.machine
    if machine is not None:
        lines.append(f"machine during engine calls: {machine.describe()}")
    lines += _contended(budgeted)
    lines += render_table(header, rows)
    lines += [
        f"{test.nodeid} {b.key}: {b.verdict}: {b.reason}"
        for test in budgeted
        for b in test.budgets
        if (b.verdict in (Verdict.INCONCLUSIVE, Verdict.UNMEASURED) and b.reason)
        or (b.verdict is Verdict.PASS and shows_reason(b))
    ]
    lines += _uncontained(run)
    lines += _saturation(run)
    verdicts = [b.verdict for t in budgeted for b in t.budgets]
    labels = {Verdict.PASS: "passed", Verdict.FAIL: "failed"}
    counts = ", ".join(
        f"{verdicts.count(v)} {labels.get(v, v.value)}" for v in Verdict if verdicts.count(v)
    )
    lines.append(f"{len(verdicts)} budget(s) in {len(budgeted)} test(s): {counts}")
    return lines


def _token_lines(run: RunRecord) -> list[str]:
    """What a server supports and who counted tokens (the openai engine says), and how
    many generations had their token counts estimated rather than counted."""
    lines = []
    capabilities = run.engine.get("capabilities")
    if isinstance(capabilities, dict) and capabilities.get("summary"):
        lines.append(f"server: {capabilities['summary']}")
    if run.engine.get("tokens"):
        lines.append(f"tokens: {run.engine['tokens']}")
    generations = [g for t in run.tests for trace in t.traces for g in trace.generations]
    estimated = sum(g.tokens_estimated for g in generations)
    if estimated:
        lines.append(
            f"token counts of {estimated} of {len(generations)} generation(s) are estimated "
            f"by re-tokenizing (the server reported no usage)"
        )
    return lines


def _contended(tests: Sequence[TestRecord]) -> list[str]:
    """A line naming the tests timed while other xdist workers shared the engine's GPU,
    server or CPU cores: their timing verdicts hold for a busier machine."""
    contended = [t.nodeid for t in tests if t.contended]
    if not contended:
        return []
    shown = ", ".join(contended[:3]) + (
        f" and {len(contended) - 3} more" if len(contended) > 3 else ""
    )
    return [
        f"contended: {len(contended)} test(s) were timed while other xdist workers shared the "
        f"engine's GPU, server or CPU cores, so their latency figures are not this "
        f"configuration's alone: {shown}"
    ]


def _saturation(run: RunRecord) -> list[str]:
    """Repeated sampling: each test's N* and coverage fit, and the wasted_samples lint."""
    from pytest_inferbudget.verdicts import sampling_saturation, wasted_samples_lint

    lines = []
    for test in run.tests:
        lint = wasted_samples_lint(test.nodeid, test.scores)
        found = sampling_saturation(test.scores) if not lint else None
        if lint:
            lines.append(lint)
        elif found is not None:
            lines.append(f"{test.nodeid}: sampling: {found.describe()}")
    return lines


def _uncontained(run: RunRecord) -> list[str]:
    """A line for every test whose model-written code ran with no sandbox."""
    return [
        f"{test.nodeid}: {count} score(s) ran model-written code UNCONTAINED "
        "(--inferbudget-sandbox=none)"
        for test in run.tests
        if (count := sum(s.containment == "none" for s in test.scores))
    ]
