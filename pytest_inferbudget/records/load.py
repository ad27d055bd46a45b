"""What a load run sent and measured, request by request, and what a capacity search found.

Plain data with a JSON round trip, as every record: a saved run keeps every request of
every load run, so attainment and goodput can be recomputed for another SLO later. Times
of a run are seconds from its start (``t0``, the first scheduled arrival of the run);
latencies are milliseconds. ``None`` means "not measured", never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """One request of a load run: when it was due, when it went out, how it came back."""

    index: int
    """Position in the run's schedule (warm-up requests first)."""
    prompt_index: int
    """Which of the run's prompts it sent."""
    scheduled_s: float
    """Its arrival time in the schedule (open loop); when a slot freed (closed loop)."""
    sent_s: float | None
    """When the client actually sent it (None: never sent, the run ended first)."""
    done_s: float | None = None
    """When its last output arrived (or it failed); None when it never finished."""
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    itl_ms: tuple[float, ...] = ()
    """Gaps between output chunks (vLLM's ITL)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""
    finish_reason: str = ""
    """``stop`` or ``length``, as the engine reported it; empty when it did not finish."""
    error: str | None = None
    """Why it failed: a transport or server error, a timeout, or cancelled at the run's
    end. A request with an error counts as an SLO miss."""
    warmup: bool = False
    """Sent to warm the engine up; left out of every figure."""
    correct: bool | None = None
    """Set by ``load.score``; None when not scored."""

    @property
    def lateness_ms(self) -> float | None:
        """How late the client sent it against its schedule."""
        return None if self.sent_s is None else (self.sent_s - self.scheduled_s) * 1000.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.done_s is not None

    @property
    def max_itl_ms(self) -> float | None:
        return max(self.itl_ms) if self.itl_ms else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prompt_index": self.prompt_index,
            "scheduled_s": self.scheduled_s,
            "sent_s": self.sent_s,
            "done_s": self.done_s,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "e2e_ms": self.e2e_ms,
            "itl_ms": list(self.itl_ms),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "error": self.error,
            "warmup": self.warmup,
            "correct": self.correct,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadRequest:
        return cls(
            index=data["index"],
            prompt_index=data["prompt_index"],
            scheduled_s=data["scheduled_s"],
            sent_s=data["sent_s"],
            done_s=data.get("done_s"),
            ttft_ms=data.get("ttft_ms"),
            tpot_ms=data.get("tpot_ms"),
            e2e_ms=data.get("e2e_ms"),
            itl_ms=tuple(data.get("itl_ms", ())),
            prompt_tokens=data.get("prompt_tokens", 0),
            completion_tokens=data.get("completion_tokens", 0),
            text=data.get("text", ""),
            finish_reason=data.get("finish_reason", ""),
            error=data.get("error"),
            warmup=data.get("warmup", False),
            correct=data.get("correct"),
        )


@dataclass(frozen=True, slots=True)
class Saturation:
    """Whether completions kept up with arrivals (GuideLLM's over-saturation guard)."""

    saturated: bool
    reason: str
    completion_ratio: float | None = None
    """Completion rate over arrival rate in the second half of the arrival window."""
    backlog_growth: float | None = None
    """Requests by which the backlog grew over that half (least-squares slope x span)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "saturated": self.saturated,
            "reason": self.reason,
            "completion_ratio": self.completion_ratio,
            "backlog_growth": self.backlog_growth,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Saturation:
        return cls(
            data["saturated"],
            data["reason"],
            data.get("completion_ratio"),
            data.get("backlog_growth"),
        )


@dataclass(frozen=True, slots=True)
class LoadRun:
    """One ``load.run``: its schedule's parameters and every request it sent."""

    engine: str
    arrival: str
    """``poisson``, ``gamma``, ``constant`` or ``closed``."""
    rate: float | None
    """Requests per second asked for (open loop)."""
    concurrency: int | None
    """Requests in flight (closed loop)."""
    burstiness: float
    seed: int
    max_new_tokens: int
    requests: tuple[LoadRequest, ...]
    duration_s: float
    """From the first measured request's scheduled time to the last one's end, as
    ``vllm bench serve`` times its benchmark."""
    saturation: Saturation = field(default_factory=lambda: Saturation(False, ""))
    clock: str = "sent"
    """Where each request's latency clock starts: ``sent`` (an HTTP client, as vLLM's
    bench) or ``scheduled`` (in process: a request due mid-step waits, as at a server)."""
    probe: bool = False
    """A capacity search's probe, judged by ``max_rate_rps`` only."""

    @property
    def measured(self) -> tuple[LoadRequest, ...]:
        """The requests every figure counts: all but the warm-up."""
        return tuple(r for r in self.requests if not r.warmup)

    @property
    def saturated(self) -> bool:
        return self.saturation.saturated

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "arrival": self.arrival,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "burstiness": self.burstiness,
            "seed": self.seed,
            "max_new_tokens": self.max_new_tokens,
            "duration_s": self.duration_s,
            "saturation": self.saturation.to_dict(),
            "clock": self.clock,
            "probe": self.probe,
            "requests": [r.to_dict() for r in self.requests],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadRun:
        return cls(
            engine=data["engine"],
            arrival=data["arrival"],
            rate=data["rate"],
            concurrency=data["concurrency"],
            burstiness=data["burstiness"],
            seed=data["seed"],
            max_new_tokens=data["max_new_tokens"],
            requests=tuple(LoadRequest.from_dict(r) for r in data["requests"]),
            duration_s=data["duration_s"],
            saturation=Saturation.from_dict(data["saturation"]),
            clock=data.get("clock", "sent"),
            probe=data.get("probe", False),
        )


@dataclass(frozen=True, slots=True)
class CapacityProbe:
    """One rate a capacity search tried, and what it found there."""

    rate: float
    attainment: float
    lower: float | None
    """Lower confidence bound of the attainment (None without confidence)."""
    upper: float | None
    passed: bool | None
    """Attainment held (True), did not (False), or the interval straddles the target."""
    saturated: bool
    run: int
    """Index of the probe's run in the test's load runs."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "attainment": self.attainment,
            "lower": self.lower,
            "upper": self.upper,
            "passed": self.passed,
            "saturated": self.saturated,
            "run": self.run,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CapacityProbe:
        return cls(**{key: data[key] for key in cls.__slots__})


@dataclass(frozen=True, slots=True)
class CapacitySearch:
    """``load.find_max_rate``: the highest Poisson rate at which attainment held."""

    slo: tuple[tuple[str, float], ...]
    attainment: float
    """The attainment floor the search held each probe to."""
    probes: tuple[CapacityProbe, ...]
    max_rate_rps: float | None
    """The highest passing rate; None when even the lowest probe failed."""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "slo": [list(term) for term in self.slo],
            "attainment": self.attainment,
            "probes": [p.to_dict() for p in self.probes],
            "max_rate_rps": self.max_rate_rps,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CapacitySearch:
        return cls(
            slo=tuple((str(k), float(v)) for k, v in data["slo"]),
            attainment=data["attainment"],
            probes=tuple(CapacityProbe.from_dict(p) for p in data["probes"]),
            max_rate_rps=data["max_rate_rps"],
            note=data.get("note", ""),
        )
