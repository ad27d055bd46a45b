"""Reasoning and answer: splitting a completion whose reasoning is written in its text.

Reasoning models think before they answer, and most of their tokens are thinking.
Servers with a reasoning parser (vLLM's ``--reasoning-parser``) send the thinking apart
(``reasoning_content`` / ``reasoning``); engines that give only text (transformers,
vLLM in process, a server without a parser) leave it between a pair of delimiters,
``<think>`` and ``</think>`` by default. The rules here are the one place that decides
which part of such a text is which:

- the reasoning opens only where the text (after any whitespace) starts with the opener;
  a text without an opener there is all answer;
- it closes at the first closer after the opener; what follows is the answer;
- an opener never closed (a generation cut at its token limit) makes the whole text
  reasoning and the answer empty.

A request's ``prefill`` is text the model continues, so a prefill of ``<think>`` makes
the generated text start inside the reasoning. Pure functions, no tokenizer import: a
token count takes the tokenizer's ``decode`` as a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

Delimiters = tuple[str, str]
"""The opener and closer of the reasoning in a text."""
DEFAULT_DELIMITERS: Delimiters = ("<think>", "</think>")
"""DeepSeek-R1's and Qwen3's, which vLLM's reasoning parsers split on."""


class ReasoningSplit(NamedTuple):
    """One completion's text, split. ``reasoning`` is what lies between the delimiters
    (the prefill's part of it included), ``answer`` the generated text after them."""

    reasoning: str
    answer: str
    opened: bool
    """The text (with its prefill) starts with the opener."""
    closed: bool
    """The closer followed the opener: the answer, possibly empty, came after it."""


def split_reasoning(
    text: str, delimiters: Delimiters = DEFAULT_DELIMITERS, *, prefill: str = ""
) -> ReasoningSplit:
    """Split generated ``text`` (continuing ``prefill``) into reasoning and answer."""
    opener, closer = delimiters
    full = prefill + text
    body_start = len(full) - len(full.lstrip())
    if not full.startswith(opener, body_start):
        return ReasoningSplit("", text, opened=False, closed=False)
    open_end = body_start + len(opener)
    close_at = full.find(closer, open_end)
    if close_at < 0:
        return ReasoningSplit(full[open_end:], "", opened=True, closed=False)
    answer_from = max(0, close_at + len(closer) - len(prefill))
    return ReasoningSplit(full[open_end:close_at], text[answer_from:], opened=True, closed=True)


def reasoning_token_count(
    token_ids: Sequence[int],
    decode: Callable[[Sequence[int]], str],
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    *,
    prefill: str = "",
) -> int:
    """How many of a completion's tokens are reasoning: those up to and including the
    one that completes the closer; all of them when the reasoning never closed; none
    when there is no opener. ``decode`` turns token ids into text (the tokenizer's).

    Exact on the model's own tokens: the smallest prefix whose text holds the closer,
    found by bisection (a longer prefix's text extends a shorter one's), so a long
    reasoning costs a few decodes, not one per token.
    """
    whole = split_reasoning(decode(token_ids), delimiters, prefill=prefill)
    if not whole.opened:
        return 0
    if not whole.closed:
        return len(token_ids)
    low, high = 1, len(token_ids)  # the smallest prefix that closes lies in [low, high]
    while low < high:
        middle = (low + high) // 2
        if split_reasoning(decode(token_ids[:middle]), delimiters, prefill=prefill).closed:
            high = middle
        else:
            low = middle + 1
    return low


class AnswerWatch:
    """Says, chunk by chunk of a streamed text, whether its answer has begun: the
    moment of the first answer token (TTFAT). Agrees with ``split_reasoning(text so
    far).answer != ""`` after every chunk, without splitting the whole text again,
    except that leading whitespace or a part of the opener waits for what follows."""

    def __init__(self, delimiters: Delimiters = DEFAULT_DELIMITERS, *, prefill: str = "") -> None:
        self._opener, self._closer = delimiters
        self._prefill = prefill
        self._text = prefill
        self._generated = 0
        self._phase = "start"  # start -> answer, or start -> reasoning -> closed -> answer
        self._search_from = 0
        self.in_reasoning = False
        """The text so far is inside an opened, unclosed reasoning (or just closed it
        with no answer yet): a token arriving now is a reasoning token."""
        if prefill:
            self._advance()

    def feed(self, chunk: str) -> bool:
        """Take the next piece of generated text; True once the answer has begun."""
        if self._phase == "answer" or not chunk:
            return self._phase == "answer"
        self._text += chunk
        self._generated += len(chunk)
        self._advance()
        return self._phase == "answer"

    def _advance(self) -> None:
        if self._phase == "start":
            body = self._text.lstrip()
            if not body:
                return
            if len(body) < len(self._opener) and self._opener.startswith(body):
                return  # could still become the opener
            if not body.startswith(self._opener):
                # no reasoning: the answer began with the first generated character
                self._phase = "answer" if self._generated else "start_plain"
                return
            self._phase = "reasoning"
            self._search_from = len(self._text) - len(body) + len(self._opener)
            self.in_reasoning = True
        if self._phase == "reasoning":
            at = self._text.find(self._closer, self._search_from)
            if at < 0:
                self._search_from = max(self._search_from, len(self._text) - len(self._closer) + 1)
                return
            self._phase = "closed"
            self._search_from = at + len(self._closer)
        if self._phase == "closed":
            generated_from = len(self._text) - self._generated
            if len(self._text) > max(self._search_from, generated_from):
                self._phase = "answer"
                self.in_reasoning = False
        if self._phase == "start_plain" and self._generated:
            self._phase = "answer"


class TokenSplit(NamedTuple):
    """A completion made of the model's own tokens, split (``reasoning_token_count``)."""

    answer: str
    reasoning: str
    reasoning_tokens: int
    """Tokens up to and including the closer's last; the rest are the answer's."""
    first_answer_token: int | None
    """Index of the answer's first token (0 without reasoning), None when a reasoning
    left no answer: its arrival is the time to first answer token."""


def split_tokens(
    token_ids: Sequence[int],
    decode: Callable[[Sequence[int]], str],
    delimiters: Delimiters | None = DEFAULT_DELIMITERS,
    *,
    prefill: str = "",
    text: str | None = None,
) -> TokenSplit:
    """What an in-process engine records of a completion: its answer text, its reasoning
    text and token count, and where its answer starts; ``delimiters=None`` keeps the
    whole text as the answer. ``text``: the engine's own text of the tokens (vLLM's
    detokenizer), split instead of ``decode``'s, which then only counts."""
    text = decode(token_ids) if text is None else text
    first = 0 if token_ids else None  # no reasoning: the first token is the answer's
    if delimiters is None:
        return TokenSplit(text, "", 0, first)
    split = split_reasoning(text, delimiters, prefill=prefill)
    if not split.opened:
        return TokenSplit(text, "", 0, first)
    count = reasoning_token_count(token_ids, decode, delimiters, prefill=prefill)
    first = count if split.answer and count < len(token_ids) else None
    return TokenSplit(split.answer, split.reasoning, count, first)
