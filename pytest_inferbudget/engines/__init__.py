"""The Engine protocol, engine specs, and the built-in engines (imported only when used).

PYTEST_DONT_REWRITE: loaded at start-up and holds no asserts; this skips pytest's pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from pytest_inferbudget.errors import EngineSpecError

if TYPE_CHECKING:
    from pytest_inferbudget.records import EngineInfo, Request, Response

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
        """Refuse options the engine does not take, naming the ones it does."""
        unknown = set(self.options) - set(allowed)
        if unknown:
            takes = ", ".join(allowed) if allowed else "no options"
            raise EngineSpecError(
                f"engine spec '{self}': unknown option(s) {', '.join(sorted(unknown))}; "
                f"the {self.name} engine takes {takes}"
            )

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}:{self.target}" + (f"?{query}" if query else "")


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
        raise EngineSpecError(
            f"unknown engine {spec.name!r} in spec '{spec}'; known engines: {known} "
            f"(packages add more through the {ENTRY_POINT_GROUP!r} entry-point group or "
            f"the pytest_inferbudget_make_engine hook)"
        )
    engine_class = registry[spec.name].load()
    engine: Engine = engine_class.from_spec(spec, progress or (lambda line: None))
    return engine


__all__ = [
    "DEFAULT_ENGINE_SPEC",
    "ENTRY_POINT_GROUP",
    "Engine",
    "EngineSpec",
    "Progress",
    "create_engine",
    "registered_engines",
]
