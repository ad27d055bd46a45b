"""An efficiency suite kept next to the correctness tests, on the default model (CPU).

Each test asserts what the model must get right and, through its budget marker, what
that answer may cost: tokens, end-to-end milliseconds, time to first token and time
per output token. Run it with ``pytest examples/``; the first run provisions the model.
"""

from __future__ import annotations

import pytest

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Germany": "Berlin"}


@pytest.mark.budget(max_tokens=16, ms_per_request=3000, ttft_ms=1000)
def test_capital_answer_is_short_and_fast(infer):
    out = infer("What is the capital of France? Answer in one word.", max_new_tokens=32)
    assert "Paris" in out.text


# One sample, so a generous limit: about 45 ms per token on a quiet 2-core machine, and
# over 1 s measured while other jobs held both cores (torch's threads wait for each other).
@pytest.mark.budget(max_tokens=12, tpot_ms=1500)
def test_arithmetic_reply_stays_terse(infer):
    out = infer("What is 3 + 4? Reply with a number only.", max_new_tokens=32)
    assert "7" in out.text


@pytest.mark.budget(max_tokens=20)
def test_system_prompt_format_is_followed(infer):
    out = infer(
        [
            {"role": "system", "content": "Reply in lowercase with one word, no punctuation."},
            {"role": "user", "content": "What animal says meow?"},
        ],
        max_new_tokens=32,
    )
    assert "cat" in out.text.lower()


# Two markers: a mean and a tail limit on the same quantity.
@pytest.mark.budget(tokens_per_request=12, ms_per_request=4000)
@pytest.mark.budget(ms_per_request=6000, stat="p90")
def test_batch_of_capitals(infer):
    outs = infer.generate(
        [f"What is the capital of {country}? Answer in one word." for country in CAPITALS],
        max_new_tokens=24,
    )
    for out, capital in zip(outs, CAPITALS.values(), strict=True):
        assert capital in out.text


# One request is one sample: no interval can be put on it, so its time limit must hold on
# a machine that other jobs share (4.3 s quiet, 12.5 s seen beside a package install on
# 2 cores). A tight limit belongs on many requests with confidence= (docs/confidence.md)
# or on cpu_ms_per_request, which waiting for a core does not stretch.
@pytest.mark.budget(tokens_per_request=4 * 32, max_tokens=32, ms_per_request=30000)
def test_sampling_four_answers_costs_all_four(infer):
    out = infer("Name a fruit.", temperature=0.8, n=4, seed=0, max_new_tokens=32)
    assert len(out.texts) == 4
    assert out.completion_tokens == sum(g.completion_tokens for g in out.generations)


@pytest.mark.xfail(strict=True, reason="shows a violated budget: the model answers in a sentence")
@pytest.mark.budget(max_tokens=3)
def test_violation_one_word_means_one_word(infer):
    out = infer("What is the capital of Italy? Answer in one word.", max_new_tokens=32)
    assert "Rome" in out.text
