"""The Engine protocol, engine specs, and the built-in engines (imported only when used)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from pytest_inferbudget.errors import EngineSpecError

if TYPE_CHECKING:
    from pytest_inferbudget.records import Request, Response

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

    def describe(self) -> dict[str, Any]:
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

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}:{self.target}" + (f"?{query}" if query else "")


BUILTIN_ENGINES: dict[str, str] = {
    "transformers": "pytest_inferbudget.engines.transformers:TransformersEngine",
}
"""Engine name -> ``module:class``; the class has ``from_spec(spec, progress)``."""

DEFAULT_ENGINE_SPEC = "transformers:smollm2-135m-instruct"


def create_engine(spec: EngineSpec, progress: Progress | None = None) -> Engine:
    """Build a built-in engine; the plugin reaches this through the make-engine hook."""
    if spec.name not in BUILTIN_ENGINES:
        raise EngineSpecError(
            f"unknown engine {spec.name!r} in spec '{spec}'; known engines: "
            f"{', '.join(sorted(BUILTIN_ENGINES))} (plugins add more through the "
            f"pytest_inferbudget_make_engine hook)"
        )
    module_name, _, class_name = BUILTIN_ENGINES[spec.name].partition(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    engine: Engine = engine_class.from_spec(spec, progress or (lambda line: None))
    return engine


__all__ = [
    "DEFAULT_ENGINE_SPEC",
    "Engine",
    "EngineSpec",
    "Progress",
    "create_engine",
]
