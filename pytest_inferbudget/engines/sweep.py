"""The engines of an engine sweep: several ``--inferbudget-engine`` specs, each with an id.

PYTEST_DONT_REWRITE: loaded at start-up (options are parsed there) and holds no asserts.

An id names the engine in test ids (``test_x[vllm-max_num_seqs=8]``) and in reports. A
user may give one as ``NAME=SPEC``; otherwise it is the engine kind plus its options
(and the target, where the specs' targets differ), so it reads as the configuration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple, final

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.errors import EngineSpecError

_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
"""What a user-given engine id may hold: it goes into test ids and -k expressions."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=,-]+")


@final
class EngineChoice(NamedTuple):
    """One engine of the session: its id and its spec text."""

    id: str
    spec: str


def split_named(text: str) -> tuple[str | None, str]:
    """``fast=vllm:m?x=1`` -> ("fast", "vllm:m?x=1"); a spec with no name -> (None, text).
    A name is what stands before an ``=`` that comes before the spec's first ``:``."""
    text = text.strip()
    head, sep, rest = text.partition("=")
    if sep and ":" not in head and "?" not in head:
        if not _NAME.fullmatch(head):
            raise EngineSpecError(
                f"engine {text!r}: the name {head!r} before '=' may hold only letters, digits "
                "and . _ + - (it goes into test ids); for example fast=vllm:smollm2-135m-instruct"
            )
        return head, rest.strip()
    return None, text


def engine_choices(texts: Sequence[str]) -> tuple[EngineChoice, ...]:
    """Every spec of the session, parsed and given an id; a bad spec or two engines with
    one id raise :class:`EngineSpecError` naming them."""
    named = [split_named(t) for t in texts if t.strip()]
    specs = [EngineSpec.parse(spec) for _, spec in named]
    targets = {s.target for s in specs}
    ids = [
        name or _default_id(spec, len(targets) > 1)
        for (name, _), spec in zip(named, specs, strict=True)
    ]
    seen: dict[str, str] = {}
    for engine_id, (_, text) in zip(ids, named, strict=True):
        if engine_id in seen:
            raise EngineSpecError(
                f"engines {seen[engine_id]!r} and {text!r} both have the id {engine_id!r}"
                + (
                    " (the same spec twice?)"
                    if seen[engine_id] == text
                    else "; name them apart as NAME=SPEC"
                )
            )
        seen[engine_id] = text
    return tuple(EngineChoice(i, spec) for i, (_, spec) in zip(ids, named, strict=True))


def _default_id(spec: EngineSpec, with_target: bool) -> str:
    """``vllm-max_num_seqs=8-dtype=float32``: the kind, the target where they differ, the
    options in the order given."""
    parts = [spec.name]
    if with_target:
        parts.append(spec.target.rstrip("/").rpartition("/")[2] or spec.target)
    parts += [f"{key}={value}" for key, value in spec.options.items()]
    return _UNSAFE.sub("_", "-".join(parts))


def engine_id_of(item: object) -> str:
    """The id of the sweep's engine that runs the pytest ``item``; "" outside a sweep."""
    callspec = getattr(item, "callspec", None)
    choice = callspec.params.get("inference_engine") if callspec is not None else None
    return choice.id if isinstance(choice, EngineChoice) else ""


__all__ = ["EngineChoice", "engine_choices", "engine_id_of", "split_named"]
