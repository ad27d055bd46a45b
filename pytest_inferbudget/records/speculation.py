"""Speculative decoding of one generation: tokens drafted, accepted, verification steps.

Kept apart from :mod:`~pytest_inferbudget.records.requests`, which holds it on each
``Generation`` (docs/speculative.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

SpeculationSource = Literal["engine", "server_metrics"]
"""Who counted a generation's speculative decoding: the engine in process, per sequence
(vLLM's per-request spec-decode metrics, transformers' assisted-decoding loop), or the
server's ``/metrics`` counters read before and after the call (approximate: other clients
of the server, and the call's other requests, share them)."""
SPECULATION_SOURCES: tuple[SpeculationSource, ...] = get_args(SpeculationSource)


@dataclass(frozen=True, slots=True)
class Speculation:
    """One generation's speculative decoding: tokens drafted, drafted tokens accepted and
    verification steps that had a draft (docs/speculative.md)."""

    drafted: int
    accepted: int
    steps: int
    """Verification steps with a draft; each emits its accepted tokens plus one."""
    gamma: int
    """Speculative tokens per step the engine was configured with (the most drafted)."""
    source: SpeculationSource = "engine"

    def __post_init__(self) -> None:
        counts = (self.drafted, self.accepted, self.steps)
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
            raise ValueError(f"speculation counts must be integers >= 0, got {counts!r}")
        if self.accepted > self.drafted:
            raise ValueError(f"accepted ({self.accepted}) exceeds drafted ({self.drafted})")
        if self.source not in SPECULATION_SOURCES:
            raise ValueError(
                f"speculation source must be one of {', '.join(SPECULATION_SOURCES)}, "
                f"got {self.source!r}"
            )

    @property
    def approximate(self) -> bool:
        """Counted from a server's shared counters, not for this generation alone."""
        return self.source == "server_metrics"

    @classmethod
    def total(cls, counts: Sequence[Speculation | None]) -> Speculation | None:
        """The counts summed (the largest gamma); None if any is None or there are none."""
        kept = [c for c in counts if c is not None]
        if not kept or len(kept) < len(counts):
            return None
        return cls(
            drafted=sum(c.drafted for c in kept),
            accepted=sum(c.accepted for c in kept),
            steps=sum(c.steps for c in kept),
            gamma=max(c.gamma for c in kept),
            source="server_metrics" if any(c.approximate for c in kept) else kept[0].source,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "drafted": self.drafted,
            "accepted": self.accepted,
            "steps": self.steps,
            "gamma": self.gamma,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Speculation:
        return cls(data["drafted"], data["accepted"], data["steps"], data["gamma"], data["source"])
