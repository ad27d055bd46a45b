"""The OpenAI wire format without the wire: server-sent events, stream chunks, how a
chunk's tokens are accounted, and who counts a generation's tokens.

Pure functions of what arrived, apart from the engine that sends and times requests
(:mod:`pytest_inferbudget.engines.openai`), so each rule is unit-tested without a server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, get_args

from pytest_inferbudget.engines.top_logprobs import openai_steps
from pytest_inferbudget.errors import EngineError
from pytest_inferbudget.metrics.reasoning import AnswerWatch, Delimiters, split_reasoning
from pytest_inferbudget.records import TokenSource

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    # the model ended the answer itself, in another form
    "tool_calls": "stop",
    "function_call": "stop",
    "content_filter": "stop",
    "eos": "stop",  # some servers (TGI) name the end-of-sequence token
}

TokenMode = Literal["auto", "stream_usage", "response_usage", "tokenizer"]
"""The ``tokens`` option: how the engine counts tokens (docs/engines.md)."""
TOKEN_MODES: tuple[TokenMode, ...] = get_args(TokenMode)


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """How one generation arrived, beyond what ``Generation`` keeps. Times in ms."""

    ttft_ms: float | None
    e2e_ms: float | None
    itl_ms: tuple[float, ...]
    """Gaps between output chunks; split per token when ``itl_per_token``."""
    output_chunks: int
    itl_per_token: bool
    """The server reported usage on every output chunk and gaps were split by its count."""


@dataclass(slots=True)
class StreamState:
    """What one stream (or one non-streamed answer) delivered so far."""

    start_ns: int
    per_chunk_usage: bool = False
    """Usage is expected on every chunk (vLLM's ``continuous_usage_stats``)."""
    text: list[str] = field(default_factory=list)
    first_ns: int | None = None
    last_ns: int | None = None
    itl_ns: list[float] = field(default_factory=list)
    output_chunks: int = 0
    split_chunks: int = 0
    """Output chunks whose gap was split by the chunk's own token count."""
    logprobs: list[float] = field(default_factory=list)
    logprobs_seen: bool = False
    top_logprobs: list[tuple[tuple[str, float], ...]] = field(default_factory=list)
    """Per output token, the likeliest tokens the server listed (``top_logprobs``)."""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    usage_tokens: int = 0
    done: bool = False
    reasoning: list[str] = field(default_factory=list)
    """Reasoning the server sent apart from the answer (``reasoning_content``/``reasoning``)."""
    watch: AnswerWatch | None = None
    """Finds the answer's start in the text when the reasoning is written in it between
    delimiters; None: the engine does not split text (``reasoning=none``)."""
    first_answer_ns: int | None = None
    """Arrival of the first chunk with answer text: TTFAT's end."""
    reasoning_usage_tokens: int = 0
    """With per-chunk usage: the tokens of chunks that carried reasoning."""

    @property
    def reasoning_apart(self) -> bool:
        """The server sent reasoning in its own field (it runs a reasoning parser)."""
        return bool(self.reasoning)

    def timing(self) -> StreamTiming:
        ttft_ms = None if self.first_ns is None else (self.first_ns - self.start_ns) / 1e6
        e2e_ms = None if self.last_ns is None else (self.last_ns - self.start_ns) / 1e6
        return StreamTiming(
            ttft_ms=ttft_ms,
            e2e_ms=e2e_ms,
            itl_ms=tuple(gap / 1e6 for gap in self.itl_ns),
            output_chunks=self.output_chunks,
            itl_per_token=self.output_chunks > 0 and self.split_chunks == self.output_chunks,
        )


def carries_output(text: str | None, finish: str | None, new_tokens: int | None) -> bool:
    """Whether a chunk is output, for TTFT, E2E and the gaps between chunks.

    ``new_tokens`` is what the chunk's own usage adds, None where the server reports no
    per-chunk usage. Text is output; so is a chunk whose usage grew (an EOS token has no
    text). Without per-chunk usage a bare finish reason counts, since it arrives when the
    last (often textless) token was made; with it, a chunk adding no token carries none.
    """
    if text:
        return True
    if new_tokens is not None:
        return new_tokens > 0
    return finish is not None


def output_chunk_gaps(gap_ns: float | None, new_tokens: int | None) -> list[float]:
    """The inter-token latencies one output chunk adds (DESIGN.md section 3).

    ``gap_ns`` is the time since the previous output chunk, None for the first. With the
    chunk's token count known (per-chunk usage) a chunk of k tokens adds k gaps: the
    later ones split its gap evenly, the first chunk's extra tokens arrived with it (gap
    0). So the gaps number tokens - 1 and sum to E2E - TTFT either way. Unknown, or one
    token: one gap per chunk, as ``vllm bench serve`` records.
    """
    tokens = new_tokens if new_tokens is not None and new_tokens > 1 else 1
    if gap_ns is None:
        return [0.0] * (tokens - 1)
    return [gap_ns / tokens] * tokens


def sample_seed(seed: int | None, sample: int) -> int | None:
    """The seed of sample ``sample`` of a fanned-out request: ``seed + sample``, as vLLM
    seeds the children of an ``n > 1`` request, so samples differ and each is repeatable."""
    return None if seed is None else seed + sample


def take_chunk(
    state: StreamState, chunk: Any, data: str, arrival_ns: int, spec: str, url: str
) -> None:
    """Fold one decoded stream event into ``state``; errors name the spec and the URL."""
    if not isinstance(chunk, dict):
        raise EngineError(
            f"{spec}: malformed stream from {url}: an event is not a JSON object: {shorten(data)}"
        )
    if "error" in chunk or chunk.get("object") == "error":
        error = chunk.get("error", chunk)
        message = error.get("message", error) if isinstance(error, dict) else error
        raise EngineError(f"{spec}: {url} reported an error mid-stream: {message}")
    usage = chunk.get("usage")
    new_tokens: int | None = None
    if isinstance(usage, dict):
        state.usage = usage
        tokens = usage.get("completion_tokens")
        if isinstance(tokens, int):
            new_tokens = max(0, tokens - state.usage_tokens)
            state.usage_tokens = max(tokens, state.usage_tokens)
    if not state.per_chunk_usage:
        new_tokens = None  # a final usage chunk says nothing of any one content chunk
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise EngineError(
            f"{spec}: malformed stream from {url}: 'choices' is not a list: {shorten(data)}"
        )
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue  # one sample per stream; ignore anything else
        text = choice_text(choice, streamed=True)
        reasoning = choice_reasoning(choice, streamed=True)
        chat = "delta" in choice
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            state.logprobs_seen = True
            state.logprobs.extend(token_logprobs(logprobs, chat))
            state.top_logprobs.extend(openai_steps(logprobs, chat))
        finish = choice.get("finish_reason")
        if reasoning:
            state.reasoning.append(reasoning)
        answered_before = state.first_answer_ns is not None
        if text:
            state.text.append(text)
            if starts_answer(state, text) and not answered_before:
                state.first_answer_ns = arrival_ns
        if finish is not None and state.finish_reason is None:
            state.finish_reason = str(finish)
        if new_tokens and reasoning_chunk(state, bool(reasoning), answered_before):
            state.reasoning_usage_tokens += new_tokens
        # reasoning is output: TTFT is the first chunk with any content (vLLM's rule)
        if not carries_output(text or reasoning, finish, new_tokens):
            continue  # e.g. the role-only first chunk of a chat stream
        gap = None if state.last_ns is None else float(arrival_ns - state.last_ns)
        state.itl_ns.extend(output_chunk_gaps(gap, new_tokens))
        if state.first_ns is None:
            state.first_ns = arrival_ns
        state.last_ns = arrival_ns
        state.output_chunks += 1
        state.split_chunks += new_tokens is not None


def take_answer(
    state: StreamState, answer: Any, body: str, arrival_ns: int, spec: str, url: str
) -> None:
    """A non-streamed answer: its text, finish and usage; it arrives whole, so it has an
    end (E2E) but no first token."""
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
        raise EngineError(
            f"{spec}: malformed answer from {url}: no 'choices' list: {shorten(body)}"
        )
    if isinstance(answer.get("usage"), dict):
        state.usage = answer["usage"]
    for choice in answer["choices"]:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        text = choice_text(choice, streamed=False)
        if text:
            state.text.append(text)
        reasoning = choice_reasoning(choice, streamed=False)
        if reasoning:
            state.reasoning.append(reasoning)
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            state.logprobs_seen = True
            state.logprobs.extend(token_logprobs(logprobs, "message" in choice))
            state.top_logprobs.extend(openai_steps(logprobs, "message" in choice))
        if choice.get("finish_reason") is not None:
            state.finish_reason = str(choice["finish_reason"])
    state.last_ns = arrival_ns
    state.done = True


def choice_text(choice: dict[str, Any], *, streamed: bool) -> str | None:
    """A choice's text in any of the two APIs' two forms (chat delta or message, text)."""
    holder = choice.get("delta" if streamed else "message")
    if isinstance(holder, dict):
        content = holder.get("content")
        return str(content) if content else None
    text = choice.get("text")
    return str(text) if text else None


def choice_reasoning(choice: dict[str, Any], *, streamed: bool) -> str | None:
    """A chat choice's reasoning, sent apart by a server that runs a reasoning parser:
    ``reasoning_content`` (DeepSeek's API, vLLM before 0.11) or ``reasoning`` (vLLM now,
    OpenRouter)."""
    holder = choice.get("delta" if streamed else "message")
    if not isinstance(holder, dict):
        return None
    for name in ("reasoning_content", "reasoning"):
        value = holder.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def starts_answer(state: StreamState, text: str) -> bool:
    """Whether the answer has begun once ``text`` (a chunk's content) has arrived: at once
    after reasoning sent apart, else where the delimiters say (:class:`AnswerWatch`)."""
    if state.reasoning_apart or state.watch is None:
        return True
    return state.watch.feed(text)


def reasoning_chunk(state: StreamState, has_reasoning: bool, answered_before: bool) -> bool:
    """Whether a chunk's own tokens (per-chunk usage) are reasoning tokens: it carried
    reasoning, or it came before the answer while a reasoning was open (a closing
    delimiter's token, or one with no text). A chunk carrying both reasoning and the
    answer's first text counts as reasoning."""
    if has_reasoning:
        return True
    if answered_before or state.first_answer_ns is not None:
        return False
    return state.reasoning_apart or (state.watch is not None and state.watch.in_reasoning)


def usage_reasoning_tokens(usage: dict[str, Any] | None) -> int | None:
    """The server's own count of reasoning tokens (``completion_tokens_details.
    reasoning_tokens``: OpenAI's API, vLLM with a reasoning parser), else None."""
    details = None if usage is None else usage.get("completion_tokens_details")
    if not isinstance(details, dict):
        return None
    count = details.get("reasoning_tokens")
    return count if isinstance(count, int) and not isinstance(count, bool) else None


class CompletionParts(NamedTuple):
    """A finished generation's answer and reasoning, and where the reasoning was."""

    answer: str
    reasoning: str
    where: Literal["none", "apart", "delimited", "unclosed"]
    """``none``: no reasoning; ``apart``: in the server's own field; ``delimited``: between
    the delimiters in the text; ``unclosed``: opened in the text and never closed."""


def split_completion(
    state: StreamState, text: str, delimiters: Delimiters | None, prefill: str
) -> CompletionParts:
    """Answer and reasoning: the server's split where it sent reasoning apart, else the
    delimiters' (:func:`~pytest_inferbudget.metrics.reasoning.split_reasoning`)."""
    if state.reasoning_apart:
        return CompletionParts(text, "".join(state.reasoning), "apart")
    if delimiters is None:
        return CompletionParts(text, "", "none")
    split = split_reasoning(text, delimiters, prefill=prefill)
    if not split.opened:
        return CompletionParts(text, "", "none")
    where: Literal["delimited", "unclosed"] = "delimited" if split.closed else "unclosed"
    return CompletionParts(split.answer, split.reasoning, where)


class ReasoningCounter(Protocol):
    def length_tokens(self, text: str) -> int: ...


def count_reasoning_tokens(
    state: StreamState,
    parts: CompletionParts,
    text: str,
    completion_tokens: int,
    source: TokenSource,
    counter: ReasoningCounter | None,
) -> int | None:
    """How many completion tokens were reasoning, by the most trusted count at hand: the
    server's ``completion_tokens_details.reasoning_tokens``; the tokens of the chunks that
    carried reasoning (per-chunk usage); the model's tokenizer on the reasoning text (an
    estimate, as for completions the server did not count); else None (not counted)."""
    if parts.where == "none":
        return 0
    if parts.where == "unclosed":
        return completion_tokens  # cut inside its reasoning: every token was reasoning
    if source != "tokenizer":
        reported = usage_reasoning_tokens(state.usage)
        if reported is not None:
            return min(reported, completion_tokens)
        if state.per_chunk_usage and state.output_chunks and state.split_chunks:
            return min(state.reasoning_usage_tokens, completion_tokens)
    if counter is None:
        return None
    if parts.where == "apart":
        counted = counter.length_tokens(parts.reasoning)
    else:  # the generated text up to the closer's end, delimiters included
        counted = counter.length_tokens(text[: len(text) - len(parts.answer)])
    return min(counted, completion_tokens)


def answer_time_ms(
    state: StreamState, parts: CompletionParts, ttft_ms: float | None
) -> float | None:
    """Time to the first answer token: TTFT where there was no reasoning; else the first
    chunk with answer text; None when unstreamed or when no answer came."""
    if parts.where == "none" or ttft_ms is None:
        return ttft_ms
    if state.first_answer_ns is None or not parts.answer:
        return None
    return (state.first_answer_ns - state.start_ns) / 1e6


def usage_counts(usage: dict[str, Any] | None) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)`` of a usage object, None if it has not both."""
    if usage is None:
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None


def streams_for(mode: TokenMode, stream_usage: bool | None, response_usage: bool | None,
                have_tokenizer: bool, where: str) -> bool:  # fmt: skip
    """Send requests streamed (True) or whole (False), so tokens can be counted.

    ``stream_usage`` / ``response_usage``: what the probe found (None: not probed).
    Streaming keeps TTFT and TPOT, so ``auto`` streams whenever the stream's usage or the
    tokenizer can count; it sends whole requests (exact counts, no TTFT) only for a
    server whose usage comes unstreamed and with no tokenizer at hand.
    """
    if mode == "response_usage":
        return False
    if mode != "auto" or stream_usage is not False or have_tokenizer:
        return True
    if response_usage:
        return False
    raise EngineError(
        f"{where}: the server reports no usage (neither streamed nor unstreamed) and no "
        f"tokenizer is known for this model, so tokens cannot be counted; name the model's "
        f"tokenizer with ?tokenizer=FOLDER (a local Hugging Face folder) or "
        f"?tokenizer=smollm2-135m-instruct"
    )


def token_source(
    mode: TokenMode, streamed: bool, has_usage: bool, have_tokenizer: bool, where: str
) -> TokenSource:
    """Who counts one generation's tokens, most trusted first (records.TokenSource)."""
    if mode == "tokenizer":
        return "tokenizer"
    if has_usage:
        return "stream_usage" if streamed else "response_usage"
    if mode == "auto" and streamed and have_tokenizer:
        return "tokenizer"
    fix = (
        "name the model's tokenizer with ?tokenizer=FOLDER to count them"
        if mode == "auto"
        else "use tokens=auto to fall back to the model's tokenizer"
    )
    honour = "stream_options.include_usage" if streamed else "usage"
    raise EngineError(f"{where} sent no usage (the server ignores {honour}); {fix}")


def tokens_description(
    mode: TokenMode,
    streamed: Callable[[], bool],
    stream_usage: bool | None,
    tokenizer: str | None,
) -> str:
    """Who counts tokens, in words, for the report. ``streamed`` may raise the
    :func:`streams_for` error, which is then the description."""
    counter = "no tokenizer" if tokenizer is None else f"tokenizer {tokenizer}"
    if mode == "tokenizer":
        return f"estimated: {counter} (tokens=tokenizer)"
    try:
        if not streamed():
            return "server usage, unstreamed requests (no TTFT or TPOT)"
    except EngineError as exc:
        return f"cannot be counted: {exc}"
    if stream_usage is False and mode == "stream_usage":
        return "cannot be counted: the server sends no usage in streams (tokens=stream_usage)"
    if stream_usage is False:
        return f"estimated: {counter} (the server sends no usage in streams)"
    fallback = "" if mode == "stream_usage" else f"; else {counter}"
    return f"server usage in the stream{fallback}"


class SseEvents:
    """Server-sent event framing, fed line by line (from a blocking or an async stream):
    an event's ``data`` lines joined, with the arrival time of its first; comments (often
    keep-alive pings) skipped."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._arrival_ns = 0

    def feed(self, line: str) -> tuple[str, int] | None:
        """The event a blank line ends, else None."""
        if not line:
            return self.end()
        if line.startswith(":"):
            return None
        field_name, _, value = line.partition(":")
        if field_name == "data":
            if not self._data:
                self._arrival_ns = time.perf_counter_ns()
            self._data.append(value.removeprefix(" "))
        return None

    def end(self) -> tuple[str, int] | None:
        """The event in progress (a last one may lack its blank line), else None."""
        if not self._data:
            return None
        event = "\n".join(self._data), self._arrival_ns
        self._data = []
        return event


def sse_data(lines: Iterable[str]) -> Iterator[tuple[str, int]]:
    """The ``data`` of each server-sent event with its arrival time."""
    events = SseEvents()
    for line in lines:
        if (event := events.feed(line)) is not None:
            yield event
    if (event := events.end()) is not None:
        yield event


def decode_event(data: str, spec: str, url: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise EngineError(
            f"{spec}: malformed stream from {url}: an event is not JSON ({exc}): {shorten(data)}"
        ) from exc


def token_logprobs(logprobs: Any, chat: bool) -> list[float]:
    """The sampled tokens' log-probabilities in a chunk's ``logprobs``, in either API's form."""
    if not isinstance(logprobs, dict):
        return []
    if chat:
        entries = logprobs.get("content") or []
        values = [e.get("logprob") for e in entries if isinstance(e, dict)]
    else:
        values = logprobs.get("token_logprobs") or []
    return [float(v) for v in values if isinstance(v, int | float)]


def shorten(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."
