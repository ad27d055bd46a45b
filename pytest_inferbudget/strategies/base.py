"""The strategy protocol, its result record, and the pieces every strategy shares.

A strategy turns one prompt into one answer by calling an engine one or more times.
Strategies see only the :class:`~pytest_inferbudget.engines.Engine` protocol and the
records, so every call they make goes through whatever engine they are given (the
``infer`` fixture hands them a recording wrapper) and every response they got is
returned in :attr:`StrategyResult.responses`, in call order, for the budgets to count.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from pytest_inferbudget.errors import StrategyConfigError, StrategyError
from pytest_inferbudget.records import Prompt, Request, Response

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine

Extractor = Callable[[str], str | None]
"""Finds the answer in a completion's text; ``None`` when there is none."""

Normalizer = Callable[[str], str]
"""Maps an extracted answer to the form votes are counted in (``str.lower``, ...)."""

Scorer = Callable[[str], float] | Callable[[Prompt, str], float]
"""Scores a completion, higher is better: ``(text)`` or, as a verifier, ``(prompt, text)``."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One completion a strategy drew, and what the strategy made of it."""

    text: str
    answer: str | None
    """The extracted (and normalized) answer; ``None`` when extraction found nothing."""
    score: float | None = None
    """The scorer's value, for strategies that score; ``None`` when not scored."""
    votes: int | None = None
    """Completions sharing this answer, for strategies that vote; ``None`` otherwise."""

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "answer": self.answer, "score": self.score, "votes": self.votes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(
            text=data["text"], answer=data["answer"], score=data["score"], votes=data["votes"]
        )


@dataclass(frozen=True, slots=True)
class StrategyResult:
    """What a strategy chose, everything it drew, and every engine response it cost.

    ``candidates`` holds one entry per completion drawn, in the order drawn (for
    ``Revise`` one per round, for ``TokenBudget`` the forced answer). ``responses``
    holds every engine call's response in call order: the cost of the result.
    """

    answer: str | None
    """The extracted or chosen answer; ``None`` when no answer could be had."""
    text: str
    """The chosen completion's text; ``""`` when no completion was chosen."""
    candidates: tuple[Candidate, ...]
    responses: tuple[Response, ...]
    strategy: str
    """The strategy's ``name``, with its main parameters."""
    stopped_early: bool
    """The strategy stopped before its maximum number of samples or rounds."""
    samples: int
    """Completions drawn: all generations of all responses."""
    selected: tuple[int, ...] = ()
    """Indices into ``candidates`` of the chosen completion(s), best first: one for
    most strategies, up to ``k`` for ``BestOfMajority`` (its pass@k submission), none
    when ``answer`` is ``None`` because nothing could be chosen."""
    confidence: float | None = None
    """``AdaptiveConsistency``: the posterior probability that the leading answer is the
    majority, when sampling stopped. ``None`` for the other strategies."""

    @property
    def calls(self) -> int:
        """Engine calls made (each one request)."""
        return len(self.responses)

    @property
    def completion_tokens(self) -> int:
        """Every generated token of every sample of every call."""
        return sum(r.completion_tokens for r in self.responses)

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens summed over calls; an ``n``-sample call counts its prompt once,
        as :class:`~pytest_inferbudget.records.Response` does. Prefill text counts here."""
        return sum(r.prompt_tokens for r in self.responses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "answer": self.answer,
            "text": self.text,
            "stopped_early": self.stopped_early,
            "samples": self.samples,
            "selected": list(self.selected),
            "confidence": self.confidence,
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "candidates": [c.to_dict() for c in self.candidates],
            "responses": [r.to_dict() for r in self.responses],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StrategyResult:
        return cls(
            answer=data["answer"],
            text=data["text"],
            candidates=tuple(Candidate.from_dict(c) for c in data["candidates"]),
            responses=tuple(Response.from_dict(r) for r in data["responses"]),
            strategy=data["strategy"],
            stopped_early=data["stopped_early"],
            samples=data["samples"],
            selected=tuple(data["selected"]),
            confidence=data["confidence"],
        )


@runtime_checkable
class Strategy(Protocol):
    """An inference-time strategy: any object with a ``name`` and this ``run``."""

    @property
    def name(self) -> str: ...

    def run(
        self, engine: Engine, prompt: Prompt, *, max_new_tokens: int, seed: int | None
    ) -> StrategyResult: ...


# --- parameter checks ---------------------------------------------------------------


def check_int(owner: str, name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StrategyConfigError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_temperature(owner: str, value: object, *, sampling: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise StrategyConfigError(f"{owner}: temperature must be a number, got {value!r}")
    if value < 0 or (sampling and value == 0):
        need = "> 0 (it draws several samples)" if sampling else ">= 0"
        raise StrategyConfigError(f"{owner}: temperature must be {need}, got {value!r}")
    return float(value)


def check_top_p(owner: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 < float(value) <= 1.0
    ):
        raise StrategyConfigError(f"{owner}: top_p must be in (0, 1], got {value!r}")
    return float(value)


def check_callable(owner: str, name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise StrategyConfigError(f"{owner}: {name} must be callable, got {value!r}")


def check_run(owner: str, max_new_tokens: object, seed: object) -> None:
    check_int(owner, "max_new_tokens", max_new_tokens, 1)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise StrategyConfigError(f"{owner}: seed must be an integer or None, got {seed!r}")


# --- engine calls and seeds -----------------------------------------------------------


def derive_seed(seed: int | None, call: int) -> int | None:
    """The seed of a strategy's ``call``-th engine call (0-based).

    Call 0 uses ``seed`` itself, so a one-call strategy samples exactly what a plain
    request with that seed would; later calls use the first 31 bits of
    ``blake2b(f"{seed}:{call}")``. ``None`` stays ``None`` (unseeded).
    """
    if seed is None:
        return None
    if call == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:{call}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 33


def call_engine(engine: Engine, request: Request, owner: str) -> Response:
    """Send one request in one call; check the engine kept the protocol."""
    responses = engine.generate([request])
    if len(responses) != 1:
        raise StrategyError(
            f"{owner}: engine {_describe_engine(engine)} returned {len(responses)} responses "
            f"for 1 request"
        )
    response = responses[0]
    if len(response.generations) != request.n:
        raise StrategyError(
            f"{owner}: engine {_describe_engine(engine)} returned {len(response.generations)} "
            f"generations for a request with n={request.n}"
        )
    return response


class Sampling(Protocol):
    """What a sampling strategy decodes with."""

    @property
    def name(self) -> str: ...

    @property
    def temperature(self) -> float: ...

    @property
    def top_p(self) -> float: ...


def draw_samples(
    engine: Engine,
    strategy: Sampling,
    prompt: Prompt,
    *,
    n: int,
    max_new_tokens: int,
    seed: int | None,
    call: int = 0,
    logprobs: bool = False,
) -> Response:
    """``n`` samples of one prompt at the strategy's temperature and top-p, in one batched
    call, the ``call``-th of the run (its seed derived from the run's seed)."""
    request = Request(
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=strategy.temperature,
        top_p=strategy.top_p,
        n=n,
        seed=derive_seed(seed, call),
        logprobs=logprobs,
    )
    return call_engine(engine, request, strategy.name)


def _describe_engine(engine: Engine) -> str:
    try:
        return repr(engine.spec)
    except Exception:  # a wrapper without spec still deserves a clear message
        return type(engine).__name__


# --- extraction and voting -------------------------------------------------------------


def callable_name(function: object) -> str:
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    return str(name) if name else repr(function)


def extract_answer(
    extract: Extractor | None,
    normalize: Normalizer | None,
    text: str,
    index: int,
    owner: str,
) -> str | None:
    """The answer of candidate ``index``: ``text.strip()`` without an extractor."""
    if extract is None:
        answer: object = text.strip()
    else:
        try:
            answer = extract(text)
        except Exception as exc:
            raise StrategyError(
                f"{owner}: extractor {callable_name(extract)} raised on candidate {index}: {exc!r}"
            ) from exc
        if answer is None:
            return None
        if not isinstance(answer, str):
            raise StrategyError(
                f"{owner}: extractor {callable_name(extract)} returned {answer!r} for candidate "
                f"{index}; an extractor must return a string or None"
            )
    if normalize is not None:
        try:
            answer = normalize(cast(str, answer))
        except Exception as exc:
            raise StrategyError(
                f"{owner}: normalize {callable_name(normalize)} raised on candidate {index}: "
                f"{exc!r}"
            ) from exc
        if not isinstance(answer, str):
            raise StrategyError(
                f"{owner}: normalize {callable_name(normalize)} returned {answer!r} for "
                f"candidate {index}; it must return a string"
            )
    return cast(str, answer)


def tally(answers: Sequence[str | None]) -> dict[str, int]:
    """Votes per answer, in order of each answer's first occurrence; ``None`` never votes."""
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    return counts


def majority(counts: dict[str, int]) -> str | None:
    """The most voted answer; a tie goes to the tied answer that occurred first.

    ``counts`` must be in first-occurrence order (as :func:`tally` builds it).
    ``None`` when nothing voted.
    """
    winner: str | None = None
    best = 0
    for answer, votes in counts.items():
        if votes > best:  # strictly greater: an earlier answer keeps a tie
            winner, best = answer, votes
    return winner


# --- scoring -----------------------------------------------------------------------------


def check_scorer(owner: str, scorer: object) -> None:
    """Reject a scorer that can be called neither as ``(text)`` nor ``(prompt, text)``."""
    if scorer is None:
        return
    check_callable(owner, "scorer", scorer, optional=False)
    _scorer_arity(owner, scorer)


def _scorer_arity(owner: str, scorer: object) -> int:
    try:
        signature = inspect.signature(cast(Callable[..., Any], scorer))
    except (TypeError, ValueError):  # some builtins have no signature: call with the text
        return 1
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in positional if p.default is p.empty]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    if len(required) == 2:
        return 2
    if len(required) == 1 or (not required and (positional or variadic)):
        return 1
    raise StrategyConfigError(
        f"{owner}: scorer {callable_name(scorer)} must take (text) or (prompt, text), "
        f"its signature is {signature}"
    )


def score_candidates(
    owner: str,
    scorer: Scorer | None,
    prompt: Prompt,
    response: Response,
    indices: Sequence[int],
) -> dict[int, float | None]:
    """Scores of the completions at ``indices`` of ``response``.

    With ``scorer=None`` the score is the completion's mean token log-probability
    (the request must have asked for ``logprobs``); a completion the engine gave no
    log-probability for scores ``None`` and is never chosen over a scored one, and an
    engine that gives none at all is an error.
    """
    generations = response.generations
    if scorer is None:
        if all(g.mean_logprob is None for g in generations):
            raise StrategyError(
                f"{owner}: the engine {response.engine or '(unnamed)'} gives no log-probabilities "
                f"(mean_logprob is None), which the default scorer needs; pass scorer=... "
                f"(a callable (text) -> float or (prompt, text) -> float)"
            )
        return {i: generations[i].mean_logprob for i in indices}
    arity = _scorer_arity(owner, scorer)
    scores: dict[int, float | None] = {}
    for i in indices:
        text = generations[i].text
        try:
            if arity == 2:
                value: object = cast(Callable[[Prompt, str], float], scorer)(prompt, text)
            else:
                value = cast(Callable[[str], float], scorer)(text)
        except Exception as exc:
            raise StrategyError(
                f"{owner}: scorer {callable_name(scorer)} raised on candidate {i}: {exc!r}"
            ) from exc
        if not isinstance(value, int | float) or math.isnan(value):
            raise StrategyError(
                f"{owner}: scorer {callable_name(scorer)} returned {value!r} for candidate {i}; "
                f"a scorer must return a number (not NaN)"
            )
        scores[i] = float(value)
    return scores


def best_index(scores: dict[int, float | None]) -> int | None:
    """The highest score's index; a tie goes to the earliest index; ``None`` never wins."""
    best: int | None = None
    for index in sorted(scores):
        score = scores[index]
        if score is None:
            continue
        current = scores[best] if best is not None else None
        if current is None or score > current:
            best = index
    return best
