"""Calibration: timing a grid of requests on an engine and fitting its runtime profile.

The only part of the performance model that runs an engine, kept apart so that reading
a profile or predicting from one (:mod:`~pytest_inferbudget.perfmodel.profile`) and
fitting (:mod:`~pytest_inferbudget.perfmodel.fit`) never need one. ``inferbudget
calibrate`` calls :func:`calibrate`; the profile is keyed by the machine it ran on
(:attr:`pytest_inferbudget.hardware.Machine.profile_key`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from pytest_inferbudget.engines import EngineSpec, Progress
from pytest_inferbudget.errors import CalibrationError, EngineSpecError
from pytest_inferbudget.hardware import Machine
from pytest_inferbudget.perfmodel.fit import FIT_STATISTICS, build_profile, fit_profile
from pytest_inferbudget.perfmodel.profile import (
    PROMPT_LENGTHS,
    RuntimeProfile,
    TimingSample,
    _check_lengths,
    _not_int,
)
from pytest_inferbudget.records import Request

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine

__all__ = [
    "DEFAULT_OUTPUT_LENGTHS",
    "DEFAULT_REPEATS",
    "QUICK_OUTPUT_LENGTHS",
    "QUICK_PROMPT_LENGTHS",
    "QUICK_REPEATS",
    "calibrate",
]

QUICK_PROMPT_LENGTHS: Final = (1, 64, 256)
"""Prompt lengths of a quick calibration: seconds instead of minutes on a CPU."""

DEFAULT_OUTPUT_LENGTHS: Final = (8, 32)
QUICK_OUTPUT_LENGTHS: Final = (8, 32)
DEFAULT_REPEATS: Final = 3
QUICK_REPEATS: Final = 2


def calibrate(
    engine: Engine,
    *,
    prompt_lengths: Sequence[int] | None = None,
    output_lengths: Sequence[int] | None = None,
    repeats: int | None = None,
    warmup: int = 1,
    quick: bool = False,
    overhead: bool = False,
    method: str = "auto",
    statistic: str = "median",
    word: str = "the",
    progress: Progress | None = None,
) -> RuntimeProfile:
    """Time a grid of requests on ``engine`` and fit its runtime profile.

    The grid is every prompt length x every output length, ``repeats`` times, one
    request at a time (no batching: the profile is a single request's latency). Each
    request is raw text (``chat=False``), greedy, made of ``word`` repeated, which a
    language model keeps continuing, so it usually generates the full
    ``max_new_tokens``; where it stops early the fit uses the ``completion_tokens`` the
    engine reports, never the length asked for.

    Prompts of an exact token count: the engine reports ``prompt_tokens``, so each
    length is probed with a one-token request and the word count corrected until it
    matches (a tokenizer that adds a BOS token takes one word fewer). Where no word
    count matches exactly, the closest count below the target is used and the sample
    is fitted at its real length. The probes are untimed.

    No two timed requests share a prefix: each starts with a different common word
    checked to take as many tokens as ``word`` (:func:`_salt_words`), so an engine's
    prefix cache (vLLM caches prompt blocks by default) cannot serve a repeated
    calibration prompt, or the shared start of a longer one, from cache; the profile
    times prompt encoding, not cache hits.

    Warm-up: ``warmup`` untimed requests of the largest prompt and output lengths
    before timing (allocators, caches, kernels). Timing runs round-robin over the grid,
    one repeat of every cell before the next, so slow drift (heat, other processes)
    spreads over all cells instead of biasing some.

    Defaults: ``prompt_lengths`` :data:`PROMPT_LENGTHS`, ``output_lengths`` (8, 32),
    ``repeats`` 3. ``quick=True`` changes the defaults (explicit arguments still win)
    to prompt lengths (1, 64, 256) and 2 repeats: about 15 requests, tens of seconds
    for SmolLM2-135M on a CPU, enough for a rough profile but not for prompts much
    longer than 256 tokens (they are scaled from ``f(256)``).
    """
    if isinstance(repeats, bool) or (repeats is not None and repeats < 1):
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if statistic not in FIT_STATISTICS:  # checked before the engine is timed, not after
        raise ValueError(f"statistic must be one of {', '.join(FIT_STATISTICS)}, got {statistic!r}")
    if not word.strip() or any(c.isspace() for c in word):
        raise ValueError(f"word must be one word without spaces, got {word!r}")
    lengths = _check_lengths(
        prompt_lengths
        if prompt_lengths is not None
        else (QUICK_PROMPT_LENGTHS if quick else PROMPT_LENGTHS)
    )
    outputs = tuple(
        output_lengths
        if output_lengths is not None
        else (QUICK_OUTPUT_LENGTHS if quick else DEFAULT_OUTPUT_LENGTHS)
    )
    if not outputs or any(_not_int(o) or o < 1 for o in outputs):
        raise ValueError(f"output_lengths must be integers >= 1, got {outputs!r}")
    n_repeats = repeats if repeats is not None else (QUICK_REPEATS if quick else DEFAULT_REPEATS)
    say = progress or (lambda line: None)
    started_ns = time.perf_counter_ns()
    info = dict(engine.describe())
    prompts = {p: _exact_prompt(engine, p, word, say) for p in lengths}
    timed_requests = warmup + n_repeats * len(lengths) * len(outputs)
    starts = _salt_words(engine, word, timed_requests, say)
    salts = itertools.cycle(starts)
    for index in range(warmup):
        say(f"warm-up {index + 1}/{warmup}: {lengths[-1]} prompt tokens, {max(outputs)} output")
        _timed(engine, _salted(prompts[lengths[-1]], next(salts)), max(outputs))
    samples: list[TimingSample] = []
    for repeat in range(n_repeats):
        for p in lengths:
            for o in outputs:
                sample = _timed(engine, _salted(prompts[p], next(salts)), o)
                samples.append(sample)
                say(
                    f"repeat {repeat + 1}/{n_repeats}: p={sample.prompt_tokens} "
                    f"o={sample.output_tokens}: {sample.e2e_ms:.1f} ms"
                )
    fit = fit_profile(samples, lengths, overhead=overhead, method=method, statistic=statistic)
    duration_s = (time.perf_counter_ns() - started_ns) / 1e9
    try:
        model = EngineSpec.parse(engine.spec).target
    except EngineSpecError:
        model = str(info.get("model", engine.spec))
    say(f"calibrated in {duration_s:.1f} s: R-squared {fit.diagnostics.r_squared}")
    return build_profile(
        fit,
        samples,
        model=model,
        hardware_key=Machine.current(info).profile_key,
        engine_spec=engine.spec,
        engine_info=info,
        calibration={
            "prompt_lengths": list(lengths),
            "output_lengths": list(outputs),
            "repeats": n_repeats,
            "warmup": warmup,
            "distinct_prompt_starts": len(starts),
            "quick": quick,
            "overhead": overhead,
            "method": fit.diagnostics.method,
            "statistic": statistic,
            "duration_s": round(duration_s, 3),
        },
    )


def _timed(engine: Engine, prompt: str, output_tokens: int) -> TimingSample:
    response = engine.generate([Request(prompt, max_new_tokens=output_tokens, chat=False)])[0]
    generation = response.generations[0]
    if generation.e2e_ms is None:
        raise CalibrationError(
            f"engine {engine.spec} reported no e2e_ms, so it cannot be calibrated"
        )
    if generation.completion_tokens < 1:
        raise CalibrationError(f"engine {engine.spec} generated no token for a calibration prompt")
    return TimingSample(
        prompt_tokens=generation.prompt_tokens,
        output_tokens=generation.completion_tokens,
        ttft_ms=generation.ttft_ms,
        e2e_ms=generation.e2e_ms,
    )


_SALT_WORDS: Final = (
    "a", "an", "and", "as", "at", "be", "but", "by", "do", "for", "from", "go", "has", "he",
    "her", "his", "how", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "now",
    "of", "on", "one", "or", "our", "out", "so", "some", "than", "that", "them", "then",
    "there", "they", "this", "to", "two", "up", "us", "was", "we", "were", "what", "when",
    "which", "who", "will", "with", "you", "your", "all", "any", "can", "day", "did", "get",
    "had", "him", "may", "new", "old", "see", "way", "use", "man",
)  # fmt: skip
"""Common short words, most of them one token in any BPE vocabulary, to start prompts."""


def _salt_words(engine: Engine, word: str, needed: int, say: Progress) -> list[str]:
    """Up to ``needed`` first words that tokenize like ``word`` does in front of it.

    Every timed prompt starts with a different one of them, so no two timed requests
    share a prefix and an engine's prefix cache (vLLM's automatic prefix caching) cannot
    serve a prompt from cache: the profile times prefill, not a cache hit. Each candidate
    is checked with an untimed two-word request, ``"<salt> <word>"`` against
    ``"<word> <word>"``, so the prompt lengths stay exact.
    """

    def tokens(text: str) -> int:
        response = engine.generate([Request(text, max_new_tokens=1, chat=False)])[0]
        return response.generations[0].prompt_tokens

    reference = tokens(f"{word} {word}")
    found: list[str] = []
    for salt in _SALT_WORDS:
        if len(found) >= needed:
            break
        if salt != word and tokens(f"{salt} {word}") == reference:
            found.append(salt)
    if len(found) < needed:
        say(
            f"only {len(found)} distinct prompt starts for {needed} timed requests: some "
            f"prompts repeat and an engine's prefix cache may shorten their prefill"
        )
    return found or [word]


def _salted(prompt: str, salt: str) -> str:
    """``prompt`` with its first word replaced by ``salt``."""
    _, _, rest = prompt.partition(" ")
    return f"{salt} {rest}" if rest else salt


def _exact_prompt(engine: Engine, target: int, word: str, say: Progress) -> str:
    """Raw text of exactly ``target`` tokens where one exists, found by probing."""

    def text(words: int) -> str:
        return " ".join([word] * words)

    def tokens(words: int) -> int:
        response = engine.generate([Request(text(words), max_new_tokens=1, chat=False)])[0]
        return response.generations[0].prompt_tokens

    tried: dict[int, int] = {}
    words = target
    for _ in range(6):
        words = max(1, words)
        if words in tried:
            break
        tried[words] = tokens(words)
        if tried[words] == target:
            return text(words)
        words += target - tried[words]
    below = [w for w, n in tried.items() if n <= target]
    best = (
        max(below, key=lambda w: tried[w])
        if below
        else min(tried, key=lambda w: tried[w])  # even one word is too long: the shortest
    )
    say(f"no prompt of exactly {target} tokens from {word!r}; using {tried[best]} tokens")
    return text(best)
