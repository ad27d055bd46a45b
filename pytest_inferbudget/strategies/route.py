"""Difficulty routing: a cheap strategy for easy problems, an expensive one for hard ones.

DiffAdapt, ODAR and GlimpRouter (2025) spend test-time compute where the problem is hard,
judged from a signal the model gives before answering: the mean log-probability of a
short greedy probe (a confident model writes high-probability tokens), or the entropy of
its first token's distribution (GlimpRouter's glimpse: a confident model puts its mass on
few tokens). ``Route`` sends the probe, then runs ``easy`` when the signal says the model
is sure (``mean_logprob >= threshold``, ``first_token_entropy <= threshold``) and ``hard``
otherwise; the probe's tokens are part of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from pytest_inferbudget.errors import StrategyConfigError, StrategyError
from pytest_inferbudget.records import MAX_TOP_LOGPROBS, Prompt, Request
from pytest_inferbudget.strategies.base import (
    Strategy,
    StrategyResult,
    call_engine,
    check_int,
    check_run,
)

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine

RouteSignal = Literal["mean_logprob", "first_token_entropy"]
"""What the probe measures, and which way is easy:

- ``mean_logprob``: the mean natural-log probability of its greedy tokens; higher is
  surer, so ``easy`` when ``signal >= threshold`` (named ``mean_logprob>=t``).
- ``first_token_entropy``: the entropy in nats of its first token's distribution,
  ``-sum p ln p`` (exact where the engine has the whole distribution, else from the top
  20 renormalised); lower is surer, so ``easy`` when ``signal <= threshold`` (named
  ``first_token_entropy<=t``).
"""
ROUTE_SIGNALS: tuple[RouteSignal, ...] = get_args(RouteSignal)
EASY_WHEN: dict[RouteSignal, Literal[">=", "<="]] = {
    "mean_logprob": ">=",
    "first_token_entropy": "<=",
}
"""The comparison with ``threshold`` that sends a problem to ``easy``, per signal."""
PROBE_TOKENS: dict[RouteSignal, int] = {"mean_logprob": 8, "first_token_entropy": 1}
"""The probe's length when ``probe_tokens`` is not given: the first token is all the
entropy signal reads."""


@dataclass(frozen=True)
class Route:
    """Probe, then ``easy`` when the signal says the model is sure (:data:`EASY_WHEN`:
    ``mean_logprob >= threshold``, ``first_token_entropy <= threshold``), else ``hard``.

    Cost: the probe (one greedy call of ``probe_tokens``: by default 8 for
    ``mean_logprob``, 1 for ``first_token_entropy``) plus the chosen strategy's. The
    result's ``strategy`` says which branch ran (``route(...)->greedy``); its responses
    begin with the probe's.
    """

    easy: Strategy
    hard: Strategy
    threshold: float
    signal: RouteSignal = "mean_logprob"
    probe_tokens: int | None = None

    def __post_init__(self) -> None:
        for label, part in (("easy", self.easy), ("hard", self.hard)):
            if not isinstance(part, Strategy):
                raise StrategyConfigError(
                    f"Route: {label}= must be a strategy (Greedy(), SelfConsistency(...)), "
                    f"got {part!r}"
                )
        if self.signal not in ROUTE_SIGNALS:
            raise StrategyConfigError(
                f"Route: signal={self.signal!r} is not one of {', '.join(ROUTE_SIGNALS)}"
            )
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise StrategyConfigError(f"Route: threshold must be a number, got {self.threshold!r}")
        if not math.isfinite(self.threshold):
            raise StrategyConfigError(f"Route: threshold must be finite, got {self.threshold!r}")
        if self.probe_tokens is not None:
            check_int("Route", "probe_tokens", self.probe_tokens, 1)

    @property
    def name(self) -> str:
        return (
            f"route({self.easy.name}|{self.hard.name}, "
            f"{self.signal}{EASY_WHEN[self.signal]}{self.threshold:g})"
        )

    def easy_for(self, value: float) -> bool:
        """Whether a probe's signal ``value`` sends the problem to ``easy``."""
        if EASY_WHEN[self.signal] == ">=":
            return value >= self.threshold
        return value <= self.threshold

    def probe(self, engine: Engine, prompt: Prompt) -> tuple[float, StrategyResult]:
        """The signal of ``prompt``, and the probe's cost as a one-call result."""
        entropy = self.signal == "first_token_entropy"
        request = Request(
            prompt,
            max_new_tokens=self.probe_tokens or PROBE_TOKENS[self.signal],
            logprobs=not entropy,
            # the most a server lists: the best a top-k entropy can be
            top_logprobs=MAX_TOP_LOGPROBS if entropy else 0,
        )
        response = call_engine(engine, request, self.name)
        generation = response.generations[0]
        value = generation.first_token_entropy if entropy else generation.mean_logprob
        if value is None:
            wanted = (
                "top log-probabilities (top_logprobs) for the probe's first token"
                if entropy
                else "log-probabilities for the probe"
            )
            raise StrategyError(
                f"{self.name}: the engine {engine.spec} returned no {wanted}; route with an "
                "engine that does (transformers, vllm, or an OpenAI-compatible server that "
                "returns logprobs; a replay only if its cassette recorded them)"
            )
        probe = StrategyResult(None, response.text, (), (response,), "probe", False, 1)
        return value, probe

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        check_run(self.name, max_new_tokens, seed)
        value, probe = self.probe(engine, prompt)
        chosen = self.easy if self.easy_for(value) else self.hard
        result = chosen.run(engine, prompt, max_new_tokens=max_new_tokens, seed=seed)
        return StrategyResult(
            answer=result.answer,
            text=result.text,
            candidates=result.candidates,
            responses=(*probe.responses, *result.responses),
            strategy=f"{self.name}->{chosen.name}",
            stopped_early=result.stopped_early,
            samples=result.samples + 1,
            selected=result.selected,
            confidence=result.confidence,
        )
