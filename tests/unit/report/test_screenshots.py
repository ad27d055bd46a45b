"""The HTML report and the history page as a reader sees them: rendered by headless
Chromium, checked for what must be on screen, and kept as screenshots.

Set ``INFERBUDGET_SCREENSHOTS=DIR`` to keep the PNGs there (docs/images holds the ones the
docs show)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from pytest_inferbudget.compare import compare_runs
from pytest_inferbudget.records import RunRecord
from pytest_inferbudget.report.history import history_series
from pytest_inferbudget.report.html import render_history_page, render_html
from tests.unit.report.test_history import _runs
from tests.unit.report.test_reports import NEEDS_CHROMIUM, chromium_command, report_run


def _render(tmp_path: Path, page: Path, name: str, height: int) -> tuple[str, Path]:
    common = chromium_command(tmp_path)
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / f"{name}.png"
    taken = subprocess.run(
        [*common, f"--screenshot={shot}", f"--window-size=1200,{height}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 20_000
    keep = os.environ.get("INFERBUDGET_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return dom.stdout, shot


@NEEDS_CHROMIUM
def test_the_report_shows_failure_regression_passed_frontier_and_history(
    tmp_path: Path,
) -> None:
    baseline, current = report_run("base"), report_run("current", slowdown=1.6)
    comparison = compare_runs(baseline, current, thresholds={"ms_per_request": 0.1})
    history = _runs(6, step_at=3, factor=1.4)
    series = history_series([*history, RunRecord.from_dict(current)])
    page = tmp_path / "report.html"
    page.write_text(render_html(current, comparison, baseline, history=series), "utf-8")
    dom, _ = _render(tmp_path, page, "report", 2600)
    attention = dom.index("Needs attention")
    assert attention < dom.index("<h2>Totals</h2>")
    needs = dom[attention : dom.index("</ul>", attention)]
    assert "FAIL t.py::test_`tick`_&lt;b&gt;bold&lt;/b&gt; ttft_ms" in needs  # the failure
    assert "REGRESSION (gated) t.py::test_fast" in needs  # the regression
    assert "passed with nothing to note</summary>" in dom  # a passed test, collapsed
    assert "Accuracy and cost" in dom and 'class="frontier"' in dom  # the frontier
    fast = dom[dom.index("<h3>t.py::test_fast") :]
    assert fast.index("baseline (n=12)") < fast.index("current (n=12)")  # one axis, both runs
    assert re.search(r'class="change regression"[^>]*>change \+60\.0%', fast)
    assert '<g class="interval">' in fast  # the change's interval under the current row
    history_part = dom[dom.index("<h2>History") :]
    assert history_part.count("<svg") >= 4  # a chart per compared metric of test_a
    assert re.search(r"change point: \+(3[5-9]|4[0-5])%", history_part)  # six runs' step
    assert 'class="dot current"' not in history_part  # the saved runs hold another test


@NEEDS_CHROMIUM
def test_the_history_page_marks_the_change_point_of_ten_runs(tmp_path: Path) -> None:
    runs = _runs(10, step_at=5, factor=1.5)
    page = tmp_path / "history.html"
    page.write_text(render_history_page([("ee710e57c916cdd4", history_series(runs))]), "utf-8")
    dom, _ = _render(tmp_path, page, "history", 1400)
    found = [int(m) for m in re.findall(r"change point: \+(\d+)%", dom)]
    assert len(found) >= 3 and all(45 <= f <= 55 for f in found), found  # ms, ttft, tpot...
    assert re.search(r"05ababababab: \+(4[5-9]|5[0-5])%", dom)  # the commit of the step
