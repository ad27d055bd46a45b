"""The machine-load meter: over each engine call, how much CPU the engine used and how much
everything else on the machine did.

A wall-clock regression gate compares two sessions; if another job shared the machine
during one of them, every request of that session is slower together, which no test on
per-request samples can tell from slower code. This meter gives the gate what it needs to
tell them apart (``other_cpu_share``) and the engine a contention-robust cost
(its own CPU seconds, ``cpu_ms_per_request``). Linux ``/proc`` only; elsewhere every figure
is ``None``, never 0.
"""

from __future__ import annotations

import os
import time
from typing import final

from pytest_inferbudget.meters.base import OpenWindows
from pytest_inferbudget.meters.procfs import MachineCpu, machine_cpu, tree_cpu_s
from pytest_inferbudget.records.machine import MachineLoad

__all__ = ["MachineLoadMeter"]

_Start = tuple[int, MachineCpu | None, float | None]


@final
class MachineLoadMeter:
    """``begin_window(key)`` / ``end_window(key) -> (MachineLoad, own CPU seconds)``."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._windows: OpenWindows[_Start] = OpenWindows("machine load")
        self.cpu_count = os.cpu_count() or 1

    def begin_window(self, key: str) -> None:
        own = self._own()
        self._windows.open(key, (time.perf_counter_ns(), machine_cpu(f"{self._proc}/stat"), own))

    def end_window(self, key: str) -> MachineLoad:
        start_ns, machine_start, own_start = self._windows.close(key)
        own_end = self._own()
        machine_end = machine_cpu(f"{self._proc}/stat")
        window_s = max(0.0, (time.perf_counter_ns() - start_ns) / 1e9)
        own = None if own_start is None or own_end is None else max(0.0, own_end - own_start)
        other = steal = None
        if machine_start is not None and machine_end is not None:
            busy = machine_end.busy_s - machine_start.busy_s
            steal = max(0.0, machine_end.steal_s - machine_start.steal_s)
            other = None if own is None else max(0.0, busy - own)
        try:
            load: float | None = os.getloadavg()[0]
        except OSError:
            load = None
        return MachineLoad(window_s, self.cpu_count, own, other, steal, load)

    def _own(self) -> float | None:
        if not os.path.isdir(self._proc):
            return None
        return tree_cpu_s(proc=self._proc)[0]
