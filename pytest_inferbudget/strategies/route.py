"""Difficulty routing: a cheap strategy for easy problems, an expensive one for hard ones.

DiffAdapt, ODAR and GlimpRouter (2025) spend test-time compute where the problem is hard,
judged from a signal the model gives before answering: the mean log-probability of a
short greedy probe here (a confident model writes high-probability tokens). ``Route``
sends the probe, then runs ``easy`` when the signal is at or above ``threshold`` and
``hard`` otherwise; the probe's tokens are part of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from pytest_inferbudget.errors import StrategyConfigError, StrategyError
from pytest_inferbudget.records import Prompt, Request
from pytest_inferbudget.strategies.base import (
    Strategy,
    StrategyResult,
    call_engine,
    check_int,
    check_run,
)

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine

RouteSignal = Literal["mean_logprob"]
"""What the probe measures: ``mean_logprob``, the mean natural-log probability of its
greedy tokens (higher: the model is surer, the problem easier)."""
ROUTE_SIGNALS: tuple[RouteSignal, ...] = get_args(RouteSignal)


@dataclass(frozen=True)
class Route:
    """Probe, then ``easy`` when ``signal >= threshold``, else ``hard``.

    Cost: the probe (one greedy call of ``probe_tokens``) plus the chosen strategy's. The
    result's ``strategy`` says which branch ran (``route(...)->greedy``); its responses
    begin with the probe's.
    """

    easy: Strategy
    hard: Strategy
    threshold: float
    signal: RouteSignal = "mean_logprob"
    probe_tokens: int = 8

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
        check_int("Route", "probe_tokens", self.probe_tokens, 1)

    @property
    def name(self) -> str:
        return f"route({self.easy.name}|{self.hard.name}, {self.signal}>={self.threshold:g})"

    def probe(self, engine: Engine, prompt: Prompt) -> tuple[float, StrategyResult]:
        """The signal of ``prompt``, and the probe's cost as a one-call result."""
        request = Request(prompt, max_new_tokens=self.probe_tokens, logprobs=True)
        response = call_engine(engine, request, self.name)
        value = response.generations[0].mean_logprob
        if value is None:
            raise StrategyError(
                f"{self.name}: the engine {engine.spec} returned no log-probabilities for the "
                "probe; route with an engine that does (transformers, vllm, or an "
                "OpenAI-compatible server that returns logprobs)"
            )
        probe = StrategyResult(None, response.text, (), (response,), "probe", False, 1)
        return value, probe

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        check_run(self.name, max_new_tokens, seed)
        value, probe = self.probe(engine, prompt)
        chosen = self.easy if value >= self.threshold else self.hard
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
