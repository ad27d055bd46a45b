"""What a finished run leaves behind: the JSON report, saved runs, the comparison with a
baseline, Markdown and HTML reports, the cassette. Only the controller process calls this.

Each output is written on its own: one that fails is reported by name and the others are
still written, so nothing recorded is lost to one bad figure or one full disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_inferbudget.errors import InferBudgetError, ReportError
from pytest_inferbudget.hardware import fingerprint, library_versions
from pytest_inferbudget.storage import (
    autosave_name,
    commit_info,
    write_json_atomic,
    write_text_atomic,
)

if TYPE_CHECKING:
    from pytest_inferbudget.config import Settings
    from pytest_inferbudget.records import Comparison, EngineInfo, RunRecord


@dataclass(slots=True)
class RunOutputs:
    """What the terminal summary says about the files written and the comparison."""

    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False
    comparison: Comparison | None = None
    ab_comparison: Comparison | None = None


def finalize(run: RunRecord) -> dict[str, Any]:
    """The run as saved: its record, the machine, the libraries and the git commit tested
    (``commit``: id, branch, time, dirty; null outside a git work tree)."""
    run.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    run.hardware = fingerprint()
    run.libraries = library_versions()
    run.commit = commit_info()
    return run.to_dict()


def find_baseline(identity: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], str]:
    """The saved run to compare with, loaded and checked, and a label naming it (name,
    commit, date); raises :class:`InferBudgetError` naming what is missing or broken."""
    from pytest_inferbudget.compare import check_comparable, describe_run, hardware_key
    from pytest_inferbudget.storage import find_run, load_run, run_name

    path = find_run(settings.storage, hardware_key(identity), settings.compare or None, identity)
    baseline = load_run(path)
    check_comparable(baseline, identity, settings.compare_any_hardware)
    return baseline, f"{describe_run({**baseline, 'name': run_name(path)})} from {path}"


def find_history(identity: dict[str, Any], settings: Settings) -> tuple[list[dict[str, Any]], str]:
    """The latest ``compare_history`` saved runs on this hardware key, for run-to-run
    variation, and a note naming any that could not be read (left out, never silently)."""
    from pytest_inferbudget.compare import hardware_key
    from pytest_inferbudget.storage import load_run, saved_runs

    if settings.compare_history <= 0:
        return [], ""
    runs, broken = [], []
    for path in saved_runs(settings.storage, hardware_key(identity))[-settings.compare_history :]:
        try:
            runs.append(load_run(path))
        except InferBudgetError as exc:
            broken.append(str(exc))
    note = f"history: left out {len(broken)} unreadable run(s): {'; '.join(broken)}"
    return runs, note if broken else ""


def write_outputs(
    run: RunRecord,
    settings: Settings,
    per_test_thresholds: dict[str, dict[str, float]],
    baseline: dict[str, Any] | None = None,
    baseline_label: str = "",
    history: list[dict[str, Any]] | None = None,
    partner: EngineInfo | None = None,
) -> RunOutputs:
    outputs = RunOutputs()
    if partner is not None:
        _interleaved(run, partner, settings, per_test_thresholds, outputs)
    if baseline is not None:
        try:
            run.comparison = _compare(
                run, baseline, baseline_label, settings, per_test_thresholds, history or []
            )
            outputs.comparison = run.comparison
            _comparison_lines(run.comparison, f"compared with {baseline_label}", settings, outputs)
        except InferBudgetError as exc:
            outputs.errors.append(f"cannot compare: {exc}")
            outputs.failed = True
    data = finalize(run)
    writers: list[tuple[Path | None, str, Callable[[Path], None]]] = [
        (settings.json_path, "report", lambda path: write_json_atomic(path, data)),
        (
            settings.markdown_path,
            "report",
            lambda path: _markdown(path, data, run.comparison, settings),
        ),
        (
            settings.html_path,
            "report",
            lambda path: _html(path, data, run.comparison, baseline, settings.storage, outputs),
        ),
    ]
    if settings.saves:
        from pytest_inferbudget.compare import hardware_key
        from pytest_inferbudget.storage import save_run

        name = autosave_name(data["commit"]) if settings.save is None else settings.save
        folder = settings.storage

        def save(_: Path) -> None:
            saved = save_run(folder, hardware_key(data), data, name)
            outputs.lines.append(f"run saved to {saved}")

        writers.append((folder, "", save))
    for path, what, write in writers:
        if path is None:
            continue
        try:
            write(path)
            if what:
                outputs.lines.append(f"{what} written to {path}")
        except (InferBudgetError, OSError, ValueError, TypeError) as exc:
            outputs.errors.append(_write_failure(path, exc, data))
            outputs.failed = True
    return outputs


def _write_failure(path: Path, exc: Exception, data: dict[str, Any]) -> str:
    """Name the output and, where a value could not be encoded, the test and budget."""
    if isinstance(exc, InferBudgetError):
        return str(exc)  # it names the file already
    where = ""
    if isinstance(exc, ValueError) and "JSON" in str(exc):
        where = "; " + _unencodable(data)
    return f"cannot write {path}: {exc}{where}"


def _unencodable(data: dict[str, Any]) -> str:
    import json
    import math

    for test in data.get("tests", []):
        for result in test.get("budgets", []):
            for name, value in result.items():
                if isinstance(value, float) and not math.isfinite(value):
                    return f"{test['nodeid']} budget {result['key']} has {name}={value!r}"
    try:
        json.dumps(data, allow_nan=False)
    except ValueError as exc:
        return str(exc)
    return "no budget value found at fault"


def _compare(
    run: RunRecord,
    baseline: dict[str, Any],
    label: str,
    settings: Settings,
    per_test_thresholds: dict[str, dict[str, float]],
    history: list[dict[str, Any]],
) -> Comparison:
    from pytest_inferbudget.compare import compare_runs
    from pytest_inferbudget.hardware import fingerprint

    candidate = run.to_dict()
    candidate["hardware"] = fingerprint()
    return compare_runs(
        baseline,
        candidate,
        thresholds=dict(settings.compare_fail),
        allow_different_hardware=settings.compare_any_hardware,
        per_test_thresholds=per_test_thresholds,
        baseline_label=label,
        history=history,
    )


def _comparison_lines(
    comparison: Comparison, heading: str, settings: Settings, outputs: RunOutputs
) -> None:
    from pytest_inferbudget.report.comparison import (
        COMPARISON_HEADER,
        comparison_rows,
        gate_failure_lines,
        summary_line,
    )
    from pytest_inferbudget.report.terminal import render_table
    from pytest_inferbudget.vocabulary import Change

    outputs.lines.append(heading)
    rows = comparison_rows(comparison)
    if rows:
        outputs.lines += render_table(COMPARISON_HEADER, rows)
    outputs.lines.append(summary_line(comparison))
    failing = list(comparison.gate_failures)
    if settings.strict:
        failing += [c for c in comparison.changes if c.gated and c.verdict is Change.INCONCLUSIVE]
    if failing:
        outputs.failed = True
        outputs.errors.append(
            "gate failed (--inferbudget-compare-fail):\n  "
            + "\n  ".join(gate_failure_lines(failing))
        )


def _interleaved(
    run: RunRecord,
    partner: EngineInfo,
    settings: Settings,
    per_test_thresholds: dict[str, dict[str, float]],
    outputs: RunOutputs,
) -> None:
    """The A/B engine against the session's, test by test, into the run and the summary;
    a gated regression fails the run as a baseline's does."""
    from pytest_inferbudget.compare.interleaved import interleaved_comparison

    run.ab_comparison = interleaved_comparison(
        run, partner, dict(settings.compare_fail), per_test_thresholds
    )
    outputs.ab_comparison = run.ab_comparison
    if run.ab_comparison is not None:
        label = f"interleaved A/B: {run.ab_comparison.baseline_label}"
        _comparison_lines(run.ab_comparison, label, settings, outputs)


def write_cassette(path: Path, run: RunRecord) -> list[str]:
    """Every response the run's tests recorded, for --inferbudget-replay; the terminal
    lines saying where it went (or why it could not be written)."""
    from pytest_inferbudget.engines.replay import build_cassette

    responses = [r for test in run.tests for trace in test.traces for r in trace.responses]
    try:
        write_json_atomic(path, build_cassette(responses, dict(run.engine)))
    except InferBudgetError as exc:
        return [f"inferbudget: ERROR cassette not written: {exc}"]
    return [f"cassette of {len(responses)} request(s) written to {path}"]


def _markdown(
    path: Path, data: dict[str, Any], comparison: Comparison | None, settings: Settings
) -> None:
    from pytest_inferbudget.report.markdown import render_markdown

    write_text_atomic(path, render_markdown(data, comparison, html_link(path, settings)))


def html_link(markdown: Path, settings: Settings) -> str:
    """Where the Markdown summary points for the full report: ``--inferbudget-html-url``
    (a CI artifact's address), else the HTML file relative to the Markdown file."""
    if settings.html_url:
        return settings.html_url
    if settings.html_path is None:
        return ""
    return os.path.relpath(settings.html_path.resolve(), markdown.resolve().parent)


def _html(
    path: Path,
    data: dict[str, Any],
    comparison: Comparison | None,
    baseline: dict[str, Any] | None,
    storage: Path,
    outputs: RunOutputs,
) -> None:
    from pytest_inferbudget.report.html import render_html

    series, note = _history(data, storage)
    if note:
        outputs.lines.append(note)
    write_text_atomic(path, render_html(data, comparison, baseline, series, note))


def _history(data: dict[str, Any], storage: Path) -> tuple[list[Any], str]:
    """This run's metrics over the saved runs of its hardware key (itself included, once),
    for the HTML report's History section, and a note naming the saved runs that could
    not be read (left out, never silently)."""
    from pytest_inferbudget.compare import hardware_key
    from pytest_inferbudget.records import RunRecord
    from pytest_inferbudget.report.history import history_series
    from pytest_inferbudget.storage import load_run, saved_runs

    runs, broken = [], []
    for saved in saved_runs(storage, hardware_key(data))[-HISTORY_RUNS:]:
        try:
            runs.append(RunRecord.from_dict(load_run(saved)))
        except (InferBudgetError, ValueError, KeyError, TypeError) as exc:
            broken.append(f"{saved}: {exc}")
    note = f"history: left out {len(broken)} unreadable run(s): {'; '.join(broken)}"
    if not runs:
        return [], note if broken else ""
    current = RunRecord.from_dict(data)
    series = history_series([r for r in runs if r.run_id != current.run_id] + [current])
    return series, note if broken else ""


HISTORY_RUNS = 50
"""How many of the latest saved runs the HTML report's History section reads."""


__all__ = [
    "ReportError",
    "RunOutputs",
    "find_baseline",
    "find_history",
    "write_cassette",
    "write_outputs",
]
