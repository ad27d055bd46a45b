"""The HTML report's load sections: a run's timeline and a capacity search's plot."""

from __future__ import annotations

from pytest_inferbudget.records import (
    CapacityProbe,
    CapacitySearch,
    LoadRequest,
    LoadRun,
    RunRecord,
    Saturation,
    TestRecord,
)
from pytest_inferbudget.report.html import render_html


def request(index: int, error: str | None = None) -> LoadRequest:
    done = None if error else index * 0.5 + 1.0
    return LoadRequest(
        index, 0, index * 0.5, index * 0.5 + 0.001, done, 120.0, 20.0, 500.0, (20.0,), 5, 8,
        "<b>x</b>", "length", error,
    )  # fmt: skip


def test_timeline_and_capacity_plot_are_drawn_and_escaped() -> None:
    run = LoadRun(
        "openai:x", "poisson", 2.0, None, 1.0, 0, 8,
        (request(0), request(1), request(2, error="failed: <HTTP 500>")), 2.0,
        Saturation(True, "over-saturated: <queue>"),
    )  # fmt: skip
    probe = LoadRun("openai:x", "poisson", 4.0, None, 1.0, 0, 8, (request(0),), 1.0, probe=True)
    search = CapacitySearch(
        (("ttft_ms", 500.0),),
        0.9,
        (CapacityProbe(4.0, 1.0, None, None, True, False, 1),),
        4.0,
        "every probe passed up to 4 req/s",
    )
    test = TestRecord("t.py::test_<load>", loads=[run, probe], capacity=[search])
    page = render_html(RunRecord("r", "2026-01-01T00:00:00+00:00", tests=[test]).to_dict(), None)
    assert "Load run at 2 req/s poisson" in page
    assert "Capacity search: attainment against rate (max rate 4 req/s)" in page
    assert "failed: &lt;HTTP 500&gt;" in page and "<HTTP 500>" not in page
    assert "over-saturated: &lt;queue&gt;" in page
    assert "Load run at 4 req/s" not in page  # the probe has no timeline of its own
