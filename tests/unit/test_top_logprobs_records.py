"""A request's ``top_logprobs`` and a generation's top tokens and first-token entropy:
checked, and carried through JSON only when set (a cassette keys on the request's dict)."""

from __future__ import annotations

import json

import pytest

from pytest_inferbudget.records import MAX_TOP_LOGPROBS, Generation, Request


def test_top_logprobs_is_checked() -> None:
    assert Request("hi").top_logprobs == 0
    assert Request("hi", top_logprobs=MAX_TOP_LOGPROBS).top_logprobs == MAX_TOP_LOGPROBS
    for bad in (-1, MAX_TOP_LOGPROBS + 1, True, 2.0):
        with pytest.raises(ValueError, match=r"top_logprobs must be an integer from 0 .* 20"):
            Request("hi", top_logprobs=bad)  # type: ignore[arg-type]


def test_request_dict_names_top_logprobs_only_when_asked() -> None:
    assert "top_logprobs" not in Request("hi").to_dict()  # old cassettes keep their keys
    asked = Request("hi", top_logprobs=5)
    assert asked.to_dict()["top_logprobs"] == 5
    assert Request.from_dict(json.loads(json.dumps(asked.to_dict()))) == asked


def test_generation_top_fields_round_trip_and_stay_out_when_unset() -> None:
    plain = Generation("a", 3, 1, "stop")
    assert not {"top_logprobs", "first_token_entropy", "entropy_source"} & set(plain.to_dict())
    top = ((("a", -0.1), ("b", -2.4)), (("<|im_end|>", -0.01), ("!", -5.0)))
    g = Generation(
        "a", 3, 2, "stop", top_logprobs=top, first_token_entropy=0.35, entropy_source="top_k"
    )
    data = json.loads(json.dumps(g.to_dict()))
    assert data["top_logprobs"][0] == [["a", -0.1], ["b", -2.4]]
    assert data["entropy_source"] == "top_k"
    assert Generation.from_dict(data) == g


def test_entropy_and_its_source_go_together() -> None:
    with pytest.raises(ValueError, match="set both or neither"):
        Generation("a", 3, 1, "stop", first_token_entropy=0.3)
    with pytest.raises(ValueError, match="entropy_source must be one of full, top_k"):
        Generation("a", 3, 1, "stop", first_token_entropy=0.3, entropy_source="guess")  # type: ignore[arg-type]
