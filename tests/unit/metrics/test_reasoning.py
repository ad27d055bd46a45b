"""Splitting a completion into reasoning and answer: the text rule, the token count on the
model's own tokens, and the streaming watch that finds the first answer token."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, strategies as st

from pytest_inferbudget.metrics.reasoning import (
    DEFAULT_DELIMITERS,
    AnswerWatch,
    ReasoningSplit,
    reasoning_token_count,
    split_reasoning,
    split_tokens,
)


@pytest.mark.parametrize(
    ("text", "prefill", "expected"),
    [
        ("Paris.", "", ReasoningSplit("", "Paris.", opened=False, closed=False)),
        ("<think>capital</think>Paris.", "", ReasoningSplit("capital", "Paris.", True, True)),
        ("\n<think>x</think>\n\nParis", "", ReasoningSplit("x", "\n\nParis", True, True)),
        ("<think>still thinking", "", ReasoningSplit("still thinking", "", True, False)),
        ("<think>x</think>", "", ReasoningSplit("x", "", True, True)),
        # an opener later in the text is not a reasoning: the text is all answer
        (
            "Sure. <think>x</think>y",
            "",
            ReasoningSplit("", "Sure. <think>x</think>y", False, False),
        ),
        # a closer without an opener is all answer
        ("x</think>Paris", "", ReasoningSplit("", "x</think>Paris", False, False)),
        # the prefill opened the reasoning: the generated text starts inside it
        ("so Paris</think>Paris.", "<think>", ReasoningSplit("so Paris", "Paris.", True, True)),
        # the prefill closed it too: all that was generated is answer
        (" Paris.", "<think>x</think>The answer is", ReasoningSplit("x", " Paris.", True, True)),
        # the closer straddles prefill and generated text
        ("k>Paris", "<think>x</thin", ReasoningSplit("x", "Paris", True, True)),
    ],
)
def test_split_reasoning(text: str, prefill: str, expected: ReasoningSplit) -> None:
    assert split_reasoning(text, prefill=prefill) == expected


def test_other_delimiters() -> None:
    split = split_reasoning("[[plan]]answer", ("[[", "]]"))
    assert (split.reasoning, split.answer) == ("plan", "answer")
    assert split_reasoning("<think>a</think>b", ("[[", "]]")).answer == "<think>a</think>b"


# A tokenizer's decode as a pure function: token i is VOCAB[i]; the closer is split over
# two tokens, as BPE vocabularies often split it.
VOCAB = ["<think>", "The", " capital", "</", "think>", "Paris", ".", ""]


def decode(ids: Sequence[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


@pytest.mark.parametrize(
    ("ids", "prefill", "count"),
    [
        ([5, 6, 7], "", 0),  # no opener: no reasoning
        ([0, 1, 2, 3, 4, 5, 6, 7], "", 5),  # through the token that completes the closer
        ([0, 1, 2, 3], "", 4),  # never closed: every token
        ([1, 2, 3, 4, 5, 6], "<think>", 4),  # opened by the prefill
        ([0, 3, 4], "", 3),  # closed and nothing after
    ],
)
def test_reasoning_token_count(ids: list[int], prefill: str, count: int) -> None:
    assert reasoning_token_count(ids, decode, prefill=prefill) == count


def test_reasoning_token_count_bisects_a_long_reasoning() -> None:
    calls: list[int] = []

    def counting_decode(ids: Sequence[int]) -> str:
        calls.append(len(ids))
        return decode(ids)

    ids = [0] + [1] * 5000 + [3, 4, 5]
    assert reasoning_token_count(ids, counting_decode) == 5003
    assert len(calls) <= 20  # log2(5004) + the whole text, not one decode per token


def test_split_tokens_gives_the_answers_first_token() -> None:
    parts = split_tokens([0, 1, 3, 4, 5, 6, 7], decode)
    assert (parts.answer, parts.reasoning, parts.reasoning_tokens) == ("Paris.", "The", 4)
    assert parts.first_answer_token == 4
    plain = split_tokens([5, 6, 7], decode)
    assert (plain.answer, plain.reasoning_tokens, plain.first_answer_token) == ("Paris.", 0, 0)
    cut = split_tokens([0, 1, 2], decode)
    assert (cut.answer, cut.reasoning_tokens, cut.first_answer_token) == ("", 3, None)
    off = split_tokens([0, 1, 3, 4, 5], decode, None)
    assert (off.answer, off.reasoning_tokens) == ("<think>The</think>Paris", 0)


def test_split_tokens_splits_the_engines_own_text() -> None:
    """vLLM's detokenizer gives the text; decode only counts."""
    parts = split_tokens([0, 1, 3, 4, 5], decode, text="<think>The</think>Paris")
    assert (parts.answer, parts.reasoning_tokens) == ("Paris", 4)


@pytest.mark.parametrize(
    ("chunks", "prefill", "answer_from"),
    [
        (["Par", "is"], "", 0),
        (["<", "think>", "x", "</th", "ink>", "\n", "Paris"], "", 5),
        (["<think>x</think>", "Paris"], "", 1),
        (["<think>x</think>Paris"], "", 0),
        (["  ", "<think>", "x"], "", None),
        (["x", "</think>", "Paris"], "<think>", 2),
        (["Paris"], "<think>x</think>", 0),
    ],
)
def test_answer_watch_finds_the_first_answer_chunk(
    chunks: list[str], prefill: str, answer_from: int | None
) -> None:
    watch = AnswerWatch(prefill=prefill)
    started = [watch.feed(c) for c in chunks]
    first = started.index(True) if True in started else None
    assert first == answer_from


@given(
    st.lists(
        st.sampled_from(["<think>", "</think>", "<", "/", "think", ">", "x", " ", "\n", "Paris"]),
        max_size=12,
    ),
    st.sampled_from(["", "<think>", "<think>x</think>"]),
)
def test_answer_watch_agrees_with_the_split(chunks: list[str], prefill: str) -> None:
    """After every chunk, the watch says what splitting the whole text says, but for
    leading whitespace or a part of the opener, which wait for what follows."""
    watch = AnswerWatch(prefill=prefill)
    text = ""
    for chunk in chunks:
        started = watch.feed(chunk)
        text += chunk
        body = (prefill + text).lstrip()
        waiting = len(body) < len(DEFAULT_DELIMITERS[0]) and DEFAULT_DELIMITERS[0].startswith(body)
        if not waiting:
            assert started == (split_reasoning(text, prefill=prefill).answer != "")
        assert watch.in_reasoning == (not started and split_reasoning(text, prefill=prefill).opened)
