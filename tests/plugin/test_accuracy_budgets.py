"""Accuracy-efficiency budgets and confident verdicts, through pytester on the real model."""

from __future__ import annotations

import json

import pytest

from pytest_inferbudget.metrics.accuracy import (
    cost_of_pass,
    e3,
    eff_at_k,
    efficiency_score,
    pass_at_k,
)
from tests.conftest import ReuseEngine

CAPITALS = """
QUESTIONS = [
    ("What is the capital of France? Answer in one word.", "Paris"),
    ("What is the capital of Japan? Answer in one word.", "Tokyo"),
    ("What is the capital of Italy? Answer in one word.", "Rome"),
]
"""


def run(pytester: pytest.Pytester, reuse: ReuseEngine, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--inferbudget-json=report.json", *args, plugins=[reuse])


def report(pytester: pytest.Pytester) -> dict:  # type: ignore[type-arg]
    return json.loads((pytester.path / "report.json").read_text())  # type: ignore[no-any-return]


def test_pass_eff_cost_of_pass_and_e3_are_computed_from_scored_samples(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        CAPITALS
        + """
import pytest

@pytest.mark.budget(
    pass_at_k=(2, 0.3), eff_at_k=(2, 0.01), eff_reference=10, cost_of_pass=400, e3=0.0001
)
def test_capitals(infer):
    for question, answer in QUESTIONS:
        out = infer(question, temperature=0.7, n=4, seed=5, max_new_tokens=16)
        infer.score(out, correct=[answer in text for text in out.texts])
"""
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*pass_at_k@2*>= 0.3*@95%*pass*", "*cost_of_pass*400 tokens*"])
    test = report(pytester)["tests"][0]
    scores = test["scores"]
    assert len(scores) == 12 and len({s["problem"] for s in scores}) == 3
    by_problem: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for s in scores:
        by_problem.setdefault(s["problem"], []).append(s)
    budgets = {b["key"]: b for b in test["budgets"]}
    expected_pass = (
        sum(pass_at_k(4, sum(s["correct"] for s in group), 2) for group in by_problem.values()) / 3
    )
    assert budgets["pass_at_k@2"]["measured"] == pytest.approx(expected_pass)
    expected_eff = (
        sum(
            eff_at_k([efficiency_score(s["tokens"], 10) if s["correct"] else 0.0 for s in g], 2)
            for g in by_problem.values()
        )
        / 3
    )
    assert budgets["eff_at_k@2"]["measured"] == pytest.approx(expected_eff)
    assert budgets["cost_of_pass"]["measured"] == pytest.approx(
        cost_of_pass([s["tokens"] for s in scores], [s["correct"] for s in scores])
    )
    accuracy = sum(s["correct"] for s in scores) / 12
    assert budgets["e3"]["measured"] == pytest.approx(
        e3(accuracy, sum(s["tokens"] for s in scores) / 12)
    )
    # each sample's cost is its own completion's tokens from the records
    generations = [g for t in test["traces"] for r in t["responses"] for g in r["generations"]]
    assert [s["tokens"] for s in scores] == [g["completion_tokens"] for g in generations]
    low, high = budgets["pass_at_k@2"]["ci_low"], budgets["pass_at_k@2"]["ci_high"]
    assert low <= budgets["pass_at_k@2"]["measured"] <= high


def test_k_above_the_samples_per_problem_says_how_many_there_are(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(pass_at_k=(8, 0.5))
        def test_too_few(infer):
            out = infer("Name a fruit.", temperature=0.7, n=3, seed=1, max_new_tokens=4)
            infer.score(out, correct=[True, False, True])
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*pass_at_k@8 needs at least 8 samples of every problem, but a problem has only 3*"]
    )


def test_cost_of_pass_with_no_success_is_infinite(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(cost_of_pass=1000)
        def test_never_right(infer):
            out = infer("What is the capital of France? Answer in one word.", max_new_tokens=8)
            infer.score(out, correct=False)
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cost_of_pass*1000 tokens*inf tokens*FAIL*"])
    assert report(pytester)["tests"][0]["budgets"][0]["measured"] == "inf"


def test_maj_at_k_uses_the_answers_given(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(maj_at_k=(3, 0.5))
        def test_vote(infer):
            out = infer("What is 3 + 4? Reply with a number only.", temperature=0.7, n=5,
                        seed=2, max_new_tokens=12)
            answers = ["7" if "7" in text else text for text in out.texts]
            infer.score(out, correct=[a == "7" for a in answers], answer=answers)
        """
    )
    result = run(pytester, reuse_engine)
    budget = report(pytester)["tests"][0]["budgets"][0]
    assert budget["key"] == "maj_at_k@3"
    assert 0.0 <= budget["measured"] <= 1.0
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    expected = "passed" if budget["measured"] >= 0.5 else "failed"
    result.assert_outcomes(**{expected: 1})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("infer.score('not a result', correct=True)", "*score() takes a result returned by*"),
        (
            "infer.score(infer('Say hi.', temperature=0.5, n=2, max_new_tokens=2), correct=True)",
            "*this result holds 2 samples; pass correct=[[]...[]] with one entry per sample*",
        ),
    ],
)
def test_score_misuse_is_a_clear_error(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, body: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        def test_misuse(infer):
            {body}
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([message])


def test_eff_at_k_without_reference_is_unmeasured_with_the_fix(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(eff_at_k=(1, 0.1))
        def test_no_reference(infer):
            infer.score(infer("Say hi.", max_new_tokens=4), correct=True)
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*eff_at_k needs a reference cost: give eff_reference=*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("budget(pass_at_k=4)", "*budget pass_at_k=4 must be a pair (k, floor)*"),
        ("budget(pass_at_k=(2, 1.5))", "*the floor must be between 0 and 1*"),
        ("budget(ms_per_request=500, confidence=0.95)", "*the mean of an unbounded quantity*"),
        ("budget(max_tokens=5, stat='max', ms_per_request=9, confidence=0.9)", "*maximum*"),
        ("budget(cost_of_pass=5, confidence=0.9)", "*has no confident verdict here*"),
        ("budget(ttft_ms=5, stat='p90', confidence=1.5)", "*must be a probability in [[]0.5, 1)*"),
        ("budget(ttft_ms=5, max_samples=10)", "*needs confidence=*"),
        ("budget(pass_at_k=(1, 0.5), eff_cost='watts')", "*eff_cost='watts' is not one of*"),
    ],
)
def test_bad_accuracy_and_confidence_specs_are_collection_errors(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_named(infer):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])


def test_too_few_samples_for_a_confident_tail_warns_or_fails_in_strict_mode(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(ms_per_request=60000, stat="p90", confidence=0.95)
        def test_three_samples(infer):
            infer.generate(["Say hi.", "Say yes.", "Say no."], max_new_tokens=4)
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*InconclusiveBudgetWarning*", "*ms_per_request*60000 ms*[[]*, ?] @95%*INCONCLUSIVE*"]
    )
    strict = run(pytester, reuse_engine, "--inferbudget-strict")
    strict.assert_outcomes(failed=1)


def test_sample_until_confident_stops_once_the_verdict_is_settled(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(ms_per_request=60000, stat="p50", confidence=0.9, max_samples=60)
        def test_until_confident(infer):
            results = infer.sample_until_confident(
                lambda: infer("Say hi.", max_new_tokens=2), batch=4
            )
            assert [r.verdict for r in results] == ["pass"]
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(passed=1)
    budget = report(pytester)["tests"][0]["budgets"][0]
    # the sequential p50 test at 90% needs a handful of samples, far fewer than the cap
    assert budget["verdict"] == "pass"
    assert 4 <= budget["samples"] < 60
    assert budget["samples"] % 4 == 0


def test_samples_past_the_saturation_point_are_a_lint_and_fail_under_strict(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(pass_at_k=(1, 0.5))
        def test_eight_samples_of_an_easy_question(infer):
            for problem in ("a", "b"):
                out = infer("Say yes.", temperature=0.8, n=8, seed=1, max_new_tokens=2)
                infer.score(out, correct=[True] * 8, problem=problem)
        """
    )
    result = pytester.runpytest(plugins=[reuse_engine])
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_eight_samples_of_an_easy_question: wasted_samples: 7 sample(s) per "
            "problem past N*; 8 samples per problem, pass@1 1.00: one more sample adds under "
            "0.01 after N* = 1*"
        ]
    )
    strict = pytester.runpytest("--inferbudget-strict", plugins=[reuse_engine])
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*inferbudget (strict): *wasted_samples: 7 sample(s)*"])
