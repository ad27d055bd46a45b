"""Inference-time strategies on the shipped sums: what each buys, what each costs.

Every engine call a strategy makes is recorded, so ``tokens_per_request`` counts all of
a self-consistency vote's samples. Accuracy (pass@1 of the strategy's final answer) and
cost-of-pass sit beside the token budget, which puts the strategies on one frontier.
The last test routes by difficulty and holds the route to a non-inferiority budget
against self-consistency on the same 12 sums, paired per problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_inferbudget import strategies

ALL_SUMS = [
    q
    for q in json.loads((Path(__file__).parent / "data" / "short_questions.json").read_text())[
        "questions"
    ]
    if q["id"].startswith("add-")
]
SUMS = ALL_SUMS[:6]


def answer_all(infer, strategy, questions=SUMS):
    for question in questions:
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


GREEDY = strategies.Greedy(extract=strategies.last_number)
VOTE = strategies.SelfConsistency(n=3, extract=strategies.last_number)
ROUTE = strategies.Route(easy=GREEDY, hard=VOTE, threshold=-0.45)
"""An 8-token greedy probe's mean log-probability picks the branch: at or above -0.45
(SmolLM2-135M's probes of these sums lie between -0.61 and -0.20) answers greedily."""


@pytest.mark.budget(
    tokens_saved=0.1,
    versus=VOTE.name,
    candidate=ROUTE.name,
    accuracy_margin=0.1,
)
def test_routing_saves_tokens_and_is_not_worse_than_self_consistency(infer):
    """Greedy, self-consistency and the route on the same 12 sums: all three land on the
    report's frontier, and the route must spend at least 10% fewer tokens than the vote
    with accuracy not worse by 0.1 (Tango's paired score test, one-sided 0.95)."""
    for strategy in (GREEDY, VOTE, ROUTE):
        answer_all(infer, strategy, ALL_SUMS)
