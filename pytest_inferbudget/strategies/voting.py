"""Strategies that vote over extracted answers: self-consistency and best-of-majority.

Tie rule (every voting strategy here): among answers with the most votes, the one
whose first occurrence comes first in the order the samples were drawn wins, and its
first completion is the chosen ``text``. An extraction failure (``None``) is not an
answer and never votes. When every extraction fails, the result's ``answer`` is
``None``, its ``text`` is ``""`` and ``selected`` is empty: never a guessed answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_inferbudget.errors import StrategyConfigError
from pytest_inferbudget.records import Prompt, Response
from pytest_inferbudget.strategies.base import (
    Candidate,
    Extractor,
    Normalizer,
    Scorer,
    StrategyResult,
    best_index,
    check_callable,
    check_int,
    check_run,
    check_scorer,
    check_temperature,
    check_top_p,
    draw_samples,
    extract_answer,
    majority,
    score_candidates,
    tally,
)
from pytest_inferbudget.strategies.extract import last_number

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine


def voted_result(
    name: str,
    responses: Sequence[Response],
    answers: Sequence[str | None],
    *,
    stopped_early: bool = False,
    confidence: float | None = None,
) -> StrategyResult:
    """The majority answer over all generations of ``responses`` (in order)."""
    texts = [g.text for r in responses for g in r.generations]
    counts = tally(answers)
    winner = majority(counts)
    candidates = tuple(
        Candidate(text, answer, votes=counts[answer] if answer is not None else None)
        for text, answer in zip(texts, answers, strict=True)
    )
    selected = () if winner is None else (answers.index(winner),)
    return StrategyResult(
        answer=winner,
        text=texts[selected[0]] if selected else "",
        candidates=candidates,
        responses=tuple(responses),
        strategy=name,
        stopped_early=stopped_early,
        samples=len(texts),
        selected=selected,
        confidence=confidence,
    )


@dataclass(frozen=True)
class SelfConsistency:
    """Self-consistency (Wang et al. 2023): ``n`` samples, majority vote on their answers.

    One batched call (one request with ``n=n``). ``extract`` finds each sample's answer,
    ``normalize`` (optional) maps it to the form votes are counted in. Ties and
    extraction failures follow the module's rule. Cost: one call, ``n`` completions.
    """

    n: int
    extract: Extractor = last_number
    normalize: Normalizer | None = None
    temperature: float = 0.7
    top_p: float = 1.0

    def __post_init__(self) -> None:
        check_int("SelfConsistency", "n", self.n, 1)
        check_callable("SelfConsistency", "extract", self.extract, optional=False)
        check_callable("SelfConsistency", "normalize", self.normalize, optional=True)
        check_temperature("SelfConsistency", self.temperature, sampling=True)
        check_top_p("SelfConsistency", self.top_p)

    @property
    def name(self) -> str:
        return f"self_consistency(n={self.n})"

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        check_run(self.name, max_new_tokens, seed)
        response = draw_samples(
            engine,
            self,
            prompt,
            n=self.n,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        answers = [
            extract_answer(self.extract, self.normalize, g.text, i, self.name)
            for i, g in enumerate(response.generations)
        ]
        return voted_result(self.name, [response], answers)


@dataclass(frozen=True)
class BestOfMajority:
    """Best-of-Majority (Di, Ji, Li, Zhao, Gu 2025, "Best-of-Majority: Minimax-Optimal
    Strategy for Pass@k Inference Scaling", arXiv:2510.03199).

    Draw ``n`` samples (one batched call), keep only the answers that are frequent
    among them, then rank the kept answers by reward and submit the top ``k``.

    Our reading of the paper: an answer's frequency is its empirical probability
    ``votes / n`` over the ``n`` samples (extraction failures count in ``n`` but never
    vote); the paper keeps the answers whose frequency is at least a threshold
    ``alpha`` (here ``min_frequency``) and outputs the ``k`` kept answers with the
    highest reward (all kept answers when fewer than ``k``). With ``min_frequency=None``
    (the default) the threshold is set to the ``k``-th largest vote count, so the kept
    set is the ``k`` most frequent answers plus any tied with the ``k``-th.

    An answer's reward is the best ``scorer`` value among its completions (``scorer``
    as in :class:`BestOfN`; ``None`` means mean token log-probability), and that
    completion represents it. Only completions of kept answers are scored. Ranking:
    higher score, then more votes, then earlier first occurrence. ``selected`` holds
    the submitted completions (up to ``k``, best first) for pass@k; ``answer`` and
    ``text`` are the best one's. No kept answer (every extraction failed, or none
    reaches ``min_frequency``) gives ``answer=None``. Cost: one call, ``n`` completions.
    """

    n: int
    k: int
    scorer: Scorer | None = None
    min_frequency: float | None = None
    extract: Extractor = last_number
    normalize: Normalizer | None = None
    temperature: float = 0.7
    top_p: float = 1.0

    def __post_init__(self) -> None:
        check_int("BestOfMajority", "n", self.n, 1)
        check_int("BestOfMajority", "k", self.k, 1)
        if self.k > self.n:
            raise StrategyConfigError(
                f"BestOfMajority: k={self.k} answers cannot be chosen from n={self.n} samples; "
                f"need k <= n"
            )
        if self.min_frequency is not None and (
            isinstance(self.min_frequency, bool)
            or not isinstance(self.min_frequency, int | float)
            or math.isnan(self.min_frequency)
            or not 0.0 < self.min_frequency <= 1.0
        ):
            raise StrategyConfigError(
                f"BestOfMajority: min_frequency must be in (0, 1] or None, got "
                f"{self.min_frequency!r}"
            )
        check_scorer("BestOfMajority", self.scorer)
        check_callable("BestOfMajority", "extract", self.extract, optional=False)
        check_callable("BestOfMajority", "normalize", self.normalize, optional=True)
        check_temperature("BestOfMajority", self.temperature, sampling=True)
        check_top_p("BestOfMajority", self.top_p)

    @property
    def name(self) -> str:
        return f"best_of_majority(n={self.n},k={self.k})"

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        check_run(self.name, max_new_tokens, seed)
        response = draw_samples(
            engine,
            self,
            prompt,
            n=self.n,
            max_new_tokens=max_new_tokens,
            seed=seed,
            logprobs=self.scorer is None,
        )
        answers = [
            extract_answer(self.extract, self.normalize, g.text, i, self.name)
            for i, g in enumerate(response.generations)
        ]
        counts = tally(answers)
        kept = self._frequent(counts)
        to_score = [i for i, a in enumerate(answers) if a in kept]
        scores = (
            score_candidates(self.name, self.scorer, prompt, response, to_score) if to_score else {}
        )
        ranked: list[tuple[tuple[bool, float, int, int], int, str]] = []
        for answer in kept:
            indices = [i for i in to_score if answers[i] == answer]
            representative = best_index({i: scores[i] for i in indices})
            if representative is None:  # no completion of this answer could be scored
                representative = indices[0]
            score = scores[representative]
            key = (score is None, -(score or 0.0), -counts[answer], indices[0])
            ranked.append((key, representative, answer))
        ranked.sort()
        selected = tuple(representative for _, representative, _ in ranked[: self.k])
        votes = [counts[a] if a is not None else None for a in answers]
        candidates = tuple(
            Candidate(g.text, answers[i], scores.get(i), votes[i])
            for i, g in enumerate(response.generations)
        )
        best = selected[0] if selected else None
        return StrategyResult(
            answer=answers[best] if best is not None else None,
            text=candidates[best].text if best is not None else "",
            candidates=candidates,
            responses=(response,),
            strategy=self.name,
            stopped_early=False,
            samples=self.n,
            selected=selected,
        )

    def _frequent(self, counts: dict[str, int]) -> list[str]:
        """The kept answers, in first-occurrence order."""
        if not counts:
            return []
        if self.min_frequency is None:
            threshold = sorted(counts.values(), reverse=True)[min(self.k, len(counts)) - 1]
            return [a for a, votes in counts.items() if votes >= threshold]
        return [a for a, votes in counts.items() if votes / self.n >= self.min_frequency]
