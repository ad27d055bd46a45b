"""A text's log-probabilities under a model, and its information-capacity measurement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TextLogprobs:
    """What an engine's ``text_logprobs`` returns: each scored token's log-probability
    given the tokens before it in its window, in nats (natural log).

    The text is cut into windows of at most ``window_tokens`` tokens; a window's first
    token is context, not scored (as in the Information Capacity authors' code, which
    scores tokens 2..n of each sample). ``scored_bytes`` is the UTF-8 size of the scored
    tokens' text (each window decoded without its first token)."""

    logprobs: tuple[float, ...]
    scored_bytes: int
    tokens: int
    """All the text's tokens, context ones included."""
    window_tokens: int

    @property
    def scored_tokens(self) -> int:
        return len(self.logprobs)


@dataclass(frozen=True, slots=True)
class TextMeasurement:
    """One ``infer.measure_text``: the model's code length of a text, and the figures
    the ``information_capacity`` and ``bits_per_byte`` budgets judge."""

    name: str
    text_bytes: int
    """UTF-8 size of the whole text."""
    scored_bytes: int
    scored_tokens: int
    tokens: int
    total_bits: float
    """The model's code length of the scored tokens: ``sum -log2 p(x_i | x_<i)``."""
    flops_per_token: float
    """``N``: forward FLOPs per token averaged over a window, as the authors count it."""
    b: float
    """The numerator bias the capacity was computed with."""
    window_tokens: int
    engine: str = ""
    information_capacity: float = 0.0
    bits_per_byte: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextMeasurement:
        return cls(**{name: data[name] for name in cls.__slots__})
