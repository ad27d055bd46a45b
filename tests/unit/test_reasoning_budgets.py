"""Reasoning in the records and the budgets: what a generation keeps, how traces and
scores add it up, and how the reasoning keys and cost units are parsed and judged."""

from __future__ import annotations

import pytest

from pytest_inferbudget.budget import KEYS, parse_marker_kwargs
from pytest_inferbudget.errors import BudgetSpecError
from pytest_inferbudget.records import Generation, Request, Response, Score, Trace
from pytest_inferbudget.verdicts import evaluate
from pytest_inferbudget.vocabulary import Verdict


def generation(
    completion: int, reasoning: int | None, ttft: float, ttfat: float | None
) -> Generation:
    return Generation(
        text="Paris.",
        prompt_tokens=9,
        completion_tokens=completion,
        finish_reason="stop",
        e2e_ms=500.0,
        ttft_ms=ttft,
        tpot_ms=None,
        reasoning_text="the capital of France" if reasoning else "",
        reasoning_tokens=reasoning,
        ttfat_ms=ttfat,
    )


def trace(*generations: Generation) -> Trace:
    request = Request(
        "q", max_new_tokens=64, n=len(generations), temperature=0.7 if len(generations) > 1 else 0.0
    )
    return Trace((Response(request, generations),))


def test_a_generation_round_trips_and_old_records_read_unmeasured() -> None:
    g = generation(30, 24, 40.0, 300.0)
    assert Generation.from_dict(g.to_dict()) == g
    assert g.answer_tokens == 6
    old = {
        k: v
        for k, v in g.to_dict().items()
        if k not in ("reasoning_tokens", "ttfat_ms", "reasoning_text")
    }
    back = Generation.from_dict(old)
    assert (back.reasoning_tokens, back.answer_tokens, back.ttfat_ms, back.reasoning_text) == (
        None,
        None,
        None,
        "",
    )


def test_more_reasoning_than_completion_is_refused() -> None:
    with pytest.raises(
        ValueError, match="reasoning_tokens must be between 0 and completion_tokens"
    ):
        generation(5, 6, 1.0, None)


def test_traces_add_up_samples_and_take_the_earliest_answer() -> None:
    t = trace(generation(30, 24, 40.0, 300.0), generation(20, 10, 35.0, 200.0))
    assert (t.completion_tokens, t.reasoning_tokens, t.answer_tokens) == (50, 34, 16)
    assert t.ttfat_ms == 200.0
    unknown = trace(generation(30, 24, 40.0, 300.0), generation(20, None, 35.0, None))
    assert (unknown.reasoning_tokens, unknown.answer_tokens) == (None, None)


def test_a_score_round_trips_with_its_reasoning() -> None:
    score = Score("p", True, 30, 500.0, reasoning_tokens=24)
    assert Score.from_dict(score.to_dict()) == score and score.answer_tokens == 6
    assert Score.from_dict(Score("p", True, 30, None).to_dict()).reasoning_tokens is None


def test_the_keys_are_tokens_and_ms() -> None:
    assert (KEYS["reasoning_tokens"].unit, KEYS["answer_tokens"].unit, KEYS["ttfat_ms"].unit) == (
        "tokens",
        "tokens",
        "ms",
    )
    assert KEYS["reasoning_tokens"].deterministic and KEYS["ttfat_ms"].load_sensitive


def test_budgets_judge_reasoning_answer_and_ttfat() -> None:
    t = trace(generation(30, 24, 40.0, 300.0))
    limits = parse_marker_kwargs(
        {"reasoning_tokens": 24, "answer_tokens": 5, "ttfat_ms": 250}, where="t"
    )
    results = {r.key: r for r in evaluate(limits, [t])}
    assert (results["reasoning_tokens"].measured, results["reasoning_tokens"].verdict) == (
        24,
        Verdict.PASS,
    )
    assert (results["answer_tokens"].measured, results["answer_tokens"].verdict) == (
        6,
        Verdict.FAIL,
    )
    assert (results["ttfat_ms"].measured, results["ttfat_ms"].verdict) == (300.0, Verdict.FAIL)


@pytest.mark.parametrize(
    ("unit", "cost", "e3"),
    [
        ("tokens", 40.0, 0.25 / 40),
        ("answer_tokens", 10.0, 0.25 / 10),
        ("reasoning_tokens", 30.0, 0.25 / 30),
    ],
)
def test_cost_of_pass_and_e3_count_the_named_tokens(unit: str, cost: float, e3: float) -> None:
    """Two samples of 40 tokens (30 reasoning), one right: cost-of-pass is twice a
    sample's cost, E3 is accuracy squared over the mean cost."""
    scores = [
        Score("p", True, 40, 1.0, reasoning_tokens=30),
        Score("p", False, 40, 1.0, reasoning_tokens=30),
    ]
    limits = parse_marker_kwargs({"cost_of_pass": 1e6, "e3": 1e-9, "cost_unit": unit}, where="t")
    results = {r.key: r for r in evaluate(limits, [], scores)}
    assert results["cost_of_pass"].measured == pytest.approx(2 * cost)
    assert results["e3"].measured == pytest.approx(e3)


def test_e3_on_uncounted_reasoning_is_unmeasured() -> None:
    limits = parse_marker_kwargs({"e3": 1e-9, "cost_unit": "answer_tokens"}, where="t")
    (result,) = evaluate(limits, [], [Score("p", True, 40, 1.0)])
    assert result.verdict == Verdict.UNMEASURED and "answer_tokens" in result.reason


def test_eff_at_k_counts_answer_tokens() -> None:
    limits = parse_marker_kwargs(
        {"eff_at_k": (1, 0.1), "eff_reference": 10, "eff_cost": "answer_tokens"}, where="t"
    )
    (result,) = evaluate(limits, [], [Score("p", True, 40, 1.0, reasoning_tokens=30)])
    assert result.measured == pytest.approx(1.0)  # 10 answer tokens: the reference's cost


def test_an_unknown_cost_unit_names_the_reasoning_units() -> None:
    with pytest.raises(BudgetSpecError, match="'answer_tokens', 'reasoning_tokens'"):
        parse_marker_kwargs({"cost_of_pass": 1.0, "cost_unit": "thinking"}, where="t")


def test_the_html_report_draws_ttfat_beside_ttft_only_where_a_request_reasoned() -> None:
    from pytest_inferbudget.records import RunRecord, TestRecord
    from pytest_inferbudget.report.html import render_html

    def run(reasoning: int | None) -> dict[str, object]:
        g = generation(30, reasoning, 40.0, 300.0 if reasoning else 40.0)
        traces = [trace(g) for _ in range(3)]
        test = TestRecord("t.py::test_r", traces=traces, outcome="passed")
        return RunRecord("r", "2026-01-01T00:00:00+00:00", tests=[test]).to_dict()

    assert "time to first answer token (ms)" in render_html(run(24), None)
    page = render_html(run(0), None)
    assert "time to first token (ms)" in page and "time to first answer token" not in page
