"""Speculative decoding: how many drafted tokens the target model accepted, and what that buys.

A drafter (vLLM's n-gram proposer, transformers' prompt lookup, a small assistant model)
proposes up to ``gamma`` tokens; the target model verifies them in one forward pass and
emits the accepted prefix plus one token of its own (the correction or the bonus token).

- acceptance rate ``alpha = accepted / drafted`` (vLLM's ``spec_decode`` counters);
- accept length = mean tokens emitted per verification step ``= 1 + accepted / steps``
  (vLLM's "mean acceptance length", the bonus token included);
- under the i.i.d. model of Leviathan, Kalman, Matias 2023 ("Fast Inference from
  Transformers via Speculative Decoding", ICML, arXiv:2211.17192, eq. 1), where each
  drafted token is accepted with probability ``alpha`` independently, a step with ``gamma``
  drafted tokens emits ``(1 - alpha^(gamma + 1)) / (1 - alpha)`` tokens on average.

Pure functions over counts: no engine, no torch.
"""

from __future__ import annotations

import math

__all__ = ["accept_length", "acceptance_rate", "describe", "expected_tokens_per_step"]


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def acceptance_rate(accepted: int, drafted: int) -> float | None:
    """``accepted / drafted``; None when nothing was drafted (no draft is no rate, not 0)."""
    accepted, drafted = _count("accepted", accepted), _count("drafted", drafted)
    if accepted > drafted:
        raise ValueError(f"accepted tokens ({accepted}) exceed drafted tokens ({drafted})")
    return None if drafted == 0 else accepted / drafted


def accept_length(accepted: int, steps: int) -> float | None:
    """Mean tokens emitted per verification step: each step emits its accepted draft
    tokens plus one of the target model's, so ``(accepted + steps) / steps``; None for no
    step."""
    accepted, steps = _count("accepted", accepted), _count("steps", steps)
    return None if steps == 0 else (accepted + steps) / steps


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """Tokens a verification step emits on average when each of its ``gamma`` drafted
    tokens is accepted with probability ``alpha``, independently (Leviathan et al. 2023,
    eq. 1): ``(1 - alpha^(gamma+1)) / (1 - alpha)``, which tends to ``gamma + 1`` as
    ``alpha`` tends to 1."""
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be a probability in [0, 1], got {alpha!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
        raise ValueError(
            f"gamma (speculative tokens per step) must be an integer >= 1, got {gamma!r}"
        )
    if alpha == 1.0:
        return float(gamma + 1)
    # the geometric sum 1 + alpha + ... + alpha^gamma, stable near alpha = 1
    return math.fsum(alpha**i for i in range(gamma + 1))


def describe(drafted: int, accepted: int, steps: int, gamma: int, approximate: bool) -> str:
    """One line for a report: the counts, the accept length, and what the i.i.d. model
    expects per step at the measured acceptance rate; "" when nothing was drafted."""
    alpha = acceptance_rate(accepted, drafted)
    length = accept_length(accepted, steps)
    if alpha is None or length is None:
        return ""
    expected = expected_tokens_per_step(alpha, gamma)
    shared = "; approximate: a shared server's /metrics counters" if approximate else ""
    return (
        f"{accepted} of {drafted} drafted tokens accepted over {steps} verification steps "
        f"(gamma={gamma}): accept length {length:.3g} tokens/step; the i.i.d. model "
        f"(1 - a^(g+1)) / (1 - a) expects {expected:.3g} at a={alpha:.3g}{shared}"
    )
