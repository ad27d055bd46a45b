"""History over saved runs: the series, the change points, the CLI and the HTML."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pytest_inferbudget.cli import main
from pytest_inferbudget.compare import hardware_key
from pytest_inferbudget.records import CommitInfo, RunRecord
from pytest_inferbudget.report.history import history_series
from pytest_inferbudget.storage import save_run
from tests.unit.runs import make_run, make_test


def _runs(count: int, step_at: int, factor: float) -> list[RunRecord]:
    runs = []
    for i in range(count):
        slowdown = factor if i >= step_at else 1.0
        test = make_test("t.py::test_a", random.Random(i), n=15, sigma=0.02, slowdown=slowdown)
        record = RunRecord.from_dict(make_run(test, run_id=f"run{i:02d}"))
        record.finished_at = f"2026-12-{i + 1:02d}T00:01:00+00:00"
        record.commit = CommitInfo(
            f"{i:02d}" + "ab" * 19, "main", f"2026-12-{i + 1:02d}T00:00:00", False
        )
        runs.append(record)
    return runs


def test_series_are_in_commit_order_with_the_step_marked() -> None:
    runs = _runs(12, step_at=7, factor=1.3)
    series = {(s.nodeid, s.metric): s for s in history_series(list(reversed(runs)))}
    ms = series[("t.py::test_a", "ms_per_request")]
    assert [p.run_id for p in ms.points] == [f"run{i:02d}" for i in range(12)]
    [step] = ms.steps
    assert step.index == 7 and step.factor == pytest.approx(1.3, rel=0.05)
    tokens = series[("t.py::test_a", "tokens_per_request")]
    assert tokens.steps == ()  # the same greedy lengths in every run


def test_the_history_command_prints_writes_json_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = _runs(10, step_at=6, factor=1.5)
    storage = tmp_path / ".inferbudget"
    for run in runs:
        data = run.to_dict()
        save_run(storage, hardware_key(data), data, "main")
    out_json, out_html = tmp_path / "h.json", tmp_path / "h.html"
    code = main(
        [
            "history",
            "--storage",
            str(storage),
            "--metric",
            "ms_per_request",
            f"--json={out_json}",
            f"--html={out_html}",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "10 saved run(s)" in printed
    assert "t.py::test_a  ms_per_request  10" in printed
    assert "06ababababab: +50%" in printed  # the commit of the step and its size
    data = json.loads(out_json.read_text())
    [series] = next(iter(data.values()))
    assert series["change_points"][0]["run_id"] == "run06"
    page = out_html.read_text()
    assert page.count("<svg") == 1 and "change point: +50%" in page
    assert "http:" not in page.replace("http://www.w3.org/2000/svg", "")  # no network
    assert "https:" not in page and "src=" not in page
    assert main(["history", "--storage", str(storage), "--key", "zz"]) == 2
