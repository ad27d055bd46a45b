"""Adaptive-Consistency: self-consistency that stops sampling once the vote is settled.

Aggarwal, Madaan, Yang, Mausam (2023), "Let's Sample Step by Step: Adaptive-Consistency
for Efficient Reasoning and Coding with LLMs" (EMNLP 2023, arXiv:2305.11860; reference
code: github.com/Pranjal2041/AdaptiveConsistency, ``stopping_criterias.py``).

After each batch of samples the vote counts are the evidence. The paper's stopping
rule asks for the posterior probability that the leading answer is the majority
answer of the model's answer distribution, under a uniform prior, and stops once it
reaches ``confidence`` (the paper's ``C_thresh``, default 0.95; at most ``max_n``
samples, default 40 as in the reference code):

- ``criterion="beta"`` (the paper's default): only the two most voted answers, with
  ``v1 >= v2`` votes, are considered; the leader's share ``p`` of those two has the
  posterior ``Beta(v1 + 1, v2 + 1)`` and the rule is ``P(p > 1/2) >= confidence``.
  For integer counts this is exact in closed form:
  ``P(p > 1/2) = P(Binomial(v1 + v2 + 1, 1/2) <= v1)``. (The reference code integrates
  ``x^v1 (1-x)^v2`` numerically over ``[1/2, 1]``; same quantity.) A unanimous vote
  stops after 4 samples at 0.95: ``1 - 2^-5 = 0.969``; 3 gives 0.9375.
- ``criterion="dirichlet"``: all observed answers, with votes ``v``, have the posterior
  ``Dirichlet(v + 1)``; the rule is ``P(p_leader > p_j for every other j) >= confidence``,
  estimated by Monte Carlo with a fixed seed (so it is deterministic). With fewer than
  three distinct answers it is the Beta rule, as in the reference code (for two it is
  the same quantity; for one the Dirichlet is degenerate). The reference code keeps
  only the five most voted answers; we keep all, which is more conservative.

Where we differ from the paper, and why: the paper checks after every single sample;
we check after every ``batch`` samples so that each round is one batched engine call
(``batch=1`` is the paper's rule exactly; a larger batch can overshoot the stopping
point by at most ``batch - 1`` samples). Extraction failures (``None``) are drawn and
paid for but are not answers and never vote. Before any answer is extracted the
probability is 0 and sampling continues.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pytest_inferbudget.errors import StrategyConfigError
from pytest_inferbudget.records import Prompt, Response
from pytest_inferbudget.strategies.base import (
    Extractor,
    Normalizer,
    StrategyResult,
    check_callable,
    check_int,
    check_run,
    check_temperature,
    check_top_p,
    draw_samples,
    extract_answer,
    tally,
)
from pytest_inferbudget.strategies.extract import last_number
from pytest_inferbudget.strategies.voting import voted_result

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine

DIRICHLET_DRAWS = 10_000
"""Monte Carlo draws of the Dirichlet rule: standard error about 0.002 near 0.95."""


def beta_stop_probability(votes: Iterable[int]) -> float:
    """``P(p > 1/2)`` for ``p ~ Beta(v1 + 1, v2 + 1)``, ``v1 >= v2`` the two largest counts.

    Exact: ``sum(C(m, j) for j <= v1) / 2^m`` with ``m = v1 + v2 + 1``. 0 with no votes.
    """
    ordered = sorted((v for v in votes if v > 0), reverse=True)
    if not ordered:
        return 0.0
    top = ordered[0]
    second = ordered[1] if len(ordered) > 1 else 0
    trials = top + second + 1
    return sum(math.comb(trials, j) for j in range(top + 1)) / (1 << trials)


def dirichlet_stop_probability(votes: Iterable[int], *, draws: int = DIRICHLET_DRAWS) -> float:
    """``P(p_leader > every other p_j)`` for ``p ~ Dirichlet(v + 1)``, by seeded Monte Carlo.

    Fewer than three distinct answers: :func:`beta_stop_probability`.
    """
    ordered = sorted((v for v in votes if v > 0), reverse=True)
    if len(ordered) < 3:
        return beta_stop_probability(ordered)
    rng = random.Random(0)  # fixed: the same votes always give the same probability
    leader, others = ordered[0] + 1, [v + 1 for v in ordered[1:]]
    wins = 0
    for _ in range(draws):
        # Dirichlet components are normalized gammas; the normalization cannot change
        # which component is largest, so compare the gammas.
        lead = rng.gammavariate(leader, 1.0)
        if all(rng.gammavariate(alpha, 1.0) < lead for alpha in others):
            wins += 1
    return wins / draws


@dataclass(frozen=True)
class AdaptiveConsistency:
    """Self-consistency with the Adaptive-Consistency stopping rule (see the module doc).

    Each round is one engine call with one request of ``n=batch`` samples (the last
    round asks only for what is left of ``max_n``); after each round the rule is checked
    on all votes so far. The answer is the majority answer with the voting tie rule
    (first occurrence wins; ``None`` when nothing was extracted). ``confidence`` on the
    result is the rule's probability at the stop; ``stopped_early`` says fewer than
    ``max_n`` samples were drawn. Cost: ``ceil(samples / batch)`` calls, ``samples``
    completions.
    """

    max_n: int = 40
    batch: int = 4
    confidence: float = 0.95
    extract: Extractor = last_number
    normalize: Normalizer | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    criterion: Literal["beta", "dirichlet"] = "beta"

    def __post_init__(self) -> None:
        owner = "AdaptiveConsistency"
        check_int(owner, "max_n", self.max_n, 1)
        check_int(owner, "batch", self.batch, 1)
        if self.batch > self.max_n:
            raise StrategyConfigError(
                f"{owner}: batch={self.batch} is larger than max_n={self.max_n}"
            )
        if (
            isinstance(self.confidence, bool)
            or not isinstance(self.confidence, int | float)
            or not 0.0 < self.confidence < 1.0
        ):
            raise StrategyConfigError(
                f"{owner}: confidence must be a probability in (0, 1), got {self.confidence!r}"
            )
        if self.criterion not in ("beta", "dirichlet"):
            raise StrategyConfigError(
                f"{owner}: criterion must be 'beta' or 'dirichlet', got {self.criterion!r}"
            )
        check_callable(owner, "extract", self.extract, optional=False)
        check_callable(owner, "normalize", self.normalize, optional=True)
        check_temperature(owner, self.temperature, sampling=True)
        check_top_p(owner, self.top_p)

    @property
    def name(self) -> str:
        return (
            f"adaptive_consistency(max_n={self.max_n},batch={self.batch},"
            f"confidence={self.confidence})"
        )

    def stop_probability(self, votes: Iterable[int]) -> float:
        if self.criterion == "dirichlet":
            return dirichlet_stop_probability(votes)
        return beta_stop_probability(votes)

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        check_run(self.name, max_new_tokens, seed)
        responses: list[Response] = []
        answers: list[str | None] = []
        probability = 0.0
        while len(answers) < self.max_n:
            response = draw_samples(
                engine,
                self,
                prompt,
                n=min(self.batch, self.max_n - len(answers)),
                max_new_tokens=max_new_tokens,
                seed=seed,
                call=len(responses),
            )
            responses.append(response)
            offset = len(answers)
            answers.extend(
                extract_answer(self.extract, self.normalize, g.text, offset + i, self.name)
                for i, g in enumerate(response.generations)
            )
            probability = self.stop_probability(tally(answers).values())
            if probability >= self.confidence:
                break
        return voted_result(
            self.name,
            responses,
            answers,
            stopped_early=len(answers) < self.max_n,
            confidence=probability,
        )
