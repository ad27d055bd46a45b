"""eff@k on generated code: the real model writes it, the sandbox runs it, budgets judge it."""

from __future__ import annotations

import json

import pytest

from pytest_inferbudget.code import example_task_path
from tests.conftest import ReuseEngine


def test_generated_code_is_scored_into_pass_and_eff_budgets(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    task = example_task_path("is_even")
    pytester.makepyfile(
        f"""
        import json
        import pytest

        TASK = {str(task)!r}
        PROMPT = json.load(open(TASK))["prompt"]

        @pytest.mark.budget(pass_at_k=(2, 0.5), eff_at_k=(2, 0.2), tokens_per_request=400)
        def test_is_even(infer):
            out = infer(PROMPT, temperature=0.7, n=3, seed=1, max_new_tokens=96)
            samples = infer.score_code(out, TASK)
            assert len(samples) == 3
        """
    )
    result = pytester.runpytest("--inferbudget-json=r.json", plugins=[reuse_engine])
    result.assert_outcomes(passed=1)
    test = json.loads((pytester.path / "r.json").read_text())["tests"][0]
    scores = test["scores"]
    assert [s["problem"] for s in scores] == ["is_even"] * 3
    assert any(s["correct"] for s in scores)
    # a wrong sample has no efficiency worth counting; a right one is scored vs the reference
    for score in scores:
        assert score["efficiency"] >= 0
        if not score["correct"]:
            assert score["efficiency"] == 0
    budgets = {b["key"]: b for b in test["budgets"]}
    assert budgets["eff_at_k@2"]["verdict"] == "pass"
    # contained by default, and the report says by what (CI installs bubblewrap)
    assert {s["containment"] for s in scores} <= {"bwrap", "unshare"}
    assert "UNCONTAINED" not in result.stdout.str()


def test_wrong_code_scores_zero_and_fails_the_floor(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    task = example_task_path("is_even")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.budget(eff_at_k=(1, 0.5))
        def test_asks_for_the_wrong_function(infer):
            out = infer("Write a Python function is_even(n) that returns n + 1. Only code.",
                        max_new_tokens=64)
            [sample] = infer.score_code(out, {str(task)!r})
            assert not sample.passed and sample.score == 0
        """
    )
    result = pytester.runpytest(plugins=[reuse_engine])
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*eff_at_k@1*>= 0.5*0*FAIL*"])
