"""What an OpenAI-compatible server supports, learned with a few tiny requests.

Servers differ in details the figures depend on: llama.cpp's server sends no usage in a
stream and ignores ``n``; others refuse log-probabilities or seeds, or have no
``/completions``. The engine asks once per server and model (cached for the process),
so the report can say why a figure is estimated, and the engine picks how to count.
Each of its nine requests asks for at most 12 tokens; a probe that fails means "not supported".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from pytest_inferbudget.engines.openai_wire import (
    choice_text,
    sse_data,
    token_logprobs,
    usage_counts,
)

PROBE_PROMPT = "Count from 1 to 50, separated by commas."
"""Long enough an answer that every probe stops at its token limit, not at EOS."""
SEED_PROMPT = "Write a story about a dragon."
"""Open enough that two seeds sample two different beginnings."""


class ProbeError(Exception):
    """The server refused even the plainest request; nothing is learned or cached."""


Post = Callable[[str, dict[str, Any]], tuple[int, str]]
"""Sends one JSON body to a path under the API root; the status and the whole body."""


@dataclass(frozen=True, slots=True)
class ServerCapabilities:
    """What one server did when asked; each False names something the engine works
    around (docs/engines.md has the table)."""

    stream_usage: bool
    """Usage at the end of a stream when asked (``stream_options.include_usage``)."""
    response_usage: bool
    """Usage in a non-streamed answer."""
    n: bool
    """Returns ``n`` choices when asked for them (the engine fans samples out anyway)."""
    logprobs: bool
    """Sampled tokens' log-probabilities in a stream."""
    seed: bool
    """The same seed gives the same sampled answer, and another seed another answer."""
    completions: bool
    """Answers raw text on ``/completions``."""
    concurrent: bool = True
    """Two streams at once both run to their end (llama-cpp-python's server, by default,
    cuts a stream off when another request arrives); if not, the engine sends one at a
    time."""
    tokenizer_check: str = ""
    """How the tokenizer's count of an answer compared with the server's, if both ran."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the report: ``usage in stream: no, ...``."""
        yes = {True: "yes", False: "no"}
        parts = [
            f"usage in stream: {yes[self.stream_usage]}",
            f"usage unstreamed: {yes[self.response_usage]}",
            f"n: {'honoured' if self.n else 'ignored'}",
            f"logprobs: {yes[self.logprobs]}",
            f"seed: {'reproducible' if self.seed else 'not honoured'}",
            f"/completions: {yes[self.completions]}",
            f"concurrent streams: {'yes' if self.concurrent else 'cut off, sent one at a time'}",
        ]
        return ", ".join(parts) + (f"; {self.tokenizer_check}" if self.tokenizer_check else "")


def choices_in(answer: Any) -> list[dict[str, Any]]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def stream_events(body: str) -> list[Any]:
    """The JSON events of a whole stream body; ``[DONE]`` and bad events dropped."""
    events = []
    for data, _ in sse_data(body.splitlines()):
        if data != "[DONE]":
            try:
                events.append(json.loads(data))
            except ValueError:
                continue
    return events


def stream_has_usage(events: list[Any]) -> bool:
    return any(isinstance(e, dict) and usage_counts(e.get("usage")) for e in events)


def stream_has_logprobs(events: list[Any]) -> bool:
    return any(token_logprobs(c.get("logprobs"), chat=True) for e in events for c in choices_in(e))


def stream_finished(events: list[Any]) -> bool:
    return any(c.get("finish_reason") is not None for e in events for c in choices_in(e))


def first_text(answer: Any) -> str | None:
    texts = [choice_text(c, streamed=False) for c in choices_in(answer)]
    return texts[0] if texts else None


def probe_server(
    post: Post, model: str, count_tokens: Callable[[str], int] | None = None
) -> ServerCapabilities:
    """Ask the server what it supports; ``count_tokens`` (the tokenizer, if any) is checked
    against the server's own count of one answer."""

    def ask(path: str, **body: Any) -> tuple[int, Any]:
        status, text = post(path, {"model": model, **body})
        if body.get("stream"):
            return status, stream_events(text)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, None

    chat = {"messages": [{"role": "user", "content": PROBE_PROMPT}]}
    include = {"stream": True, "stream_options": {"include_usage": True}}
    status, events = ask("/chat/completions", **chat, **include, max_tokens=2, temperature=0)
    if status != 200:  # a wrong model name, a bad key: the probe would learn nothing
        raise ProbeError(f"a plain streamed chat request answered HTTP {status}")
    stream_usage = stream_has_usage(events)
    status, events = ask(
        "/chat/completions", **chat, **include, max_tokens=2, logprobs=True, top_logprobs=0
    )
    logprobs = status == 200 and stream_has_logprobs(events)
    status, answer = ask("/chat/completions", **chat, max_tokens=2, temperature=1.0, n=2)
    n = status == 200 and len(choices_in(answer)) == 2
    story = {"messages": [{"role": "user", "content": SEED_PROMPT}]}
    sampled = [
        ask("/chat/completions", **story, max_tokens=12, temperature=1.0, seed=seed)
        for seed in (1234, 1234, 4321)
    ]
    texts = [first_text(a) if s == 200 else None for s, a in sampled]
    seed = None not in texts and texts[0] == texts[1] != texts[2]
    first = sampled[0][1] if sampled[0][0] == 200 else None
    counts = usage_counts(first.get("usage")) if isinstance(first, dict) else None
    status, answer = ask("/completions", prompt="1, 2, 3,", max_tokens=1, temperature=0)
    completions = status == 200 and bool(choices_in(answer))
    with ThreadPoolExecutor(max_workers=2) as pool:
        pair = list(
            pool.map(
                lambda _: ask("/chat/completions", **chat, stream=True, max_tokens=8),
                range(2),
            )
        )
    concurrent = all(status == 200 and stream_finished(events) for status, events in pair)
    check = ""
    stopped_at_limit = any(c.get("finish_reason") == "length" for c in choices_in(first))
    if counts is not None and count_tokens is not None and texts[0] and stopped_at_limit:
        estimate = count_tokens(texts[0])
        agree = "agrees with" if estimate == counts[1] else "differs from"
        check = (
            f"tokenizer {agree} server usage on a probe answer ({estimate} vs {counts[1]} tokens)"
        )
    return ServerCapabilities(
        stream_usage=stream_usage,
        response_usage=counts is not None,
        n=n,
        logprobs=logprobs,
        seed=seed,
        completions=completions,
        concurrent=concurrent,
        tokenizer_check=check,
    )


_CACHE: dict[tuple[str, str], ServerCapabilities] = {}
_CACHE_LOCK = threading.Lock()


def cached_capabilities(
    key: tuple[str, str], learn: Callable[[], ServerCapabilities]
) -> ServerCapabilities:
    """One probe per (API root, model) for the whole process: every engine on a server
    shares what the first learned."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = learn()
        return _CACHE[key]
