"""Three inference-time strategies on the same 6 sums: what each buys, what each costs.

Every engine call a strategy makes is recorded, so ``tokens_per_request`` counts all of
a self-consistency vote's samples. Accuracy (pass@1 of the strategy's final answer) and
cost-of-pass sit beside the token budget, which puts the strategies on one frontier.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_inferbudget import strategies

SUMS = [
    q
    for q in json.loads((Path(__file__).parent / "data" / "short_questions.json").read_text())[
        "questions"
    ]
    if q["id"].startswith("add-")
][:6]


def answer_all(infer, strategy):
    for question in SUMS:
        result = infer(question["prompt"], strategy=strategy, max_new_tokens=12, seed=0)
        infer.score(result, correct=result.answer == question["answer"], problem=question["id"])


@pytest.mark.budget(pass_at_k=(1, 0.15), tokens_per_request=12, cost_of_pass=80)
def test_greedy(infer):
    answer_all(infer, strategies.Greedy(extract=strategies.last_number))


@pytest.mark.budget(pass_at_k=(1, 0.15), tokens_per_request=3 * 12, cost_of_pass=240)
def test_self_consistency_of_three(infer):
    answer_all(infer, strategies.SelfConsistency(n=3, extract=strategies.last_number))


@pytest.mark.budget(pass_at_k=(1, 0.15), tokens_per_request=6 * 12, cost_of_pass=480)
def test_adaptive_consistency_stops_early(infer):
    answer_all(
        infer,
        strategies.AdaptiveConsistency(max_n=6, batch=2, extract=strategies.last_number),
    )
