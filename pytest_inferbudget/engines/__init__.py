"""The Engine protocol, engine specs, and the built-in engines (imported only when used).

PYTEST_DONT_REWRITE: loaded at start-up and holds no asserts; this skips pytest's pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from pytest_inferbudget.errors import EngineSpecError

if TYPE_CHECKING:
    from pytest_inferbudget.records import EngineInfo, Request, Response, TextLogprobs

Progress = Callable[[str], None]
"""Receives one line of human-readable progress (model download, conversion)."""


@runtime_checkable
class Engine(Protocol):
    """Anything that turns a batch of requests into responses, measuring what it can.

    ``generate`` returns one ``Response`` per request, in order, each holding
    ``request.n`` generations. Timings an engine cannot measure are ``None``.
    """

    @property
    def spec(self) -> str: ...

    def generate(self, requests: Sequence[Request]) -> list[Response]: ...

    def describe(self) -> EngineInfo:
        """Model, device, dtype and library versions, for reports."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class TextScorer(Protocol):
    """The Engine protocol's optional part: log-probabilities of a given text (prompt
    log-probs), for ``infer.measure_text`` and information capacity (docs/metrics.md)."""

    def text_logprobs(self, text: str, *, window_tokens: int = 1024) -> TextLogprobs:
        """Each token's natural-log probability given the ones before it in its window of
        ``window_tokens``; a window's first token is context (:class:`TextLogprobs`)."""
        ...


TEXT_SCORING_ENGINES = ("transformers", "vllm")
"""The built-in engines that implement :class:`TextScorer`."""


def text_scorer(engine: object) -> TextScorer:
    """``engine`` as a :class:`TextScorer`, or a clear error naming the engines that are."""
    if isinstance(engine, TextScorer):
        return engine
    spec = getattr(engine, "spec", type(engine).__name__)
    raise EngineSpecError(
        f"engine {spec} cannot score a given text (it has no text_logprobs); use one of the "
        f"engines that can: {', '.join(TEXT_SCORING_ENGINES)} (--inferbudget-engine "
        "transformers:MODEL or vllm:MODEL)"
    )


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """``NAME:TARGET[?key=value&...]``, e.g. ``transformers:smollm2-135m-instruct?device=cpu``."""

    name: str
    target: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> EngineSpec:
        name, sep, rest = text.strip().partition(":")
        if not sep or not name or not rest:
            raise EngineSpecError(
                f"engine spec {text!r} is not NAME:TARGET; for example "
                f"'transformers:smollm2-135m-instruct' or 'transformers:/path/to/model'"
            )
        target, _, query = rest.partition("?")
        try:
            options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
        except ValueError as exc:
            raise EngineSpecError(
                f"engine spec {text!r}: options after '?' must be key=value pairs joined by '&'"
            ) from exc
        return cls(name, target, options)

    def check_options(self, allowed: Sequence[str]) -> None:
        """Refuse options the engine does not take, naming the ones it does (and the
        likeliest meant). ``server_gpu``, a hardware label, is taken by every engine."""
        unknown = sorted(set(self.options) - {*allowed, SERVER_GPU_OPTION, REASONING_OPTION})
        if unknown:
            hints = "".join(_did_you_mean(name, allowed) for name in unknown)
            takes = ", ".join(allowed) if allowed else "no options"
            raise EngineSpecError(
                f"engine spec '{self}': unknown option(s) {', '.join(unknown)}{hints}; "
                f"the {self.name} engine takes {takes} (and {SERVER_GPU_OPTION}, a "
                f"hardware label, and {REASONING_OPTION}, the reasoning delimiters)"
            )

    def choice(self, key: str, accepted: Sequence[str], default: str) -> str:
        """The option ``key``, which must be one of ``accepted`` (or match one of them as a
        pattern such as ``cuda:N``); a bad value names the option, the value and the
        accepted ones, before anything is loaded."""
        value = self.options.get(key, default)
        for pattern in accepted:
            regex = re.escape(pattern).replace("N", r"\d+")
            if re.fullmatch(regex, value):
                return value
        # NVIDIA GPUs are "cuda" to torch and vLLM; "gpu" is what people type
        hint = " (did you mean 'cuda'?)" if value.lower() == "gpu" and "cuda" in accepted else ""
        raise EngineSpecError(
            f"engine spec '{self}': {key}={value!r} is not accepted"
            f"{hint or _did_you_mean(value, accepted)}; the {self.name} engine takes {key}= one of "
            f"{', '.join(accepted)}"
        )

    def reasoning_delimiters(self) -> tuple[str, str] | None:
        """The ``reasoning`` option: the pair around a completion's reasoning in its text,
        ``OPEN,CLOSE`` (default ``<think>,</think>``); None for ``none`` (never split)."""
        value = self.options.get(REASONING_OPTION)
        if value is None:
            return DEFAULT_REASONING_DELIMITERS
        if value.strip().lower() == "none":
            return None
        opener, comma, closer = value.partition(",")
        if not comma or not opener.strip() or not closer.strip() or "," in closer:
            raise EngineSpecError(
                f"engine spec '{self}': {REASONING_OPTION}={value!r} is not a pair of "
                f"delimiters; give OPEN,CLOSE (for example {REASONING_OPTION}=<think>,</think>) "
                f"or {REASONING_OPTION}=none to keep the whole text as the answer"
            )
        return opener, closer

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}:{self.target}" + (f"?{query}" if query else "")


SERVER_GPU_OPTION = "server_gpu"
REASONING_OPTION = "reasoning"
"""Taken by every engine: the delimiters of the reasoning in a completion's text
(:meth:`EngineSpec.reasoning_delimiters`, docs/engines.md)."""
DEFAULT_REASONING_DELIMITERS = ("<think>", "</think>")
"""As :data:`pytest_inferbudget.metrics.reasoning.DEFAULT_DELIMITERS` (not imported here:
this module loads at start-up)."""
"""Names a remote server's GPU for ``hardware=`` budgets and the run key (the same name as
:data:`pytest_inferbudget.hardware.SERVER_GPU_OPTION`, which reads it from the spec)."""


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


ENTRY_POINT_GROUP = "pytest_inferbudget.engines"
"""Entry points ``name = "module:Class"``; the class has ``from_spec(spec, progress)``.
The built-ins (transformers, vllm, openai, replay) are registered here too, in the
project's own metadata, so a third-party engine is found the same way."""

DEFAULT_ENGINE_SPEC = "transformers:smollm2-135m-instruct"


def registered_engines() -> dict[str, Any]:
    """Engine name -> entry point, from every installed distribution."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def create_engine(spec: EngineSpec, progress: Progress | None = None) -> Engine:
    """Build a registered engine; the plugin reaches this through the make-engine hook."""
    registry = registered_engines()
    if spec.name not in registry:
        known = ", ".join(sorted(registry)) or "none (is pytest-inferbudget installed?)"
        hint = _did_you_mean(spec.name, list(registry))
        raise EngineSpecError(
            f"unknown engine {spec.name!r} in spec '{spec}'{hint}; known engines: {known} "
            f"(packages add more through the {ENTRY_POINT_GROUP!r} entry-point group or "
            f"the pytest_inferbudget_make_engine hook)"
        )
    engine_class = registry[spec.name].load()
    engine: Engine = engine_class.from_spec(spec, progress or (lambda line: None))
    return engine


__all__ = [
    "DEFAULT_ENGINE_SPEC",
    "ENTRY_POINT_GROUP",
    "REASONING_OPTION",
    "SERVER_GPU_OPTION",
    "Engine",
    "EngineSpec",
    "Progress",
    "create_engine",
    "registered_engines",
]
