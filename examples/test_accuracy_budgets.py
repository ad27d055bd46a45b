"""Accuracy next to cost: two ways of answering the same 24 short questions.

Greedy decoding answers once per question; sampling draws four answers per question.
Each test scores every answer it got (``infer.score``) and asserts pass@k, eff@k on
tokens, cost-of-pass and E3 floors beside its token budget, so a change that saves
tokens by losing answers fails here. The questions ship in ``data/short_questions.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

QUESTIONS = json.loads((Path(__file__).parent / "data" / "short_questions.json").read_text())[
    "questions"
]


def is_right(question: dict[str, str], text: str) -> bool:
    """Capitals: the name appears. Sums: the last number in the reply is the answer."""
    if question["id"].startswith("add-"):
        numbers = re.findall(r"-?\d+", text)
        return bool(numbers) and numbers[-1] == question["answer"]
    return question["answer"].lower() in text.lower()


@pytest.mark.budget(pass_at_k=(1, 0.5), cost_of_pass=40, e3=0.02, tokens_per_request=24)
def test_greedy_answers_once(infer):
    outs = infer.generate([q["prompt"] for q in QUESTIONS], max_new_tokens=24)
    for question, out in zip(QUESTIONS, outs, strict=True):
        infer.score(out, correct=is_right(question, out.text), problem=question["id"])


# eff@k on tokens: an answer as short as the 12-token reference scores 1, one at twice
# the reference (24 tokens) or more scores 0, a wrong one 0 (ENAMEL's score, alpha=2).
@pytest.mark.budget(
    pass_at_k=(4, 0.5),
    eff_at_k=(4, 0.3),
    eff_reference=12,
    cost_of_pass=100,
    tokens_per_request=4 * 24,
)
def test_sampling_four_answers(infer):
    outs = infer.generate(
        [q["prompt"] for q in QUESTIONS], temperature=0.7, n=4, seed=0, max_new_tokens=24
    )
    for question, out in zip(QUESTIONS, outs, strict=True):
        infer.score(
            out, correct=[is_right(question, text) for text in out.texts], problem=question["id"]
        )
