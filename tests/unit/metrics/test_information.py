"""Information capacity and bits per byte: the formulas, the budgets that judge them."""

from __future__ import annotations

import math

import pytest

from pytest_inferbudget.budget import parse_marker_kwargs
from pytest_inferbudget.errors import BudgetSpecError
from pytest_inferbudget.metrics import bits_per_byte, code_length_bits, information_capacity
from pytest_inferbudget.metrics.information import token_windows
from pytest_inferbudget.records import TestRecord, TextMeasurement
from pytest_inferbudget.verdicts import evaluate


def test_code_length_is_the_sum_of_negative_log2_probabilities() -> None:
    probabilities = [0.5, 0.25, 0.125]
    assert code_length_bits([math.log(p) for p in probabilities]) == pytest.approx(1 + 2 + 3)
    with pytest.raises(ValueError, match="<= 0"):
        code_length_bits([0.1])


def test_information_capacity_follows_the_authors_per_token_formula() -> None:
    # 40 bytes in 10 tokens (32 bits/token), coded in 50 bits (5 bits/token), N = 2**20
    capacity = information_capacity(40, 50.0, 2.0**20, tokens=10, b=-27)
    assert capacity == pytest.approx((32 - 5 - 27) / 20)
    assert information_capacity(40, 50.0, 2.0**20, tokens=10) == capacity  # b = -27
    assert information_capacity(40, 40.0, 2.0**20, tokens=10) > capacity  # a better coder
    assert information_capacity(40, 50.0, 2.0**21, tokens=10, b=-20) == pytest.approx(7 / 21)
    assert bits_per_byte(40, 50.0) == 1.25


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text_bytes": 0, "total_bits": 1.0, "flops_per_token": 1e6, "tokens": 1}, "text_bytes"),
        ({"text_bytes": 4, "total_bits": -1.0, "flops_per_token": 1e6, "tokens": 1}, "total_bits"),
        ({"text_bytes": 4, "total_bits": 1.0, "flops_per_token": 1.0, "tokens": 1}, "flops_per"),
        ({"text_bytes": 4, "total_bits": 1.0, "flops_per_token": 1e6, "tokens": 0}, "tokens"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        information_capacity(**kwargs)  # type: ignore[arg-type]


def test_windows_leave_each_windows_first_token_as_context() -> None:
    assert token_windows(5, 2) == [(0, 2), (2, 4)]  # token 4 alone has nothing to score
    assert token_windows(3, 1024) == [(0, 3)]
    with pytest.raises(ValueError, match="at least 2"):
        token_windows(1, 1024)


def _measured(name: str, scored_bytes: int, bits: float, tokens: int) -> TextMeasurement:
    flops = 2.0**20
    return TextMeasurement(
        name=name,
        text_bytes=scored_bytes + 2,
        scored_bytes=scored_bytes,
        scored_tokens=tokens,
        tokens=tokens + 1,
        total_bits=bits,
        flops_per_token=flops,
        b=-27.0,
        window_tokens=1024,
        information_capacity=information_capacity(scored_bytes, bits, flops, tokens=tokens),
        bits_per_byte=bits / scored_bytes,
    )


def test_text_budgets_judge_the_named_text_or_all_texts_pooled() -> None:
    texts = [_measured("prose", 400, 500.0, 100), _measured("code", 100, 300.0, 50)]
    named = parse_marker_kwargs(
        {"information_capacity": 0.0, "bits_per_byte": 1.3, "text": "prose"}, where="t"
    )
    results = {r.key: r for r in evaluate(named, [], texts=texts)}
    assert results["information_capacity"].measured == pytest.approx(texts[0].information_capacity)
    assert results["bits_per_byte"].measured == pytest.approx(1.25)
    assert {r.verdict for r in results.values()} == {"pass"}
    both = parse_marker_kwargs({"bits_per_byte": 1.3, "information_capacity": 1.0}, where="t")
    pooled = {r.key: r for r in evaluate(both, [], texts=texts)}
    assert pooled["bits_per_byte"].measured == pytest.approx(800 / 500)
    assert pooled["bits_per_byte"].verdict == "fail"
    assert pooled["information_capacity"].measured == pytest.approx(
        (8 * 500 / 150 - 800 / 150 - 27) / 20
    )
    assert pooled["information_capacity"].verdict == "fail"
    [missing] = evaluate(
        parse_marker_kwargs({"bits_per_byte": 1.0, "text": "poem"}, where="t"), [], texts=texts
    )
    assert missing.verdict == "unmeasured"
    assert "no text named 'poem'" in missing.reason and "'prose'" in missing.reason


def test_text_budget_errors_name_the_fix() -> None:
    with pytest.raises(BudgetSpecError, match="text= is given without"):
        parse_marker_kwargs({"max_tokens": 3, "text": "prose"}, where="t")
    with pytest.raises(BudgetSpecError, match="measure_text"):
        parse_marker_kwargs({"bits_per_byte": 1.0, "text": 3}, where="t")
    with pytest.raises(BudgetSpecError, match="above 0"):
        parse_marker_kwargs({"bits_per_byte": 0}, where="t")


def test_measured_texts_survive_the_json_round_trip_and_old_records_load() -> None:
    text = _measured("prose", 400, 500.0, 100)
    record = TestRecord("t.py::t", texts=[text])
    assert TestRecord.from_dict(record.to_dict()).texts == [text]
    old = TestRecord("t.py::t").to_dict()
    assert "texts" not in old
    assert TestRecord.from_dict(old).texts == []
