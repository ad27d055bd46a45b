"""An engine sweep: one suite run over several engine configurations, compared.

Built by :func:`pytest_inferbudget.compare.engines.engine_sweep` from a run whose tests
each name the engine that ran them (``TestRecord.engine``); reports render it and the
JSON report carries it under ``sweep``. ``None`` means "not measured", never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_inferbudget.vocabulary import Verdict

THROUGHPUT_KEY = "tokens_per_s"
"""Output tokens per second of engine time: the sweep's throughput, and the key
``relative_to_best=`` takes beside the cost keys (a floor: best is the highest)."""

SweepStat = Literal["mean", "p50", "p90", "p99"]
SWEEP_STATS: tuple[SweepStat, ...] = ("mean", "p50", "p90", "p99")
"""The latency statistics the sweep tabulates per engine."""


@dataclass(frozen=True, slots=True)
class RelativeLimit:
    """``relative_to_best={key: factor}`` of one budget marker: this engine's ``stat`` of
    ``key`` within ``factor`` of the best engine's in the same session."""

    key: str
    factor: float
    stat: str = "mean"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "factor": self.factor, "stat": self.stat}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelativeLimit:
        return cls(data["key"], float(data["factor"]), data.get("stat", "mean"))


@dataclass(frozen=True, slots=True)
class EngineFigures:
    """One engine's figures on one test (or over every test: the total)."""

    engine: str
    """The engine's id (``transformers-batch_size=4``, or the name given as ``NAME=SPEC``)."""
    requests: int
    prompt_tokens: int
    completion_tokens: int
    busy_s: float | None
    """Wall time of the engine calls (the machine meter's windows); None: not timed."""
    tokens_per_s: float | None
    """``completion_tokens / busy_s``: output throughput while the engine worked."""
    ms_per_request: dict[str, float] = field(default_factory=dict)
    """Statistic (``SWEEP_STATS``) -> end-to-end ms per request; empty: not timed."""
    ttft_ms: dict[str, float] = field(default_factory=dict)
    best: bool = False
    """The best configuration of this row (highest throughput, then lowest mean latency)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "busy_s": self.busy_s,
            "tokens_per_s": self.tokens_per_s,
            "ms_per_request": self.ms_per_request,
            "ttft_ms": self.ttft_ms,
            "best": self.best,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineFigures:
        return cls(
            engine=data["engine"],
            requests=data["requests"],
            prompt_tokens=data["prompt_tokens"],
            completion_tokens=data["completion_tokens"],
            busy_s=data.get("busy_s"),
            tokens_per_s=data.get("tokens_per_s"),
            ms_per_request=dict(data.get("ms_per_request", {})),
            ttft_ms=dict(data.get("ttft_ms", {})),
            best=bool(data.get("best", False)),
        )


@dataclass(frozen=True, slots=True)
class RelativeResult:
    """One engine's ``relative_to_best`` limit on one test, judged against the best."""

    test: str
    """The test's id without the engine (``test_x.py::test_batch``)."""
    engine: str
    key: str
    stat: str
    factor: float
    measured: float | None
    best: float | None
    best_engine: str
    verdict: Verdict
    """pass, fail, or unmeasured (this engine or every engine lacks the figure)."""

    @property
    def ratio(self) -> float | None:
        """How far from the best: >= 1, in the direction that is worse."""
        if self.measured is None or self.best is None or self.measured <= 0 or self.best <= 0:
            return None
        if self.key == THROUGHPUT_KEY:
            return self.best / self.measured
        return self.measured / self.best

    def describe(self) -> str:
        if self.measured is None or self.best is None:
            return f"{self.test} [{self.engine}] {self.key}: unmeasured, not judged"
        ratio = self.ratio
        worse = "slower" if self.key != THROUGHPUT_KEY else "lower"
        return (
            f"{self.test} [{self.engine}] {self.key} ({self.stat}) {self.measured:.4g} is "
            f"{ratio:.3g}x the best ({self.best_engine}: {self.best:.4g}), allowed "
            f"{self.factor:g}x {worse}: {self.verdict.upper()}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "engine": self.engine,
            "key": self.key,
            "stat": self.stat,
            "factor": self.factor,
            "measured": self.measured,
            "best": self.best,
            "best_engine": self.best_engine,
            "ratio": self.ratio,
            "verdict": str(self.verdict),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelativeResult:
        return cls(
            test=data["test"],
            engine=data["engine"],
            key=data["key"],
            stat=data["stat"],
            factor=float(data["factor"]),
            measured=data.get("measured"),
            best=data.get("best"),
            best_engine=data.get("best_engine", ""),
            verdict=Verdict(data["verdict"]),
        )


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One test (its id without the engine) over every engine that ran it."""

    test: str
    engines: list[EngineFigures]

    @property
    def best(self) -> str | None:
        return next((e.engine for e in self.engines if e.best), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "best": self.best,
            "engines": [e.to_dict() for e in self.engines],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepRow:
        return cls(data["test"], [EngineFigures.from_dict(e) for e in data["engines"]])


@dataclass(slots=True)
class EngineSweep:
    """Every engine of the session, per test and in total, best marked."""

    engines: dict[str, dict[str, Any]]
    """Engine id -> what the engine said of itself (``EngineInfo``, ``spec`` included)."""
    tests: list[SweepRow] = field(default_factory=list)
    total: list[EngineFigures] = field(default_factory=list)
    relative: list[RelativeResult] = field(default_factory=list)
    criterion: str = (
        "highest output tokens per second of engine time, then lowest mean ms per request"
    )

    @property
    def best(self) -> str | None:
        return next((e.engine for e in self.total if e.best), None)

    @property
    def relative_failures(self) -> list[RelativeResult]:
        return [r for r in self.relative if r.verdict is Verdict.FAIL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "engines": self.engines,
            "criterion": self.criterion,
            "best": self.best,
            "total": [e.to_dict() for e in self.total],
            "tests": [t.to_dict() for t in self.tests],
            "relative_to_best": [r.to_dict() for r in self.relative],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineSweep:
        return cls(
            engines=dict(data.get("engines", {})),
            tests=[SweepRow.from_dict(t) for t in data.get("tests", [])],
            total=[EngineFigures.from_dict(e) for e in data.get("total", [])],
            relative=[RelativeResult.from_dict(r) for r in data.get("relative_to_best", [])],
            criterion=data.get("criterion", ""),
        )


__all__ = [
    "SWEEP_STATS",
    "THROUGHPUT_KEY",
    "EngineFigures",
    "EngineSweep",
    "RelativeLimit",
    "RelativeResult",
    "SweepRow",
    "SweepStat",
]
