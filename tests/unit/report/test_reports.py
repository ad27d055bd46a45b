"""The Markdown and HTML reports: escaping, intact tables, plots and a real browser render."""

from __future__ import annotations

import random
import re
import subprocess
from html import escape
from pathlib import Path

import pytest

from pytest_inferbudget.compare import compare_runs
from pytest_inferbudget.records import (
    BudgetResult,
    Score,
)
from pytest_inferbudget.report.html import render_html
from pytest_inferbudget.report.markdown import escape_markdown, render_markdown
from pytest_inferbudget.report.plots import pareto_frontier
from pytest_inferbudget.vocabulary import Verdict
from tests.unit.runs import XSS, make_run, make_test

# --------------------------------------------------------------------------- reports


def report_run(run_id: str = "current", slowdown: float = 1.0) -> dict[str, object]:
    rng = random.Random(11)
    fast = make_test("t.py::test_fast[a|b]", rng, n=12, slowdown=slowdown)
    fast.budgets = [
        BudgetResult(
            "ms_per_request",
            260.0,
            "p95",
            "ms",
            230.0,
            12,
            Verdict.PASS,
            confidence=0.95,
            ci_low=200.0,
            ci_high=250.0,
        ),
        BudgetResult("tokens_per_request", 30.0, "mean", "tokens", 23.0, 12, Verdict.PASS),
    ]
    hostile = make_test("t.py::test_`tick`_<b>bold</b>", rng, n=5, text=f"say {XSS} | `x`")
    hostile.budgets = [
        BudgetResult(
            "ttft_ms",
            10.0,
            "p50",
            "ms",
            40.0,
            5,
            Verdict.FAIL,
            reason=f"p50 ttft over budget; output was {XSS}",
        )
    ]
    hostile.outcome = "failed"
    scored = make_test("t.py::test_scored", rng, n=4)
    scored.scores = [Score(f"q{i}", i % 4 != 0, 20 + i, 100.0) for i in range(8)]
    cheap = make_test("t.py::test_cheap", rng, n=4)
    cheap.scores = [Score(f"q{i}", i % 2 == 0, 10, 50.0) for i in range(8)]
    return make_run(fast, hostile, scored, cheap, run_id=run_id)


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_escapes_names_and_outputs_and_keeps_tables_intact() -> None:
    baseline, current = report_run("base"), report_run("current", slowdown=1.4)
    comparison = compare_runs(baseline, current, thresholds={"ms_per_request": 0.1})
    text = render_markdown(current, comparison)
    assert "<script>" not in text and "<b>" not in text
    assert "say &lt;script&gt;alert(1)&lt;/script&gt; \\| \\`x\\`" in text
    assert "test\\_\\`tick\\`\\_&lt;b&gt;bold&lt;/b&gt;" in text
    assert "test\\_fast\\[a\\|b\\]" in text
    for block in re.findall(r"(?:^\|.*\n)+", text, flags=re.MULTILINE):
        widths = {unescaped_pipes(line) for line in block.splitlines()}
        assert len(widths) == 1, block  # every row has as many cells as the header
    assert "### Comparison with baseline" in text
    assert "REGRESSION" in text and "exact-equal" in text
    assert re.search(r"<details><summary>All \d+ compared metrics</summary>", text)
    assert "| FAIL |" in text
    assert "Sample outputs" in text  # shown for the failing test
    assert "### Totals" in text and "completion tokens" in text
    assert escape_markdown("a\nb|c") == "a<br>b\\|c"
    no_comparison = render_markdown(current, None)
    assert "Comparison" not in no_comparison


def test_html_has_svg_plots_frontier_and_escaped_outputs() -> None:
    baseline, current = report_run("base"), report_run("current", slowdown=1.4)
    comparison = compare_runs(baseline, current, thresholds={"ms_per_request": 0.1})
    page = render_html(current, comparison, baseline)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('class="ib-plot"') >= 8  # ms and ttft plots of four tests
    assert 'class="ib-plot ib-frontier"' in page
    assert 'class="budget"' in page  # the ms_per_request budget line
    assert "baseline (n=12)" in page and "current (n=12)" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert XSS not in page
    assert page.count("<script") == 1  # only the page's own
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing external
    assert "Content-Security-Policy" in page and "script-src 'sha256-" in page
    assert pareto_frontier([(10, 0.5), (20, 0.75), (30, 0.6), (5, 0.1)]) == [
        (5, 0.1),
        (10, 0.5),
        (20, 0.75),
    ]
    plain = render_html(current, None)
    assert "Comparison" not in plain and "baseline (n=" not in plain


def test_html_plots_the_comparisons_change_with_its_interval_beside_the_baseline() -> None:
    baseline, current = report_run("base"), report_run("current", slowdown=1.4)
    comparison = compare_runs(baseline, current, thresholds={"ms_per_request": 0.1})
    change = next(
        c
        for c in comparison.changes
        if c.nodeid == "t.py::test_fast[a|b]" and c.metric == "ms_per_request"
    )
    assert change.ci_low is not None and change.ci_high is not None
    page = render_html(current, comparison, baseline)
    section = page[page.index("<h3>t.py::test_fast[a|b]") :]
    plot = section[: section.index("</svg>")]
    caption = re.search(r'<text class="change regression"[^>]*>([^<]*)</text>', plot)
    assert caption is not None, plot[:600]
    interval = f"[{change.ci_low:+.1%}, {change.ci_high:+.1%}]"
    assert f"change {change.relative_change:+.1%} {interval} vs baseline" in caption.group(1)
    assert "REGRESSION (gated)" in caption.group(1)
    bar = re.search(r'<g class="interval"><line x1="([\d.]+)"[^>]*x2="([\d.]+)"', plot)
    assert bar is not None and float(bar.group(1)) <= float(bar.group(2))  # exact 1.4x here
    # without the baseline's samples there is nothing to set the change beside
    assert 'class="change' not in render_html(current, comparison)


def test_markdown_links_the_html_report() -> None:
    text = render_markdown(report_run(), None, "reports/run 1.html")
    assert "- **full report:** [HTML, with plots and outputs](reports/run%201.html)" in text
    assert "full report" not in render_markdown(report_run(), None)


CHROMIUM = Path("/usr/bin/chromium")


NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless browser check needs Debian's chromium: apt-get install chromium",
)


def chromium_command(tmp_path: Path) -> list[str]:
    """Headless Chromium with nothing of its own on the network, logging to stderr."""
    return [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]


@NEEDS_CHROMIUM
def test_html_renders_in_headless_chromium_without_script_errors(tmp_path: Path) -> None:
    baseline, current = report_run("base"), report_run("current", slowdown=1.4)
    comparison = compare_runs(baseline, current, thresholds={"ms_per_request": 0.1})
    page = tmp_path / "report.html"
    page.write_text(render_html(current, comparison, baseline), encoding="utf-8")
    common = chromium_command(tmp_path)
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ib-ready="1"' in dom.stdout  # the page's script ran to its end
    assert dom.stdout.count("<svg") >= 9
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout
    errors = [
        line
        for line in dom.stderr.splitlines()
        if "Uncaught" in line or "Content Security Policy" in line
    ]
    assert not errors, errors  # no script error, nothing the page's policy had to block
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [*common, f"--screenshot={screenshot}", "--window-size=1200,2000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000


def test_html_history_names_the_saved_runs_it_could_not_read(tmp_path: Path) -> None:
    from pytest_inferbudget.compare import hardware_key
    from pytest_inferbudget.report.outputs import RunOutputs, _html
    from pytest_inferbudget.storage import save_run

    older, current = report_run("older"), report_run("current")
    key = hardware_key(current)
    save_run(tmp_path, key, older, "older")
    broken = tmp_path / key / "20260101T000001Z_broken.json"
    broken.write_text("{ not json", "utf-8")
    outputs = RunOutputs()
    _html(tmp_path / "r.html", current, None, None, tmp_path, outputs)
    page = (tmp_path / "r.html").read_text("utf-8")
    assert "<h2>History" in page  # the readable run and this one
    [note] = outputs.lines
    assert note.startswith("history: left out 1 unreadable run(s): ") and broken.name in note
    assert escape(note) in page


def test_cli_report_draws_the_baseline_its_saved_comparison_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_inferbudget.cli import main
    from pytest_inferbudget.compare import hardware_key
    from pytest_inferbudget.storage import save_run

    baseline, current = report_run("base"), report_run("current", slowdown=1.4)
    current["comparison"] = compare_runs(baseline, current).to_dict()
    key = hardware_key(current)
    save_run(tmp_path, key, baseline, "base")
    save_run(tmp_path, key, current, "current")
    html, md = tmp_path / "r.html", tmp_path / "out" / "r.md"
    args = ["report", "current", "--storage", str(tmp_path), "--html", str(html)]
    assert main([*args, "--md", str(md)]) == 0
    assert "baseline (n=12)" in html.read_text("utf-8")
    assert "[HTML, with plots and outputs](../r.html)" in md.read_text("utf-8")
    (tmp_path / key).joinpath(next(p.name for p in (tmp_path / key).glob("*_base.json"))).unlink()
    capsys.readouterr()
    assert main(args) == 0  # the baseline is gone: drawn without it, and said so
    assert "baseline not drawn:" in capsys.readouterr().err
    assert "baseline (n=" not in html.read_text("utf-8")
