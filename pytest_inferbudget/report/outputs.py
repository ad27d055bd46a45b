"""What a finished run leaves behind: the JSON report, saved runs, the comparison with a
baseline, Markdown and HTML reports. Only the controller process calls this."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_inferbudget.errors import InferBudgetError
from pytest_inferbudget.hardware import fingerprint, library_versions
from pytest_inferbudget.storage import (
    autosave_name,
    commit_info,
    write_json_atomic,
    write_text_atomic,
)

if TYPE_CHECKING:
    from pytest_inferbudget.compare import Comparison
    from pytest_inferbudget.config import Settings
    from pytest_inferbudget.records import RunRecord

DEFAULT_THRESHOLD = 0.05
"""Relative change of a median shown as a regression when no --inferbudget-compare-fail
names the metric (shown, but it fails the run only for metrics named there)."""


@dataclass(slots=True)
class RunOutputs:
    """What the terminal summary says about the files written and the comparison."""

    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False
    comparison: Comparison | None = None


def finalize(run: RunRecord) -> dict[str, Any]:
    """The run as saved: its record, the machine, the libraries and the git commit tested
    (``commit``: id, branch, time, dirty; null outside a git work tree)."""
    run.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    run.hardware = fingerprint()
    run.libraries = library_versions()
    data = run.to_dict()
    data["commit"] = commit_info()
    return data


def write_outputs(
    run: RunRecord, settings: Settings, per_test_thresholds: dict[str, dict[str, float]]
) -> RunOutputs:
    outputs = RunOutputs()
    data = finalize(run)
    try:
        outputs.comparison = _compare(data, settings, per_test_thresholds, outputs)
    except InferBudgetError as exc:
        outputs.errors.append(f"cannot compare: {exc}")
        outputs.failed = True
    for path, render in (
        (settings.json_path, _json),
        (settings.markdown_path, _markdown),
        (settings.html_path, _html),
    ):
        if path is None:
            continue
        try:
            render(path, data, outputs.comparison)
            outputs.lines.append(f"report written to {path}")
        except InferBudgetError as exc:
            outputs.errors.append(str(exc))
            outputs.failed = True
    if settings.save:
        from pytest_inferbudget.compare import hardware_key
        from pytest_inferbudget.storage import save_run

        try:
            # --inferbudget-autosave arrives as the name "autosave": name it after the commit
            name = autosave_name(data["commit"]) if settings.save == "autosave" else settings.save
            saved = save_run(settings.storage, hardware_key(data), data, name)
            outputs.lines.append(f"run saved to {saved}")
        except InferBudgetError as exc:
            outputs.errors.append(str(exc))
            outputs.failed = True
    return outputs


def _compare(
    data: dict[str, Any],
    settings: Settings,
    per_test_thresholds: dict[str, dict[str, float]],
    outputs: RunOutputs,
) -> Comparison | None:
    if settings.compare is None:
        return None
    from pytest_inferbudget.compare import (
        COMPARISON_HEADER,
        METRICS,
        compare_runs,
        comparison_rows,
        hardware_key,
        summary_line,
    )
    from pytest_inferbudget.report.terminal import render_table
    from pytest_inferbudget.storage import find_run, load_run

    baseline_path = find_run(settings.storage, hardware_key(data), settings.compare or None)
    baseline = load_run(baseline_path)
    gates = dict(settings.compare_fail)
    thresholds = {metric: gates.get(metric, DEFAULT_THRESHOLD) for metric in METRICS}
    comparison = compare_runs(
        baseline,
        data,
        thresholds=thresholds,
        allow_different_hardware=settings.compare_any_hardware,
        per_test_thresholds=per_test_thresholds,
    )
    outputs.lines.append(f"compared with {baseline_path}")
    rows = comparison_rows(comparison)
    if rows:
        outputs.lines += render_table(COMPARISON_HEADER, rows)
    outputs.lines.append(summary_line(comparison))
    gated = [
        c
        for c in comparison.regressions
        if c.metric in gates or c.metric in per_test_thresholds.get(c.nodeid, {})
    ]
    if gated:
        outputs.failed = True
        outputs.errors.append(
            "regression beyond --inferbudget-compare-fail: "
            + ", ".join(f"{c.nodeid} {c.metric}" for c in gated)
        )
    return comparison


def _json(path: Path, data: dict[str, Any], comparison: Comparison | None) -> None:
    payload = dict(data)
    if comparison is not None:
        payload["comparison"] = comparison.to_dict()
    write_json_atomic(path, payload)


def _markdown(path: Path, data: dict[str, Any], comparison: Comparison | None) -> None:
    from pytest_inferbudget.report.markdown import render_markdown

    write_text_atomic(path, render_markdown(data, comparison))


def _html(path: Path, data: dict[str, Any], comparison: Comparison | None) -> None:
    from pytest_inferbudget.report.html import render_html

    write_text_atomic(path, render_html(data, comparison))
