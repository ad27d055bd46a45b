"""The first-day trial of the regression gate (issue 22), on the real model: a suite of
small tests, a prompt edit, and what the gate, the reports and the CLI say about it."""

from __future__ import annotations

import json
import math

import pytest

from pytest_inferbudget.cli import main
from tests.conftest import ReuseEngine

SUITE = """
import pytest

STYLE = "Answer in one word."

@pytest.mark.budget(ms_per_request=120000)
def test_capital(infer):
    for q in ["What is the capital of France?", "What is the capital of Italy?",
              "What is the capital of Spain?"]:
        infer(f"{q} {STYLE}", max_new_tokens=64)

@pytest.mark.budget(ms_per_request=120000)
def test_sky(infer):
    for q in ["What color is the sky?", "What color is grass?", "Name a fruit."]:
        infer(f"{q} {STYLE}", max_new_tokens=64)
"""
LONGER = 'STYLE = "Explain your answer in detail."'  # greedy answers about 3x longer
GATE = (
    "--inferbudget-compare-fail=tokens_per_request:0",
    "--inferbudget-compare-fail=ms_per_request:10%",
)


def test_a_prompt_edit_that_lengthens_answers_fails_the_token_gate_and_a_no_op_passes(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--inferbudget-save=baseline", plugins=[reuse_engine]).assert_outcomes(
        passed=2
    )

    same = pytester.runpytest("--inferbudget-compare=baseline", *GATE, plugins=[reuse_engine])
    same.assert_outcomes(passed=2)  # the same requests: tokens exact-equal, timing paired
    assert same.ret == pytest.ExitCode.OK
    same.stdout.fnmatch_lines(["*test_capital*tokens_per_request*3 vs 3*exact-equal"])

    pytester.makepyfile(test_suite=SUITE.replace('STYLE = "Answer in one word."', LONGER))
    edited = pytester.runpytest(
        "--inferbudget-compare=baseline",
        *GATE,
        "--inferbudget-md=summary.md",
        "--inferbudget-html=report.html",
        "--inferbudget-json=run.json",
        "--inferbudget-save=edited",
        plugins=[reuse_engine],
    )
    # 3 requests per side can never make Mann-Whitney significant: the token count, a
    # deterministic quantity, is judged on its point change instead, and fails the gate
    edited.assert_outcomes(failed=2)
    assert edited.ret == pytest.ExitCode.TESTS_FAILED
    edited.stdout.fnmatch_lines(
        [
            "*inferbudget: regression against baseline baseline (*",
            "*::test_capital tokens_per_request: * -> * (+*%, threshold 0%, n 3 vs 3, p point,"
            " regression): n too small for a test (3 vs 3)*",
        ]
    )
    edited.stdout.fnmatch_lines(
        [
            "FAILED test_suite.py::test_capital - *inferbudget: regression against*",
            "FAILED test_suite.py::test_sky - *inferbudget: regression against*",
        ]
    )
    # the timing, not deterministic, is called inconclusive with its sample sizes
    edited.stdout.fnmatch_lines(["*test_capital*ms_per_request*3 vs 3*inconclusive (n too small*"])
    report = json.loads((pytester.path / "run.json").read_text())
    tokens = [
        c
        for t in report["comparison"]["tests"]
        for c in t["changes"]
        if c["metric"] == "tokens_per_request"
    ]
    assert {c["verdict"] for c in tokens} == {"regression"}
    assert all(c["relative_change"] > 1.0 and c["method"] == "point" for c in tokens)
    markdown = (pytester.path / "summary.md").read_text()
    assert "REGRESSION" in markdown and "3 vs 3" in markdown
    assert "REGRESSION" in (pytester.path / "report.html").read_text()

    strict = pytester.runpytest(
        "--inferbudget-compare=baseline",
        "--inferbudget-compare-fail=ms_per_request:10%",
        "--inferbudget-strict",
        plugins=[reuse_engine],
    )
    # strict: a gated comparison too small to judge is a failure, not a pass
    strict.assert_outcomes(failed=2)
    strict.stdout.fnmatch_lines(["*ms_per_request*inconclusive*n too small*"])

    # `inferbudget compare` says why it exits 1, and writes Markdown and HTML
    storage = str(pytester.path / ".inferbudget")
    md, html = pytester.path / "c.md", pytester.path / "c.html"
    argv = ["compare", "baseline", "edited", "--storage", storage, "--fail=tokens_per_request:0"]
    assert main([*argv, f"--md={md}", f"--html={html}"]) == 1
    out, err = capsys.readouterr()
    assert "gate failed (--fail):" in err
    assert "test_capital tokens_per_request:" in err and "threshold 0%" in err
    assert "REGRESSION (gated)" in md.read_text() and "REGRESSION" in html.read_text()
    assert "3 vs 3" in out
    # the edited run was saved with its comparison: `inferbudget report` keeps it
    rendered = pytester.path / "r.md"
    assert main(["report", "edited", "--storage", storage, f"--md={rendered}"]) == 0
    assert "REGRESSION (gated)" in rendered.read_text()
    capsys.readouterr()
    assert main(["list", "--storage", storage, "--key", "zz"]) == 2
    assert "no hardware key under" in capsys.readouterr().err


ACCURACY = """
import pytest

CORRECT = {"a": [True, True, True], "b": [True, True, False], "c": [True, False, False],
           "d": [True, True, True]}

@pytest.mark.budget(pass_at_k=(2, 0.1), maj_at_k=(3, 0.1), cost_of_pass=10000)
def test_answers(infer):
    for problem, verdicts in CORRECT.items():
        for correct in verdicts:
            out = infer(f"Say {problem}.", max_new_tokens=4)
            infer.score(out, correct=correct, problem=problem, answer=str(correct))
"""


def test_accuracy_is_compared_per_problem_and_can_be_gated(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(test_accuracy=ACCURACY)
    pytester.runpytest("--inferbudget-save=base", plugins=[reuse_engine]).assert_outcomes(passed=1)
    same = pytester.runpytest("--inferbudget-compare=base", plugins=[reuse_engine])
    same.stdout.fnmatch_lines(["*pass_at_k*equal*", "*maj_at_k*equal*"])

    worse = ACCURACY.replace('"d": [True, True, True]', '"d": [False, False, False]')
    pytester.makepyfile(test_accuracy=worse.replace('"a": [True, True, True]', '"a": [False] * 3'))
    gated = pytester.runpytest(
        "--inferbudget-compare=base",
        "--inferbudget-compare-fail=pass_at_k:0",
        plugins=[reuse_engine],
    )
    gated.stdout.fnmatch_lines(["*test_answers*pass_at_k*-*%*4 vs 4*"])
    gated.stdout.fnmatch_lines(["*maj_at_k*"])
    # 4 paired problems can never reach significance: shown as such, never silently "ok"
    gated.stdout.fnmatch_lines(["*pass_at_k*inconclusive (pass_at_k@2*"])
    strict = pytester.runpytest(
        "--inferbudget-compare=base",
        "--inferbudget-compare-fail=pass_at_k:0",
        "--inferbudget-strict",
        plugins=[reuse_engine],
    )
    strict.assert_outcomes(failed=1)


NEVER_SOLVED = """
import pytest

@pytest.mark.budget(cost_of_pass=100)
def test_one_problem_never_solved(infer):
    out = infer("What is the capital of France?", max_new_tokens=8)
    infer.score(out, correct=True, problem="a")
    out = infer("What is the capital of Spain?", max_new_tokens=8)
    infer.score(out, correct=False, problem="b")
"""


def test_an_infinite_interval_never_breaks_a_report_or_a_saved_run(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(NEVER_SOLVED)
    result = pytester.runpytest(
        "--inferbudget-json=run.json",
        "--inferbudget-save=base",
        "--inferbudget-md=run.md",
        "--inferbudget-html=run.html",
        plugins=[reuse_engine],
    )
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*cost_of_pass*[[]*, inf] @95%*", "run saved to *"])
    report = json.loads((pytester.path / "run.json").read_text())
    [budget] = report["tests"][0]["budgets"]
    assert budget["ci_high"] == "inf"  # the JSON report's encoding of infinity
    assert math.isfinite(budget["measured"])
    assert (pytester.path / "run.md").exists() and (pytester.path / "run.html").exists()
    # the saved run reads back and compares with itself
    again = pytester.runpytest("--inferbudget-compare=base", plugins=[reuse_engine])
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*cost_of_pass*"])


def test_identical_values_are_called_equal_not_insignificant() -> None:
    from pytest_inferbudget.compare.judge import Gates, statistical_changes
    from pytest_inferbudget.vocabulary import Change

    same = [100.0, 120.0, 90.0, 110.0]
    [change] = statistical_changes(
        "t",
        ["ms_per_request"],
        {"ms_per_request": same},
        {"ms_per_request": list(reversed(same))},
        Gates("t", {}, {}, 0.05),
        0.05,
        0,
    )
    assert change.verdict is Change.EQUAL and change.method == "equal"
