"""Strategies whose calls depend on the previous call: self-revision and budget forcing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_inferbudget.errors import StrategyConfigError
from pytest_inferbudget.records import Prompt, Request, Response
from pytest_inferbudget.strategies.base import (
    Candidate,
    Extractor,
    StrategyResult,
    call_engine,
    check_callable,
    check_int,
    check_run,
    check_temperature,
    derive_seed,
    extract_answer,
)

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine

DEFAULT_CRITIQUE = (
    "Review your previous answer for mistakes and correct them. "
    "Then give your complete, corrected answer."
)


def _messages(prompt: Prompt) -> tuple[dict[str, str], ...]:
    if isinstance(prompt, str):
        return ({"role": "user", "content": prompt},)
    return tuple(dict(m) for m in prompt)


def _call_seed(seed: int | None, call: int, temperature: float) -> int | None:
    return None if temperature == 0.0 else derive_seed(seed, call)


@dataclass(frozen=True)
class Revise:
    """Sequential self-refinement (after Madaan et al. 2023, "Self-Refine"): a draft,
    then ``rounds`` revision calls.

    Revision round ``r`` sends the conversation: the original prompt (its messages), the
    previous round's completion as the assistant's turn, and ``critique_prompt`` as the
    user's next turn; the model's reply is the new answer. Critique and revision are one
    call per round (Self-Refine uses two). Every round is its own engine call and its
    own response in the trace, so its cost is counted. The result is the last round's
    completion (``answer`` extracted from it, or its stripped text); ``candidates``
    holds one entry per call, draft first. With ``stop_if_unchanged=True`` revising
    stops as soon as a round's answer equals the previous one (``stopped_early``).
    Decoding is greedy by default (``temperature=0``). Cost: ``1 + rounds`` calls at
    most, one completion each.
    """

    rounds: int = 1
    critique_prompt: str = DEFAULT_CRITIQUE
    extract: Extractor | None = None
    temperature: float = 0.0
    stop_if_unchanged: bool = False

    def __post_init__(self) -> None:
        check_int("Revise", "rounds", self.rounds, 1)
        if not isinstance(self.critique_prompt, str) or not self.critique_prompt.strip():
            raise StrategyConfigError(
                f"Revise: critique_prompt must be a non-empty string, got {self.critique_prompt!r}"
            )
        check_callable("Revise", "extract", self.extract, optional=True)
        check_temperature("Revise", self.temperature, sampling=False)

    @property
    def name(self) -> str:
        return f"revise(rounds={self.rounds})"

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        check_run(self.name, max_new_tokens, seed)
        base = _messages(prompt)
        responses: list[Response] = []
        candidates: list[Candidate] = []
        stopped_early = False
        for call in range(1 + self.rounds):
            if call == 0:
                turn: Prompt = prompt
            else:
                turn = (
                    *base,
                    {"role": "assistant", "content": candidates[-1].text},
                    {"role": "user", "content": self.critique_prompt},
                )
            request = Request(
                turn,
                max_new_tokens=max_new_tokens,
                temperature=self.temperature,
                seed=_call_seed(seed, call, self.temperature),
            )
            response = call_engine(engine, request, self.name)
            responses.append(response)
            text = response.text
            candidates.append(
                Candidate(text, extract_answer(self.extract, None, text, call, self.name))
            )
            if (
                self.stop_if_unchanged
                and call > 0
                and call < self.rounds
                and candidates[-1].answer == candidates[-2].answer
            ):
                stopped_early = True
                break
        last = candidates[-1]
        return StrategyResult(
            answer=last.answer,
            text=last.text,
            candidates=tuple(candidates),
            responses=tuple(responses),
            strategy=self.name,
            stopped_early=stopped_early,
            samples=len(candidates),
            selected=(len(candidates) - 1,),
        )


@dataclass(frozen=True)
class TokenBudget:
    """Budget forcing (Muennighoff et al. 2025, "s1: Simple test-time scaling"): cap the
    reasoning at ``max_thinking_tokens``, then force an answer.

    Call 1 generates the reasoning with ``max_new_tokens=max_thinking_tokens``. Call 2
    sends the same prompt with ``Request.prefill`` = the reasoning text +
    ``answer_prefix`` (the model continues its own reply from there, as s1 appends
    "Final Answer:" after the end-of-thinking delimiter) and generates up to
    ``max_answer_tokens`` (default: the run's ``max_new_tokens``) greedily. Both calls are
    in the trace: the reasoning is paid once as completion tokens in call 1, and again as
    prompt (prefill) tokens in call 2. The answer is call 2's text, extracted or stripped;
    ``text`` is reasoning + prefix + answer. The forcing call is always made, even when
    the reasoning ended on its own. (s1's other half, appending "Wait" to extend
    reasoning to a minimum, is not implemented.) Cost: 2 calls, 2 completions.
    """

    max_thinking_tokens: int
    answer_prefix: str = "\nFinal answer:"
    max_answer_tokens: int | None = None
    extract: Extractor | None = None
    temperature: float = 0.0

    def __post_init__(self) -> None:
        check_int("TokenBudget", "max_thinking_tokens", self.max_thinking_tokens, 1)
        if not isinstance(self.answer_prefix, str):
            raise StrategyConfigError(
                f"TokenBudget: answer_prefix must be a string, got {self.answer_prefix!r}"
            )
        if self.max_answer_tokens is not None:
            check_int("TokenBudget", "max_answer_tokens", self.max_answer_tokens, 1)
        check_callable("TokenBudget", "extract", self.extract, optional=True)
        check_temperature("TokenBudget", self.temperature, sampling=False)

    @property
    def name(self) -> str:
        return f"token_budget(max_thinking_tokens={self.max_thinking_tokens})"

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        check_run(self.name, max_new_tokens, seed)
        thinking = call_engine(
            engine,
            Request(
                prompt,
                max_new_tokens=self.max_thinking_tokens,
                temperature=self.temperature,
                seed=_call_seed(seed, 0, self.temperature),
            ),
            self.name,
        )
        forced_prefix = thinking.text + self.answer_prefix
        forced = call_engine(
            engine,
            Request(
                prompt,
                max_new_tokens=self.max_answer_tokens or max_new_tokens,
                temperature=0.0,
                prefill=forced_prefix,
            ),
            self.name,
        )
        answer_text = forced.text
        text = forced_prefix + answer_text
        answer = extract_answer(self.extract, None, answer_text, 0, self.name)
        return StrategyResult(
            answer=answer,
            text=text,
            candidates=(Candidate(text, answer),),
            responses=(thinking, forced),
            strategy=self.name,
            stopped_early=False,
            samples=2,
            selected=(0,),
        )
