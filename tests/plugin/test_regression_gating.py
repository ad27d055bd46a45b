"""Saved runs, comparison against a baseline, and the reports, on the real model."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_inferbudget.cli import main
from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.errors import ReportError
from pytest_inferbudget.records import Request, Response
from pytest_inferbudget.storage import find_run, run_name
from tests.conftest import ReuseEngine
from tests.engines.devices import auto_device_type

SUITE = """
import pytest

PROMPTS = ["Say hi.", "Name a color.", "Say yes.", "Name a fruit.", "Say no.", "Count to 3."]

@pytest.mark.budget(ms_per_request=60000)
def test_many_requests(infer):
    for _ in range(3):
        for prompt in PROMPTS:
            infer(prompt, max_new_tokens=6)
"""


class SlowerEngine:
    """The real engine made slower by a real pause after each call, ``factor`` times the
    call's own time: a regression of the same size however busy the machine is."""

    def __init__(self, engine: Engine, factor: float) -> None:
        self._engine = engine
        self._factor = factor
        self.spec = engine.spec
        self.describe = engine.describe

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        start = time.perf_counter()
        responses = self._engine.generate(requests)
        pause_s = (time.perf_counter() - start) * self._factor
        time.sleep(pause_s)  # inside the engine call: the engine is slower
        added_ms = pause_s * 1000
        return [
            Response(
                r.request,
                tuple(
                    dataclasses.replace(
                        g,
                        e2e_ms=None if g.e2e_ms is None else g.e2e_ms + added_ms,
                        ttft_ms=None if g.ttft_ms is None else g.ttft_ms + added_ms,
                    )
                    for g in r.generations
                ),
                r.engine,
            )
            for r in responses
        ]

    def close(self) -> None:
        pass


class ServeSlower(ReuseEngine):
    def __init__(self, engine: Engine, factor: float) -> None:
        super().__init__(engine)
        self.factor = factor

    def pytest_inferbudget_make_engine(self, spec: EngineSpec) -> Engine | None:
        return SlowerEngine(self.engine, self.factor)


def saved(pytester: pytest.Pytester) -> list[Path]:
    return sorted((pytester.path / ".inferbudget").glob("*/*.json"))


def test_same_code_twice_shows_no_regression_and_a_slowdown_is_caught(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, smollm_engine: Engine
) -> None:
    pytester.makepyfile(SUITE)
    first = pytester.runpytest("--inferbudget-save=base", plugins=[reuse_engine])
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["run saved to */.inferbudget/*/*_base.json"])
    [baseline] = saved(pytester)

    again = pytester.runpytest(
        "--inferbudget-compare",
        "--inferbudget-compare-fail=ms_per_request:200%",
        plugins=[reuse_engine],
    )
    again.assert_outcomes(passed=1)
    assert again.ret == pytest.ExitCode.OK
    again.stdout.fnmatch_lines(
        # the gate passes; an ungated timing may still move on a machine others share
        [
            f"compared with base (*) from {baseline}",
            "*tokens_per_request*exact-equal*",
            "*regression(s)*",
        ]
    )

    slow = pytester.runpytest(
        "--inferbudget-compare=base",
        "--inferbudget-compare-fail=ms_per_request:100%",
        "--inferbudget-md=summary.md",
        "--inferbudget-html=report.html",
        "--inferbudget-json=run.json",
        plugins=[ServeSlower(smollm_engine, factor=4.0)],  # +400%, gated at 100%
    )
    slow.assert_outcomes(failed=1)  # the gated test itself fails, naming the regression
    assert slow.ret == pytest.ExitCode.TESTS_FAILED
    slow.stdout.fnmatch_lines(
        [
            "inferbudget: regression against baseline base (*",
            "*::test_many_requests ms_per_request: * -> * (+*%*, threshold 100%, *regression)*",
            "*test_many_requests  ms_per_request *+*%*100% gate*REGRESSION (gated)",
            "inferbudget: ERROR gate failed (--inferbudget-compare-fail):",
            "  *::test_many_requests ms_per_request: * -> * (+*%*, threshold 100%, *regression)*",
        ]
    )
    report = json.loads((pytester.path / "run.json").read_text())
    verdicts = {
        c["metric"]: c["verdict"] for t in report["comparison"]["tests"] for c in t["changes"]
    }
    assert verdicts["ms_per_request"] == "regression"
    assert verdicts["tokens_per_request"] == "exact-equal"
    summary = (pytester.path / "summary.md").read_text()
    assert "ms\\_per\\_request" in summary
    assert "[HTML, with plots and outputs](report.html)" in summary
    html = (pytester.path / "report.html").read_text()
    assert "baseline (n=" in html and "current (n=" in html  # the baseline's requests beside
    assert re.search(r'class="change regression"[^>]*>change \+\d', html)
    assert len(saved(pytester)) == 1, "compare alone must not save"


def test_corrupt_or_newer_baseline_is_an_error_naming_the_file(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(SUITE.replace("range(3)", "range(1)"))
    pytester.runpytest("--inferbudget-save=base", plugins=[reuse_engine])
    [baseline] = saved(pytester)
    baseline.write_text(baseline.read_text()[:200])  # truncated, as by a full disk
    # checked at start-up: no test runs against a baseline that cannot be read
    result = pytester.runpytest("--inferbudget-compare", plugins=[reuse_engine])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*inferbudget: cannot compare: {baseline} is not*"])
    result.assert_outcomes()

    data = json.loads(json.dumps({"schema_version": 99}))
    baseline.write_text(json.dumps(data))
    result = pytester.runpytest(f"--inferbudget-compare={baseline}", plugins=[reuse_engine])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{baseline} is not a valid saved run*schema_version 99*"])


def test_a_missing_baseline_is_a_usage_error_at_start_up_or_a_warning_when_asked(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(SUITE.replace("range(3)", "range(1)"))
    result = pytester.runpytest("--inferbudget-compare", plugins=[reuse_engine])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.assert_outcomes()  # refused before any test ran
    result.stderr.fnmatch_lines(
        ["*no saved runs under * to compare with; save one first with --inferbudget-save*"]
    )
    result = pytester.runpytest("--inferbudget-compare=gone.json", plugins=[reuse_engine])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gone.json: no such file*"])

    # a first run on a new runner: compare when a baseline exists, else say so and pass
    first = pytester.runpytest(
        "--inferbudget-compare=main",
        "--inferbudget-compare-missing=warn",
        "--inferbudget-compare-fail=tokens_per_request:0",
        "--inferbudget-save=main",
        plugins=[reuse_engine],
    )
    first.assert_outcomes(passed=1)
    assert first.ret == pytest.ExitCode.OK
    first.stdout.fnmatch_lines(["*no baseline to compare with (no saved runs under*skipped*"])
    second = pytester.runpytest(
        "--inferbudget-compare=main",
        "--inferbudget-compare-missing=warn",
        "--inferbudget-compare-fail=tokens_per_request:0",
        plugins=[reuse_engine],
    )
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["compared with main (*", "*tokens_per_request*exact-equal*"])
    named = pytester.runpytest("--inferbudget-compare=nosuch", plugins=[reuse_engine])
    assert named.ret == pytest.ExitCode.USAGE_ERROR
    named.stderr.fnmatch_lines(["*'nosuch' matches no run saved under*saved names: main*"])


def test_compare_options_that_would_fail_silently_are_usage_errors(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_x(): pass")
    alone = pytester.runpytest("--inferbudget-compare-fail=ms_per_request:10%")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines(["*--inferbudget-compare-fail gates a comparison, but nothing*"])
    path = pytester.runpytest("--inferbudget-compare", str(pytester.path))
    assert path.ret == pytest.ExitCode.USAGE_ERROR
    path.stderr.fnmatch_lines(["*took * as the run to compare with, but it is a test path*"])
    both = pytester.runpytest("--inferbudget-compare=x", "--inferbudget-compare-latest")
    assert both.ret == pytest.ExitCode.USAGE_ERROR


def test_bad_compare_fail_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--inferbudget-compare-fail=latency:10%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'latency:10%' is not METRIC:THRESHOLD*"])


@pytest.mark.model  # loads the real model in a subprocess
def test_xdist_run_records_the_same_as_a_serial_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("prompt", ["Say hi.", "Name a color.", "Say yes.", "Say no."])
        @pytest.mark.budget(max_tokens=16)
        def test_prompt(infer, prompt):
            infer(prompt, max_new_tokens=8)
        """
    )
    serial = pytester.runpytest_subprocess(
        "--inferbudget-json=serial.json", "--junitxml=serial.xml", timeout=600
    )
    serial.assert_outcomes(passed=4)
    parallel = pytester.runpytest_subprocess(
        "-n", "2", "--inferbudget-json=parallel.json", "--junitxml=parallel.xml", timeout=600
    )
    parallel.assert_outcomes(passed=4)

    def records(name: str) -> dict[str, object]:
        run = json.loads((pytester.path / name).read_text())
        # the workers' engine reached the controller
        assert str(run["engine"]["device"]).startswith(auto_device_type())
        return {
            t["nodeid"]: (
                [b["measured"] for b in t["budgets"]],
                [
                    g["text"]
                    for tr in t["traces"]
                    for r in tr["responses"]
                    for g in r["generations"]
                ],
            )
            for t in run["tests"]
        }

    assert records("serial.json") == records("parallel.json")
    assert junit_properties(pytester.path / "serial.xml") == measured_properties(
        pytester.path / "serial.json"
    )
    assert junit_properties(pytester.path / "parallel.xml") == measured_properties(
        pytester.path / "parallel.json"
    )
    assert junit_properties(pytester.path / "serial.xml") == junit_properties(
        pytester.path / "parallel.xml"
    )


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    """Each test case's ``inferbudget:*`` properties, by pytest node id."""
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        properties = {
            p.get("name", ""): p.get("value", "")
            for p in case.iter("property")
            if p.get("name", "").startswith("inferbudget:")
        }
        cases[f"{module}.py::{case.get('name')}"] = properties
    return cases


def measured_properties(path: Path) -> dict[str, dict[str, str]]:
    """What the JUnit properties must say, from the JSON report of the same run."""
    run = json.loads(path.read_text())
    return {
        t["nodeid"]: {
            name: value
            for b in t["budgets"]
            for name, value in (
                (f"inferbudget:{b['key']}:{b['stat'] or 'value'}", str(b["measured"])),
                (f"inferbudget:{b['key']}:verdict", b["verdict"]),
            )
        }
        for t in run["tests"]
    }


def test_junit_xml_carries_each_tests_measured_values(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=16, ms_per_request=60000, ttft_ms=60000)
        @pytest.mark.budget(ms_per_request=60000, stat="p90")
        def test_budgeted(infer):
            infer("Say hi.", max_new_tokens=6)
            infer("Name a color.", max_new_tokens=6)

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest(
        "--junitxml=junit.xml", "--inferbudget-json=run.json", plugins=[reuse_engine]
    )
    result.assert_outcomes(passed=2)
    properties = junit_properties(pytester.path / "junit.xml")
    expected = measured_properties(pytester.path / "run.json")
    budgeted = "test_junit_xml_carries_each_tests_measured_values.py::test_budgeted"
    assert properties[budgeted] == expected[budgeted]
    assert {"inferbudget:ms_per_request:mean", "inferbudget:ms_per_request:p90"} <= set(
        properties[budgeted]
    )
    assert float(properties[budgeted]["inferbudget:ms_per_request:mean"]) > 0
    assert properties[budgeted]["inferbudget:max_tokens:verdict"] == "pass"
    plain = "test_junit_xml_carries_each_tests_measured_values.py::test_plain"
    assert properties[plain] == {}


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_cli_lists_saved_runs_per_hardware_key_and_finds_them_by_name(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(SUITE.replace("range(3)", "range(1)"))
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "suite")
    commit = git(pytester.path, "rev-parse", "HEAD")
    pytester.runpytest("--inferbudget-save=base", plugins=[reuse_engine]).assert_outcomes(passed=1)
    auto = pytester.runpytest("--inferbudget-autosave", plugins=[reuse_engine])
    auto.assert_outcomes(passed=1)
    auto.stdout.fnmatch_lines([f"run saved to */.inferbudget/*/*_{commit[:12]}.json"])
    literal = pytester.runpytest("--inferbudget-save=autosave", plugins=[reuse_engine])
    literal.assert_outcomes(passed=1)  # a run the user names "autosave" keeps that name
    runs = {run_name(p): p for p in saved(pytester)}
    assert "autosave" in runs
    base, autosaved = runs["base"], runs[commit[:12]]
    data = json.loads(autosaved.read_text())
    assert data["commit"]["id"] == commit
    assert data["commit"]["dirty"] is False
    key = base.parent.name

    storage = str(pytester.path / ".inferbudget")
    capsys.readouterr()  # the inner runs' output
    assert main(["list", "--storage", storage]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"hardware key {key}: transformers:smollm2-135m-instruct on ")
    assert out[1].split() == ["name", "date", "commit", "tests", "run", "id"]
    rows = {line.split()[0]: line.split()[1:] for line in out[2:]}
    base_data = data_of(base)
    assert rows["base"] == [base_data["started_at"], commit[:12], "1", base_data["run_id"][:8]]
    assert rows[commit[:12]] == [data["started_at"], commit[:12], "1", data["run_id"][:8]]

    assert main(["compare", "base", commit[:12], "--storage", storage]) == 0
    compared = capsys.readouterr().out
    assert "tokens_per_request" in compared and "exact-equal" in compared
    assert main(["report", data["run_id"][:10], "--storage", storage, "--html", "r.html"]) == 0
    assert "<svg" in (pytester.path / "r.html").read_text()
    assert main(["show", "no-such-run", "--storage", storage]) == 2
    assert "see `inferbudget list`" in capsys.readouterr().err

    with pytest.raises(ReportError, match=r"saved on other hardware: .*_base\.json.*any-hardware"):
        find_run(pytester.path / ".inferbudget", "0" * 16, "base")


def data_of(path: Path) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded


def test_a_baseline_from_other_hardware_is_refused_unless_allowed(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(SUITE.replace("range(3)", "range(1)"))
    pytester.runpytest("--inferbudget-save=base", plugins=[reuse_engine])
    [base] = saved(pytester)
    other = json.loads(base.read_text())
    other["hardware"]["cpu_model"] = "Another CPU"
    (pytester.path / "other.json").write_text(json.dumps(other))

    refused = pytester.runpytest("--inferbudget-compare=other.json", plugins=[reuse_engine])
    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    refused.stdout.fnmatch_lines(
        ["*cannot compare*different hardware*cpu_model: 'Another CPU' (baseline)*"]
    )
    allowed = pytester.runpytest(
        "--inferbudget-compare=other.json",
        "--inferbudget-compare-any-hardware",
        plugins=[reuse_engine],
    )
    assert allowed.ret == pytest.ExitCode.OK
    allowed.stdout.fnmatch_lines(["*against baseline other (*)*different hardware: cpu_model*"])


def test_save_and_autosave_together_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--co", "--inferbudget-save=main", "--inferbudget-autosave")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--inferbudget-save main and --inferbudget-autosave both name the saved run; give one*"]
    )
