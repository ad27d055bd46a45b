"""Speculative decoding without a model: the spec options, vLLM's server counters, the
records and the budget keys built on them, and timing of streams of multi-token chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_inferbudget.budget import parse_markers
from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai_settings import OpenAISettings
from pytest_inferbudget.engines.openai_wire import StreamState, take_chunk
from pytest_inferbudget.engines.speculative import (
    CandidateCounter,
    server_counters,
    split_server_delta,
    vllm_speculative_config,
)
from pytest_inferbudget.engines.transformers import TransformersEngine
from pytest_inferbudget.errors import EngineSpecError
from pytest_inferbudget.records import Generation, Request, Response, Speculation, Trace
from pytest_inferbudget.verdicts import evaluate

MS = 1_000_000


def spec(text: str) -> EngineSpec:
    return EngineSpec.parse(text)


# -- engine options ------------------------------------------------------------------------


def test_vllm_ngram_options_give_vllms_speculative_config() -> None:
    assert vllm_speculative_config(spec("vllm:m")) is None
    assert vllm_speculative_config(spec("vllm:m?speculative=ngram")) == {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_max": 4,
        "prompt_lookup_min": 2,
    }
    config = vllm_speculative_config(
        spec("vllm:m?speculative=ngram&num_speculative_tokens=6&prompt_lookup_min=3")
    )
    assert config is not None and config["num_speculative_tokens"] == 6
    assert config["prompt_lookup_min"] == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("speculative=eagle", "speculative='eagle' is not accepted.*none, ngram"),
        ("num_speculative_tokens=4", "without speculative=ngram"),
        ("speculative=ngram&num_speculative_tokens=0", "num_speculative_tokens must be an int"),
        ("speculative=ngram&prompt_lookup_max=x", "prompt_lookup_max must be an integer >= 1"),
        ("speculative=ngram&prompt_lookup_min=5", "prompt_lookup_min=5 exceeds"),
    ],
)
def test_bad_vllm_speculation_options_name_the_problem(options: str, message: str) -> None:
    with pytest.raises(EngineSpecError, match=message):
        vllm_speculative_config(spec(f"vllm:m?{options}"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("prompt_lookup_num_tokens=0", "prompt_lookup_num_tokens must be an integer >= 1"),
        ("prompt_lookup_num_tokens=4&batch_size=8", "one row at a time"),
    ],
)
def test_bad_prompt_lookup_options_fail_before_any_load(options: str, message: str) -> None:
    with pytest.raises(EngineSpecError, match=message):
        TransformersEngine.from_spec(spec(f"transformers:m?{options}"), lambda line: None)


def test_the_openai_engine_takes_spec_metrics_as_a_boolean() -> None:
    base = "openai:http://127.0.0.1:8000/v1?model=m"
    assert not OpenAISettings.from_spec(spec(base)).spec_metrics
    assert OpenAISettings.from_spec(spec(base + "&spec_metrics=true")).spec_metrics
    with pytest.raises(EngineSpecError, match="spec_metrics must be true or false"):
        OpenAISettings.from_spec(spec(base + "&spec_metrics=maybe"))


# -- vLLM's /metrics counters ----------------------------------------------------------------

EXPOSITION = """\
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="smollm"} 35.0
# HELP vllm:spec_decode_num_draft_tokens_total Number of draft tokens.
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="smollm"} 140.0
# HELP vllm:spec_decode_num_accepted_tokens_total Number of accepted tokens.
# TYPE vllm:spec_decode_num_accepted_tokens_total counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="smollm"} 45.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm",position="0"} 20.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm",position="1"} 12.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm",position="2"} 8.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="smollm",position="3"} 5.0
vllm:num_requests_running{engine="0",model_name="smollm"} 0.0
"""


def test_server_counters_are_read_from_the_exposition() -> None:
    assert server_counters(EXPOSITION) == {
        "steps": 35,
        "drafted": 140,
        "accepted": 45,
        "gamma": 4,
    }
    assert server_counters("vllm:num_requests_running 0.0\n") is None  # no speculation


def test_a_calls_counter_change_is_shared_by_completion_tokens_and_sums_exactly() -> None:
    before = {"steps": 35, "drafted": 140, "accepted": 45, "gamma": 4}
    after = {"steps": 46, "drafted": 184, "accepted": 62, "gamma": 4}
    shares = split_server_delta(before, after, [30, 10, 1])
    assert sum(s.drafted for s in shares) == 44 and sum(s.accepted for s in shares) == 17
    assert sum(s.steps for s in shares) == 11
    assert shares[0].drafted > shares[1].drafted >= shares[2].drafted
    assert all(s.approximate and s.gamma == 4 and s.accepted <= s.drafted for s in shares)


# -- transformers' candidate counts ------------------------------------------------------------


def test_the_candidate_counter_counts_steps_with_a_draft_only() -> None:
    counter = CandidateCounter(gamma=4)
    for drafted, matches in ((4, 4), (0, 0), (3, 1), (4, 0)):
        counter.drafted_step(drafted)
        counter.verified(matches)
    assert counter.speculation() == Speculation(11, 5, 3, 4, "engine")


# -- records and budget keys -----------------------------------------------------------------


def generation(tokens: int, counted: Speculation | None) -> Generation:
    return Generation("x", 5, tokens, "length", 100.0, 10.0, None, speculation=counted)


def trace(*counted: Speculation | None, tokens: int = 20) -> Trace:
    request = Request("q", max_new_tokens=tokens)
    return Trace(tuple(Response(request, (generation(tokens, c),), "vllm:m") for c in counted))


def test_speculation_round_trips_and_sums_over_a_trace() -> None:
    one = generation(20, Speculation(16, 9, 4, 4))
    assert Generation.from_dict(json.loads(json.dumps(one.to_dict()))) == one
    assert "speculation" not in generation(20, None).to_dict()  # old readers see no change
    both = trace(Speculation(16, 9, 4, 4), Speculation(8, 1, 2, 4, "server_metrics"))
    assert both.speculation == Speculation(24, 10, 6, 4, "server_metrics")
    assert trace(Speculation(16, 9, 4, 4), None).speculation is None
    with pytest.raises(ValueError, match="exceeds drafted"):
        Speculation(3, 4, 1, 4)
    with pytest.raises(ValueError, match="source must be one of"):
        Speculation(3, 2, 1, 4, "guess")  # type: ignore[arg-type]


def test_acceptance_rate_and_accept_length_are_ratios_of_totals_with_the_iid_note() -> None:
    traces = [trace(Speculation(16, 12, 4, 4)), trace(Speculation(24, 3, 6, 4))]
    limits = parse_markers(
        [((), {"spec_acceptance_rate": 0.3, "spec_accept_length": 2.0})], where="t"
    )
    rate, length = evaluate(limits, traces)
    assert rate.measured == pytest.approx(15 / 40) and rate.verdict == "pass"
    assert length.measured == pytest.approx((15 + 10) / 10) and length.verdict == "pass"
    expected = (1 - 0.375**5) / (1 - 0.375)
    assert f"expects {expected:.3g} at a=0.375" in rate.reason
    assert "accept length 2.5 tokens/step" in length.reason
    higher = parse_markers([((), {"spec_acceptance_rate": 0.5})], where="t")
    assert evaluate(higher, traces)[0].verdict == "fail"


def test_speculation_keys_say_why_when_nothing_was_counted_or_drafted() -> None:
    limits = parse_markers([((), {"spec_acceptance_rate": 0.3})], where="t")
    (plain,) = evaluate(limits, [trace(None)])
    assert plain.verdict == "unmeasured" and "speculative=ngram" in plain.reason
    (empty,) = evaluate(limits, [trace(Speculation(0, 0, 0, 4))])
    assert empty.verdict == "unmeasured" and "proposed no token" in empty.reason


def test_shared_server_counts_are_called_approximate() -> None:
    limits = parse_markers([((), {"spec_acceptance_rate": 0.1})], where="t")
    (result,) = evaluate(limits, [trace(Speculation(16, 12, 4, 4, "server_metrics"))])
    assert "approximate" in result.reason


# -- timing of multi-token chunks ----------------------------------------------------------------


def chunk(text: str, completion_tokens: int, finish: str | None = None) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 9, "completion_tokens": completion_tokens},
    }


def test_a_chunk_of_k_tokens_is_k_tokens_in_tpot_and_itl() -> None:
    """A speculative server's stream with usage on every chunk (vLLM's
    continuous_usage_stats): 1 token at 10 ms, then steps of 3, 1 and 4 tokens."""
    state = StreamState(start_ns=0, per_chunk_usage=True)
    for arrival_ms, data in (
        (10, chunk("a", 1)),
        (40, chunk("bcd", 4)),
        (50, chunk("e", 5)),
        (90, chunk("fghi", 9, "length")),
    ):
        take_chunk(state, data, json.dumps(data), arrival_ms * MS, "spec", "url")
    timing = state.timing()
    assert timing.itl_ms == (10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0)
    assert len(timing.itl_ms) == 9 - 1  # one gap per token after the first
    assert timing.e2e_ms is not None and timing.ttft_ms is not None
    assert sum(timing.itl_ms) == pytest.approx(timing.e2e_ms - timing.ttft_ms)


# -- reports --------------------------------------------------------------------------------


def test_reports_show_the_iid_note_beside_a_passing_speculation_key() -> None:
    import random

    from pytest_inferbudget.records import BudgetResult, MetricChange
    from pytest_inferbudget.report.comparison import format_change
    from pytest_inferbudget.report.html import render_html
    from pytest_inferbudget.report.markdown import render_markdown
    from pytest_inferbudget.vocabulary import Change, Direction, Verdict
    from tests.unit.runs import make_run, make_test

    test = make_test("t.py::test_spec", random.Random(1), n=3)
    traces = [trace(Speculation(16, 12, 4, 4))]
    limits = parse_markers([((), {"spec_acceptance_rate": 0.3})], where="t")
    (judged,) = evaluate(limits, traces)
    test.budgets = [
        judged,
        BudgetResult("ms_per_request", 9e9, "mean", "ms", 1.0, 3, Verdict.PASS, reason="hidden"),
    ]
    assert judged.verdict is Verdict.PASS and judged.direction is Direction.AT_LEAST
    run = make_run(test)
    for text in (render_markdown(run, None), render_html(run, None)):
        assert "the i.i.d. model" in text and "expects" in text
        assert "hidden" not in text  # other keys' reasons still show only when not passed
    paired = MetricChange(
        "t.py::test_spec", "ms_per_request", "ms", 100.0, 62.0, -0.38, 0.001, 0.001, 12, 12,
        0.1, Change.IMPROVEMENT, ci_low=-0.42, ci_high=-0.33, method="paired",
    )  # fmt: skip
    assert format_change(paired) == "-38.0% [-42.0%, -33.0%]"
