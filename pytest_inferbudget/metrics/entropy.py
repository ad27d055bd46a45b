"""Entropy of a next-token distribution: how unsure the model is before it answers.

GlimpRouter (2025) routes a problem by the entropy of the model's first output token:
``H = -sum_i p_i ln p_i`` in nats, 0 when one token takes all the mass, ``ln V`` when the
``V`` tokens of the vocabulary are equally likely. An engine that has the whole
distribution (transformers: the first step's logits) gives it exactly
(:func:`entropy`); a server that returns only its ``k`` most likely tokens
(``top_logprobs=k``) gives the entropy of those ``k`` renormalised to sum to 1
(:func:`top_k_entropy`), which ignores the tail and is at most ``ln k``. Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["FULL_MASS_TOLERANCE", "entropy", "top_k_entropy"]

FULL_MASS_TOLERANCE = 1e-3
"""How far a full distribution's probabilities may sum from 1 (float32 softmax rounding)."""


def entropy(logprobs: Iterable[float]) -> float:
    """Entropy in nats of a whole distribution given as natural-log probabilities.

    Raises ``ValueError`` if the probabilities do not sum to 1: pass a top-k list to
    :func:`top_k_entropy`, which renormalises it.
    """
    values = _checked(logprobs)
    mass = math.fsum(math.exp(v) for v in values)
    if abs(mass - 1.0) > FULL_MASS_TOLERANCE:
        raise ValueError(
            f"the probabilities sum to {mass:.6g}, not 1: this is not a whole distribution; "
            "use top_k_entropy() for the k most likely tokens"
        )
    return _entropy(values, 0.0)


def top_k_entropy(logprobs: Iterable[float]) -> float:
    """Entropy in nats of the ``k`` most likely tokens' probabilities renormalised to sum
    to 1: a truncation that ignores the tail (at most ``ln k``)."""
    values = _checked(logprobs)
    top = max(values)
    if top == -math.inf:
        raise ValueError("every log-probability is -inf: no token has any probability")
    log_mass = top + math.log(math.fsum(math.exp(v - top) for v in values))
    return _entropy(values, log_mass)


def _entropy(values: list[float], log_mass: float) -> float:
    """``-sum p ln p`` with ``ln p = value - log_mass``; zero-probability tokens add 0."""
    terms = [math.exp(v - log_mass) * (v - log_mass) for v in values if v != -math.inf]
    return max(0.0, -math.fsum(terms))  # rounding can leave -1e-17 for a certain token


def _checked(logprobs: Iterable[float]) -> list[float]:
    values = [float(v) for v in logprobs]
    if not values:
        raise ValueError("no log-probabilities: the entropy of an empty distribution is undefined")
    for value in values:
        if math.isnan(value) or value == math.inf or value > 1e-6:
            raise ValueError(
                f"a log-probability must be a number <= 0 (natural log) or -inf, got {value!r}"
            )
    return [min(v, 0.0) for v in values]
