"""One-call strategies: greedy decoding, plain sampling, and best-of-N."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_inferbudget.errors import StrategyError
from pytest_inferbudget.records import Prompt, Request
from pytest_inferbudget.strategies.base import (
    Candidate,
    Extractor,
    Scorer,
    StrategyResult,
    best_index,
    call_engine,
    check_callable,
    check_int,
    check_run,
    check_scorer,
    check_temperature,
    check_top_p,
    draw_samples,
    extract_answer,
    score_candidates,
)

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine


@dataclass(frozen=True)
class Greedy:
    """One greedy completion (temperature 0): the baseline every other strategy costs against.

    Cost: one call, one completion. ``answer`` is ``extract(text)``, or the stripped
    text without an extractor.
    """

    extract: Extractor | None = None

    def __post_init__(self) -> None:
        check_callable("Greedy", "extract", self.extract, optional=True)

    @property
    def name(self) -> str:
        return "greedy"

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        check_run(self.name, max_new_tokens, seed)
        request = Request(prompt, max_new_tokens=max_new_tokens, temperature=0.0)
        response = call_engine(engine, request, self.name)
        text = response.text
        answer = extract_answer(self.extract, None, text, 0, self.name)
        return StrategyResult(
            answer=answer,
            text=text,
            candidates=(Candidate(text, answer),),
            responses=(response,),
            strategy=self.name,
            stopped_early=False,
            samples=1,
            selected=(0,),
        )


@dataclass(frozen=True)
class Sample:
    """``n`` samples in one batched call (a single request with ``n=n``).

    Every sample is a candidate (score them with ``infer.score`` for pass@k); the
    result's ``text`` and ``answer`` are the first sample's. Cost: one call, ``n``
    completions.
    """

    n: int
    temperature: float = 0.7
    top_p: float = 1.0
    extract: Extractor | None = None

    def __post_init__(self) -> None:
        check_int("Sample", "n", self.n, 1)
        check_temperature("Sample", self.temperature, sampling=True)
        check_top_p("Sample", self.top_p)
        check_callable("Sample", "extract", self.extract, optional=True)

    @property
    def name(self) -> str:
        return f"sample(n={self.n})"

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
        candidates = tuple(
            Candidate(g.text, extract_answer(self.extract, None, g.text, i, self.name))
            for i, g in enumerate(response.generations)
        )
        return StrategyResult(
            answer=candidates[0].answer,
            text=candidates[0].text,
            candidates=candidates,
            responses=(response,),
            strategy=self.name,
            stopped_early=False,
            samples=self.n,
            selected=(0,),
        )


@dataclass(frozen=True)
class BestOfN:
    """Best-of-N: ``n`` samples in one batched call, the highest-scoring one wins.

    ``scorer`` is ``(text) -> float`` or, as a verifier, ``(prompt, text) -> float``
    (higher is better; a bool verdict counts as 0/1). ``None`` scores each completion
    by its mean token log-probability under the model (the request asks for
    ``logprobs``); an engine that gives none is a ``StrategyError`` asking for a scorer.
    A tie goes to the earliest sample. Cost: one call, ``n`` completions (scoring is
    not model inference and is not counted).
    """

    n: int
    scorer: Scorer | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    extract: Extractor | None = None

    def __post_init__(self) -> None:
        check_int("BestOfN", "n", self.n, 1)
        check_scorer("BestOfN", self.scorer)
        check_temperature("BestOfN", self.temperature, sampling=True)
        check_top_p("BestOfN", self.top_p)
        check_callable("BestOfN", "extract", self.extract, optional=True)

    @property
    def name(self) -> str:
        return f"best_of_n(n={self.n})"

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
        scores = score_candidates(self.name, self.scorer, prompt, response, range(self.n))
        chosen = best_index(scores)
        if chosen is None:  # only reachable when no completion has a log-probability
            raise StrategyError(f"{self.name}: no completion could be scored")
        candidates = tuple(
            Candidate(g.text, extract_answer(self.extract, None, g.text, i, self.name), scores[i])
            for i, g in enumerate(response.generations)
        )
        return StrategyResult(
            answer=candidates[chosen].answer,
            text=candidates[chosen].text,
            candidates=candidates,
            responses=(response,),
            strategy=self.name,
            stopped_early=False,
            samples=self.n,
            selected=(chosen,),
        )
