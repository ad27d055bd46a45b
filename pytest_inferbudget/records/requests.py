"""What was asked of an engine and what it did: requests, responses, traces, scores.

Everything here converts to and from builtin types only (``to_dict`` / ``from_dict``),
so records cross xdist's wire, land in JSON reports and come back unchanged.
``None`` always means "not measured", never zero.

Longer than 500 lines because a request's records (request, generation, response,
trace, score) are read together by every budget key, each with its codec beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pytest_inferbudget.errors import MeterError
from pytest_inferbudget.records.energy import MAX_RELATIVE_ERROR, EnergyMeasurement
from pytest_inferbudget.records.speculation import Speculation

Prompt = str | tuple[dict[str, str], ...]
"""A chat prompt: one user message as a string, or a sequence of ``{"role", "content"}``."""

TokenSource = Literal["token_ids", "stream_usage", "response_usage", "tokenizer"]
"""Who counted a generation's tokens, most trusted first: the engine's own token ids (in
process), the server's usage in its stream, the server's usage in a non-streamed answer,
or the model's tokenizer applied to the text afterwards (an estimate, as ``vllm bench
serve`` makes when a server reports no usage)."""
TOKEN_SOURCES: tuple[TokenSource, ...] = get_args(TokenSource)
ESTIMATED_TOKEN_SOURCES: frozenset[TokenSource] = frozenset({"tokenizer"})

MAX_TOP_LOGPROBS = 20
"""The most alternatives per position a request may ask for: OpenAI's API caps
``top_logprobs`` at 20, and so does vLLM's default ``max_logprobs``."""

EntropySource = Literal["full", "top_k"]
"""How a first-token entropy was computed: ``full``, from the whole vocabulary's
distribution (exact); ``top_k``, from the ``k`` most likely tokens renormalised (a
truncation that ignores the tail, at most ``ln k``; docs/strategies.md)."""
ENTROPY_SOURCES: tuple[EntropySource, ...] = get_args(EntropySource)

TopLogprobs = tuple[tuple[tuple[str, float], ...], ...]
"""Per output position, the most likely tokens and their natural-log probabilities,
most likely first."""


@dataclass(frozen=True, slots=True)
class Request:
    """One prompt with its decoding settings; ``n`` asks for that many samples."""

    prompt: Prompt
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    chat: bool = True
    """Apply the model's chat template; ``False`` sends the prompt as raw text."""
    prefill: str = ""
    """Text the answer must start with, continued by the model (budget forcing, formats)."""
    logprobs: bool = False
    """Ask the engine for each completion's mean token log-probability."""
    top_logprobs: int = 0
    """Ask for the ``k`` most likely tokens at each output position (0: none; at most
    :data:`MAX_TOP_LOGPROBS`) and the first token's entropy, where the engine can."""

    def __post_init__(self) -> None:
        if isinstance(self.prompt, list):
            object.__setattr__(self, "prompt", tuple(dict(m) for m in self.prompt))
        problems = []
        if not isinstance(self.prompt, str | tuple):
            problems.append(f"prompt must be a string or a list of messages, got {self.prompt!r}")
        elif isinstance(self.prompt, tuple):
            for message in self.prompt:
                if set(message) != {"role", "content"}:
                    problems.append(
                        f"each message needs exactly the keys 'role' and 'content', got {message!r}"
                    )
            if not self.chat and self.prompt:
                problems.append("a list of messages needs chat=True")
        if (
            isinstance(self.max_new_tokens, bool)
            or not isinstance(self.max_new_tokens, int)
            or (self.max_new_tokens < 1)
        ):
            problems.append(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            problems.append(f"n must be an integer >= 1, got {self.n!r}")
        if float(self.temperature) < 0.0:
            problems.append(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0.0 < float(self.top_p) <= 1.0:
            problems.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if (
            isinstance(self.top_logprobs, bool)
            or not isinstance(self.top_logprobs, int)
            or not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS
        ):
            problems.append(
                f"top_logprobs must be an integer from 0 (none) to {MAX_TOP_LOGPROBS} (the "
                f"most OpenAI's API and vLLM's default max_logprobs return), "
                f"got {self.top_logprobs!r}"
            )
        if self.n > 1 and self.temperature == 0.0:
            problems.append(
                f"n={self.n} samples with temperature=0 would be {self.n} copies of the greedy "
                "answer; pass temperature > 0 to sample"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": (
                self.prompt if isinstance(self.prompt, str) else [dict(m) for m in self.prompt]
            ),
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "n": self.n,
            "seed": self.seed,
            "chat": self.chat,
            "prefill": self.prefill,
            "logprobs": self.logprobs,
            # only when asked: a cassette keys on this dict, and older ones lack it
            **({"top_logprobs": self.top_logprobs} if self.top_logprobs else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Request:
        prompt = data["prompt"]
        return cls(
            prompt=prompt if isinstance(prompt, str) else tuple(dict(m) for m in prompt),
            max_new_tokens=data["max_new_tokens"],
            temperature=data["temperature"],
            top_p=data["top_p"],
            n=data["n"],
            seed=data["seed"],
            chat=data["chat"],
            prefill=data.get("prefill", ""),
            logprobs=data.get("logprobs", False),
            top_logprobs=data.get("top_logprobs", 0),
        )


@dataclass(frozen=True, slots=True)
class Generation:
    """One completion (one sample) of a request, with what it cost.

    Timings follow ``vllm bench serve``: the clock starts before the request is
    tokenized; ``ttft_ms`` is the first output token, ``e2e_ms`` the last, and
    ``tpot_ms = (e2e_ms - ttft_ms) / (completion_tokens - 1)``, defined only for
    completions of more than one token.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """``"stop"`` (the model ended it) or ``"length"`` (``max_new_tokens`` was reached)."""
    e2e_ms: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    mean_logprob: float | None = None
    """Mean log-probability of the completion's tokens under the model, when asked for."""
    token_source: TokenSource = "token_ids"
    """Who counted ``prompt_tokens`` and ``completion_tokens`` (:data:`TokenSource`)."""
    speculation: Speculation | None = None
    """Drafted and accepted tokens when the engine decoded speculatively; None otherwise."""
    reasoning_text: str = ""
    """The reasoning before the answer (a server's ``reasoning_content``, or the text
    between the reasoning delimiters); ``text`` is the answer alone (docs/engines.md)."""
    reasoning_tokens: int | None = None
    """Completion tokens spent on reasoning (0: none); None when they could not be counted."""
    ttfat_ms: float | None = None
    """Time to the first answer token: ``ttft_ms`` counts reasoning tokens as output,
    this does not; None when the completion gave no answer (or was not streamed)."""
    top_logprobs: TopLogprobs | None = None
    """When the request asked for ``top_logprobs=k``: per output position, the ``k`` most
    likely tokens (as text) and their log-probabilities, most likely first."""
    first_token_entropy: float | None = None
    """Entropy in nats of the first output token's distribution (``-sum p ln p``), when
    the request asked for ``top_logprobs``: how unsure the model was as it began."""
    entropy_source: EntropySource | None = None
    """Whether ``first_token_entropy`` is exact (``full``) or from the top k (``top_k``)."""

    def __post_init__(self) -> None:
        if (self.first_token_entropy is None) != (self.entropy_source is None):
            raise ValueError(
                "first_token_entropy and entropy_source go together: set both or neither, got "
                f"{self.first_token_entropy!r} and {self.entropy_source!r}"
            )
        if self.entropy_source is not None and self.entropy_source not in ENTROPY_SOURCES:
            raise ValueError(
                f"entropy_source must be one of {', '.join(ENTROPY_SOURCES)}, "
                f"got {self.entropy_source!r}"
            )
        if self.token_source not in TOKEN_SOURCES:
            raise ValueError(
                f"token_source must be one of {', '.join(TOKEN_SOURCES)}, got {self.token_source!r}"
            )
        if self.reasoning_tokens is not None and not (
            0 <= self.reasoning_tokens <= self.completion_tokens
        ):
            raise ValueError(
                f"reasoning_tokens must be between 0 and completion_tokens "
                f"({self.completion_tokens}), got {self.reasoning_tokens!r}"
            )

    @property
    def answer_tokens(self) -> int | None:
        """Completion tokens after the reasoning (the end-of-sequence token included)."""
        if self.reasoning_tokens is None:
            return None
        return self.completion_tokens - self.reasoning_tokens

    @property
    def tokens_estimated(self) -> bool:
        """The token counts were estimated by re-tokenizing, not counted by the model."""
        return self.token_source in ESTIMATED_TOKEN_SOURCES

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "e2e_ms": self.e2e_ms,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "mean_logprob": self.mean_logprob,
            "token_source": self.token_source,
            **({} if self.speculation is None else {"speculation": self.speculation.to_dict()}),
            **({"reasoning_text": self.reasoning_text} if self.reasoning_text else {}),
            **(
                {} if self.reasoning_tokens is None else {"reasoning_tokens": self.reasoning_tokens}
            ),
            **({} if self.ttfat_ms is None else {"ttfat_ms": self.ttfat_ms}),
            **(
                {}
                if self.top_logprobs is None
                else {"top_logprobs": [[list(t) for t in p] for p in self.top_logprobs]}
            ),
            **(
                {}
                if self.first_token_entropy is None
                else {
                    "first_token_entropy": self.first_token_entropy,
                    "entropy_source": self.entropy_source,
                }
            ),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], default_source: TokenSource = "token_ids"
    ) -> Generation:
        """``default_source`` is for runs saved before token sources were recorded."""
        return cls(
            text=data["text"],
            prompt_tokens=data["prompt_tokens"],
            completion_tokens=data["completion_tokens"],
            finish_reason=data["finish_reason"],
            e2e_ms=data["e2e_ms"],
            ttft_ms=data["ttft_ms"],
            tpot_ms=data["tpot_ms"],
            mean_logprob=data.get("mean_logprob"),
            token_source=data.get("token_source", default_source),
            speculation=(
                None
                if data.get("speculation") is None
                else Speculation.from_dict(data["speculation"])
            ),
            reasoning_text=data.get("reasoning_text", ""),
            reasoning_tokens=data.get("reasoning_tokens"),
            ttfat_ms=data.get("ttfat_ms"),
            top_logprobs=(
                None
                if data.get("top_logprobs") is None
                else tuple(
                    tuple((str(token), float(lp)) for token, lp in position)
                    for position in data["top_logprobs"]
                )
            ),
            first_token_entropy=data.get("first_token_entropy"),
            entropy_source=data.get("entropy_source"),
        )


def tpot_ms(e2e_ms: float | None, ttft_ms: float | None, completion_tokens: int) -> float | None:
    """Time per output token after the first, as vLLM defines it; None for one token."""
    if e2e_ms is None or ttft_ms is None or completion_tokens < 2:
        return None
    return (e2e_ms - ttft_ms) / (completion_tokens - 1)


@dataclass(frozen=True, slots=True)
class Response:
    """A request and its ``n`` generations: the unit every per-request budget samples.

    A request with ``n`` samples costs all of them: its completion tokens are the sum,
    its latency is the slowest sample's, its first token the earliest sample's.
    """

    request: Request
    generations: tuple[Generation, ...]
    engine: str = ""
    energy: EnergyMeasurement | None = None
    """This request's share of its engine call's energy window
    (:meth:`EnergyMeasurement.portion`, joules split by completion tokens); None when no
    meter ran."""
    peak_memory_mb: float | None = None
    """Peak resident memory of the process during the engine call that served it."""
    peak_gpu_memory_mb: float | None = None
    """Accelerator memory of the engine call that served it, MiB, as its engine measures
    it: torch's peak allocation on the engine's device (transformers), the KV-cache blocks
    this request held (vLLM). None on CPU engines and servers (docs/energy.md)."""
    idealized_ms: float | None = None
    """HELM's idealized runtime of this request from a calibrated profile."""
    roofline_ms: float | None = None
    """The hardware's lower bound on this request's time (FLOPs and bytes moved)."""
    eflops: float | None = None
    """Kinetics' memory-aware cost: FLOPs + bytes moved x the device's peak/bandwidth."""
    replayed: bool = False
    """Served from a cassette: its text and token counts are real, but nothing of it
    was timed or metered, so it never satisfies a time or energy budget."""
    cpu_ms: float | None = None
    """This request's share of the CPU time its engine call cost the test process and its
    descendants (an engine core, a server the tests started), split by completion tokens
    as energy is; None when not measured (a remote server, a replay)."""

    @property
    def energy_j(self) -> float | None:
        return None if self.energy is None else self.energy.gross_energy_j

    @property
    def net_energy_j(self) -> float | None:
        return None if self.energy is None else self.energy.net_energy_j

    @property
    def text(self) -> str:
        return self.generations[0].text

    @property
    def texts(self) -> list[str]:
        return [g.text for g in self.generations]

    @property
    def prompt_tokens(self) -> int:
        return self.generations[0].prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return sum(g.completion_tokens for g in self.generations)

    @property
    def max_completion_tokens(self) -> int:
        return max(g.completion_tokens for g in self.generations)

    @property
    def finish_reason(self) -> str:
        return self.generations[0].finish_reason

    @property
    def tokens_estimated(self) -> bool:
        return any(g.tokens_estimated for g in self.generations)

    @property
    def e2e_ms(self) -> float | None:
        return _max_or_none(g.e2e_ms for g in self.generations)

    @property
    def ttft_ms(self) -> float | None:
        values = [g.ttft_ms for g in self.generations if g.ttft_ms is not None]
        return min(values) if values else None

    @property
    def reasoning_tokens(self) -> int | None:
        """Reasoning tokens of all samples; None if any sample's were not counted."""
        values = [g.reasoning_tokens for g in self.generations]
        return None if any(v is None for v in values) else sum(v or 0 for v in values)

    @property
    def ttfat_ms(self) -> float | None:
        """The earliest sample's first answer token, as ``ttft_ms`` takes the earliest."""
        values = [g.ttfat_ms for g in self.generations if g.ttfat_ms is not None]
        return min(values) if values else None

    @property
    def tpot_ms(self) -> float | None:
        values = [g.tpot_ms for g in self.generations if g.tpot_ms is not None]
        return sum(values) / len(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "request": self.request.to_dict(),
            "generations": [g.to_dict() for g in self.generations],
            "energy": None if self.energy is None else self.energy.to_dict(),
            "peak_memory_mb": self.peak_memory_mb,
            **(
                {}
                if self.peak_gpu_memory_mb is None
                else {"peak_gpu_memory_mb": self.peak_gpu_memory_mb}
            ),
            "idealized_ms": self.idealized_ms,
            "roofline_ms": self.roofline_ms,
            **({} if self.eflops is None else {"eflops": self.eflops}),
            "replayed": self.replayed,
            "cpu_ms": self.cpu_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Response:
        return cls(
            request=Request.from_dict(data["request"]),
            generations=tuple(
                # before sources were recorded, the openai engine took only stream usage
                Generation.from_dict(
                    g, _OLD_SOURCES.get(data["engine"].partition(":")[0], "token_ids")
                )
                for g in data["generations"]
            ),
            engine=data["engine"],
            energy=_energy_from_dict(data.get("energy")),
            peak_memory_mb=data.get("peak_memory_mb"),
            peak_gpu_memory_mb=data.get("peak_gpu_memory_mb"),
            idealized_ms=data.get("idealized_ms"),
            roofline_ms=data.get("roofline_ms"),
            eflops=data.get("eflops"),
            replayed=data.get("replayed", False),
            cpu_ms=data.get("cpu_ms"),
        )


_OLD_SOURCES: dict[str, TokenSource] = {"openai": "stream_usage"}
"""The token source of each engine's generations in runs saved before sources were kept."""


def _energy_from_dict(data: dict[str, Any] | None) -> EnergyMeasurement | None:
    """A response's energy; bad data is a ``ValueError``, as for any other record field."""
    if data is None:
        return None
    try:
        return EnergyMeasurement.from_dict(data)
    except MeterError as exc:
        raise ValueError(f"a response's energy is not a measurement: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Trace:
    """One logical request as the test sees it: a prompt sent through ``infer``, or one
    strategy run with every engine call it made. Per-request budgets sample traces, so
    a best-of-8 request costs its 8 samples and a 3-round revision its 3 calls.
    """

    responses: tuple[Response, ...]
    strategy: str = ""
    """The strategy's name; empty for a plain request."""
    wall_ms: float | None = None
    """A strategy run's wall time, measured around all its calls; None for a plain request."""
    answer: str | None = None
    """The strategy's chosen answer, where it extracts one."""

    @property
    def generations(self) -> tuple[Generation, ...]:
        return tuple(g for r in self.responses for g in r.generations)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.responses)

    @property
    def prompt_tokens(self) -> int:
        return sum(g.prompt_tokens for g in self.generations)

    @property
    def replayed(self) -> bool:
        return any(r.replayed for r in self.responses)

    @property
    def e2e_ms(self) -> float | None:
        if self.replayed:  # a strategy's wall time around replayed calls measures nothing
            return None
        if self.wall_ms is not None:
            return self.wall_ms
        return _max_or_none(r.e2e_ms for r in self.responses)

    @property
    def ttft_ms(self) -> float | None:
        """The first engine call's first token (a strategy's later calls come after it)."""
        return self.responses[0].ttft_ms if self.responses else None

    @property
    def ttfat_ms(self) -> float | None:
        """The first engine call's first answer token, as ``ttft_ms`` takes the first call's."""
        return self.responses[0].ttfat_ms if self.responses else None

    @property
    def reasoning_tokens(self) -> int | None:
        """Reasoning tokens of all the trace's calls; None if any call's were not counted."""
        values = [r.reasoning_tokens for r in self.responses]
        if not values or any(v is None for v in values):
            return None
        return sum(v or 0 for v in values)

    @property
    def answer_tokens(self) -> int | None:
        """Completion tokens less reasoning tokens; None where reasoning was not counted."""
        reasoning = self.reasoning_tokens
        return None if reasoning is None else self.completion_tokens - reasoning

    @property
    def tpot_ms(self) -> float | None:
        values = [g.tpot_ms for g in self.generations if g.tpot_ms is not None]
        return sum(values) / len(values) if values else None

    def energy(self, kind: str = "gross") -> float | None:
        """Joules of all the trace's calls: ``gross`` as metered, or ``net`` of idle power."""
        values = [r.energy_j if kind == "gross" else r.net_energy_j for r in self.responses]
        if not values or any(v is None for v in values):
            return None
        return math.fsum(v for v in values if v is not None)

    @property
    def peak_memory_mb(self) -> float | None:
        return _max_or_none(r.peak_memory_mb for r in self.responses)

    @property
    def peak_gpu_memory_mb(self) -> float | None:
        return _max_or_none(r.peak_gpu_memory_mb for r in self.responses)

    def bounded_energy(self, kind: str = "gross") -> float | None:
        """:meth:`energy` where its stated error bound is within
        :data:`~pytest_inferbudget.records.energy.MAX_RELATIVE_ERROR` of it (or no meter
        stated one), else None: a figure the meter could not resolve is not judged."""
        total = self.energy(kind)
        bounds = [r.energy.error_j for r in self.responses if r.energy is not None]
        if total is None or all(b is None for b in bounds):
            return total
        error = math.fsum(b for b in bounds if b is not None)
        # relative to the figure judged: a net figure is smaller, so its bound weighs more
        return None if error > MAX_RELATIVE_ERROR * abs(total) else total

    @property
    def idealized_ms(self) -> float | None:
        return _sum_or_none([r.idealized_ms for r in self.responses])

    @property
    def eflops(self) -> float | None:
        return _sum_or_none([r.eflops for r in self.responses])

    @property
    def speculation(self) -> Speculation | None:
        """The speculative-decoding counts of all the trace's generations summed; None if
        any generation has none (it was not decoded speculatively, or not counted)."""
        return Speculation.total([g.speculation for g in self.generations])

    @property
    def cpu_ms(self) -> float | None:
        """CPU time of all the trace's calls; None if any call's was not measured."""
        return _sum_or_none([r.cpu_ms for r in self.responses])

    @property
    def roofline_ratio(self) -> float | None:
        """Measured time over the hardware's lower bound: 1 would be a perfect engine."""
        bound = _sum_or_none([r.roofline_ms for r in self.responses])
        measured = self.e2e_ms
        return None if bound is None or measured is None or bound <= 0 else measured / bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "wall_ms": self.wall_ms,
            "answer": self.answer,
            "responses": [r.to_dict() for r in self.responses],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        return cls(
            responses=tuple(Response.from_dict(r) for r in data["responses"]),
            strategy=data["strategy"],
            wall_ms=data["wall_ms"],
            answer=data["answer"],
        )


@dataclass(frozen=True, slots=True)
class Score:
    """One scored sample: was it correct, and what did it cost.

    Samples of one ``problem`` are the n of pass@k; the costs come from the sample's
    own records, never from the caller.
    """

    problem: str
    correct: bool
    tokens: int
    """Completion tokens the sample cost (all calls of a strategy run)."""
    ms: float | None
    answer: str | None = None
    efficiency: float | None = None
    """An efficiency score given explicitly (e.g. from running generated code)."""
    containment: str | None = None
    """For model-written code: how it was contained when run (``bwrap``, ``unshare``,
    ``none``: uncontained); None for a score that ran no code."""
    eflops: float | None = None
    """Memory-aware cost of the sample (``Response.eflops``), where predicted."""
    reasoning_tokens: int | None = None
    """Of ``tokens``, those spent on reasoning; None where they were not counted."""
    strategy: str = ""
    """The name of the strategy that produced the sample (``Trace.strategy``); empty for a
    plain request. Lets one test score several strategies on the same problems."""

    @property
    def answer_tokens(self) -> int | None:
        """``tokens`` less ``reasoning_tokens``: what the answer itself cost."""
        return None if self.reasoning_tokens is None else self.tokens - self.reasoning_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "correct": self.correct,
            "tokens": self.tokens,
            "ms": self.ms,
            "answer": self.answer,
            "efficiency": self.efficiency,
            "containment": self.containment,
            **({} if self.eflops is None else {"eflops": self.eflops}),
            **(
                {} if self.reasoning_tokens is None else {"reasoning_tokens": self.reasoning_tokens}
            ),
            **({"strategy": self.strategy} if self.strategy else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        optional = ("containment", "eflops", "reasoning_tokens", "strategy")
        return cls(
            **{key: data[key] for key in cls.__slots__ if key not in optional},
            containment=data.get("containment"),
            eflops=data.get("eflops"),
            reasoning_tokens=data.get("reasoning_tokens"),
            strategy=data.get("strategy", ""),
        )


def _sum_or_none(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return math.fsum(v for v in values if v is not None)


def _max_or_none(values: Any) -> float | None:
    measured = [v for v in values if v is not None]
    return max(measured) if measured else None
