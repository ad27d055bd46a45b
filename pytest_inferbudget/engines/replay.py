"""Record and replay: a cassette of requests and generations, served back with no model.

A GPU-less CI job replays what a GPU job recorded and still checks token budgets and
correctness. Replayed responses are flagged ``replayed`` and carry no timings, so time
and energy budgets on them are unmeasured, never satisfied.

A cassette is JSON: ``{"format": "inferbudget-cassette", "version": 1, "engine": {...},
"entries": [{"request": {...}, "generations": [...]}, ...]}``. Entries are matched by
the request's every field (prompt, decoding settings, seed, n); a request made several
times gets its recordings back in recorded order, which keeps unseeded sampling apart.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from pytest_inferbudget.engines import EngineSpec, Progress
from pytest_inferbudget.errors import EngineError, EngineUnavailableError
from pytest_inferbudget.records import EngineInfo, Generation, Request, Response

CASSETTE_FORMAT = "inferbudget-cassette"
CASSETTE_VERSION = 1
UNTIMED = {"e2e_ms": None, "ttft_ms": None, "tpot_ms": None, "ttfat_ms": None}


def request_key(request: Request) -> str:
    return json.dumps(request.to_dict(), sort_keys=True)


def build_cassette(responses: Iterable[Response], engine: dict[str, Any]) -> dict[str, Any]:
    """The cassette of a run's responses, in the order they were made."""
    return {
        "format": CASSETTE_FORMAT,
        "version": CASSETTE_VERSION,
        "engine": engine,
        "entries": [
            {
                "request": r.request.to_dict(),
                "generations": [g.to_dict() for g in r.generations],
            }
            for r in responses
            if not r.replayed
        ],
    }


def load_cassette(path: Path) -> tuple[dict[str, Any], dict[str, deque[tuple[Generation, ...]]]]:
    """The recorded engine's description and the recordings per request key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EngineUnavailableError(
            f"no cassette at {path}; record one with --inferbudget-record {path}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise EngineUnavailableError(f"cassette {path} is unreadable or not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != CASSETTE_FORMAT:
        raise EngineUnavailableError(
            f'{path} is not an inferbudget cassette (no "format": "{CASSETTE_FORMAT}")'
        )
    version = data.get("version")
    if version != CASSETTE_VERSION:
        raise EngineUnavailableError(
            f"cassette {path} has version {version!r}; this pytest-inferbudget reads version "
            f"{CASSETTE_VERSION} (record it again, or upgrade pytest-inferbudget)"
        )
    recordings: dict[str, deque[tuple[Generation, ...]]] = {}
    try:
        for number, entry in enumerate(data["entries"]):
            request = Request.from_dict(entry["request"])
            generations = tuple(Generation.from_dict(g) for g in entry["generations"])
            if len(generations) != request.n:
                raise ValueError(
                    f"entry {number} has {len(generations)} generations for n={request.n}"
                )
            recordings.setdefault(request_key(request), deque()).append(generations)
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineUnavailableError(f"cassette {path} has a malformed entry: {exc!r}") from exc
    engine = data.get("engine")
    return (engine if isinstance(engine, dict) else {}), recordings


class ReplayEngine:
    """``replay:PATH``: serves each request's recorded generations, untimed."""

    def __init__(self, path: Path, spec: str) -> None:
        self.path = path
        self._spec = spec
        self.recorded_engine, self._recordings = load_cassette(path)

    @classmethod
    def from_spec(cls, spec: EngineSpec, progress: Progress) -> ReplayEngine:
        spec.check_options(())
        return cls(Path(spec.target), str(spec))

    @property
    def spec(self) -> str:
        return self._spec

    def describe(self) -> EngineInfo:
        """The recorded engine's model, on the device "replay": a replayed run gets its
        own hardware key, so it is never compared with timed runs by default."""
        info = cast("EngineInfo", {k: v for k, v in self.recorded_engine.items() if k != "spec"})
        info["engine"] = "replay"
        info["device"] = "replay"
        info["cassette"] = str(self.path)
        info["recorded_spec"] = self.recorded_engine.get("spec")
        return info

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        missing = [r for r in requests if not self._recordings.get(request_key(r))]
        if missing:
            request = missing[0]
            raise EngineError(
                f"cassette {self.path} has no (more) recording of the request "
                f"{_describe(request)}; record again with --inferbudget-record after "
                f"changing prompts or decoding settings"
            )
        responses = []
        for request in requests:
            recorded = self._recordings[request_key(request)].popleft()
            generations = tuple(Generation.from_dict({**g.to_dict(), **UNTIMED}) for g in recorded)
            responses.append(Response(request, generations, engine=self._spec, replayed=True))
        return responses

    def close(self) -> None:
        self._recordings.clear()


def _describe(request: Request) -> str:
    prompt = request.prompt if isinstance(request.prompt, str) else request.prompt[-1]["content"]
    shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
    settings = {k: v for k, v in request.to_dict().items() if k != "prompt"}
    return f"{shown!r} with {settings}"
