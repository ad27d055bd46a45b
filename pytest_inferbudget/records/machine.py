"""How busy the machine was while the engine worked: the record a regression gate reads
before it blames the code for a slower run.

The meter (:mod:`pytest_inferbudget.meters.machine`) fills one per engine call; a test's
and a run's are the sums of their calls' (:meth:`MachineLoad.combine`). Shares are of the
machine's whole capacity over the windows (``window_s x cpu_count``), so 0.5 on a 2-core
machine means one core's worth of other work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

__all__ = ["MachineLoad"]


@final
@dataclass(frozen=True, slots=True)
class MachineLoad:
    """CPU use over one or more windows, in seconds of CPU time; ``None``: not measured."""

    window_s: float
    """Wall time the windows covered, summed."""
    cpu_count: int
    own_cpu_s: float | None
    """CPU time of this process and its live descendants (an engine core, a server the
    tests started), from ``clock_gettime`` and ``/proc/PID/stat``."""
    other_cpu_s: float | None
    """CPU time the rest of the machine used: busy time from ``/proc/stat`` less our own."""
    steal_s: float | None
    """Time a hypervisor gave this machine's CPUs to other guests (``steal`` in
    ``/proc/stat``): another sign of a shared host."""
    load_avg_1m: float | None
    """The one-minute load average, averaged over the windows by their length."""
    windows: int = 1

    @property
    def capacity_s(self) -> float:
        return self.window_s * self.cpu_count

    @property
    def other_cpu_share(self) -> float | None:
        """Share of the machine's CPU capacity that other processes used (0 to 1)."""
        return _share(self.other_cpu_s, self.capacity_s)

    @property
    def own_cpu_share(self) -> float | None:
        return _share(self.own_cpu_s, self.capacity_s)

    @property
    def steal_share(self) -> float | None:
        return _share(self.steal_s, self.capacity_s)

    def describe(self) -> str:
        """``other processes 48% of CPU, steal 0%, load 1.9`` for reports."""
        parts = []
        if self.other_cpu_share is not None:
            parts.append(f"other processes {self.other_cpu_share:.0%} of CPU")
        if self.steal_share is not None:
            parts.append(f"steal {self.steal_share:.0%}")
        if self.load_avg_1m is not None:
            parts.append(f"load {self.load_avg_1m:.1f}")
        return ", ".join(parts) or "not measured"

    @classmethod
    def combine(cls, loads: Iterable[MachineLoad]) -> MachineLoad | None:
        """The load over all of ``loads``' windows together; None when there are none."""
        items = list(loads)
        if not items:
            return None
        window_s = sum(m.window_s for m in items)
        load = [(m.load_avg_1m, m.window_s) for m in items]
        return cls(
            window_s=window_s,
            cpu_count=max(m.cpu_count for m in items),
            own_cpu_s=_sum([m.own_cpu_s for m in items]),
            other_cpu_s=_sum([m.other_cpu_s for m in items]),
            steal_s=_sum([m.steal_s for m in items]),
            load_avg_1m=(
                None
                if any(v is None for v, _ in load) or window_s <= 0
                else sum(v * w for v, w in load if v is not None) / window_s
            ),
            windows=sum(m.windows for m in items),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "cpu_count": self.cpu_count,
            "own_cpu_s": self.own_cpu_s,
            "other_cpu_s": self.other_cpu_s,
            "steal_s": self.steal_s,
            "load_avg_1m": self.load_avg_1m,
            "windows": self.windows,
            "other_cpu_share": self.other_cpu_share,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MachineLoad | None:
        if data is None:
            return None
        return cls(
            window_s=float(data["window_s"]),
            cpu_count=int(data["cpu_count"]),
            own_cpu_s=data["own_cpu_s"],
            other_cpu_s=data["other_cpu_s"],
            steal_s=data["steal_s"],
            load_avg_1m=data["load_avg_1m"],
            windows=int(data.get("windows", 1)),
        )


def _share(seconds: float | None, capacity_s: float) -> float | None:
    return None if seconds is None or capacity_s <= 0 else min(1.0, seconds / capacity_s)


def _sum(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)
