"""Top-k log-probabilities as each engine returns them, made into a generation's fields.

A request with ``top_logprobs=k`` gets, per output token, its ``k`` likeliest tokens
(most likely first) and the first token's entropy: exact where the engine has the whole
distribution (transformers), else from those ``k`` renormalised (vLLM's ``logprobs=k``,
an OpenAI-compatible server's ``top_logprobs``), with ``entropy_source`` saying which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_inferbudget.metrics.entropy import top_k_entropy

Step = tuple[tuple[str, float], ...]
"""One output position's likeliest tokens and their natural-log probabilities."""


def top_fields(
    steps: Sequence[Step], k: int | None = None, *, full_entropy: float | None = None
) -> dict[str, Any]:
    """A generation's ``top_logprobs``, ``first_token_entropy`` and ``entropy_source``:
    ``steps`` cut to ``k`` (None: as they are), and the entropy ``full_entropy`` when the
    engine computed it from the whole distribution, else the first step's top k's. Empty
    when nothing was asked for (``k == 0``) or returned."""
    if k == 0 or not steps:
        return {}
    kept = tuple(step[:k] for step in steps) if k else tuple(steps)
    if full_entropy is not None:
        return {
            "top_logprobs": kept,
            "first_token_entropy": full_entropy,
            "entropy_source": "full",
        }
    return {
        "top_logprobs": kept,
        "first_token_entropy": top_k_entropy(lp for _, lp in kept[0]),
        "entropy_source": "top_k",
    }


def vllm_step(position: dict[int, Any], k: int) -> Step:
    """A step's ``k`` likeliest tokens from vLLM's ``{token id: Logprob}``, which also
    holds the sampled token when it ranks below ``k``."""
    kept = (p for p in position.values() if p.rank is None or p.rank <= k)
    ranked = sorted(kept, key=lambda p: -float(p.logprob))
    return tuple((str(p.decoded_token or ""), float(p.logprob)) for p in ranked[:k])


def openai_steps(logprobs: Any, chat: bool) -> list[Step]:
    """Per token of a chunk's ``logprobs``, its ``top_logprobs`` most likely first: a list
    of ``{token, logprob}`` in the chat API, a ``{token: logprob}`` map in completions'."""
    if not isinstance(logprobs, dict):
        return []
    if chat:
        entries = logprobs.get("content") or []
        lists = [e.get("top_logprobs") or [] for e in entries if isinstance(e, dict)]
        pairs = [
            [(t.get("token"), t.get("logprob")) for t in top if isinstance(t, dict)]
            for top in lists
        ]
    else:
        maps = logprobs.get("top_logprobs") or []
        pairs = [list(m.items()) if isinstance(m, dict) else [] for m in maps]
    kept = [
        sorted(
            ((str(token), float(lp)) for token, lp in position if isinstance(lp, int | float)),
            key=lambda pair: -pair[1],
        )
        for position in pairs
    ]
    return [tuple(position) for position in kept if position]
