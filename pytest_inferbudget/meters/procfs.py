"""Reading Linux ``/proc``: the machine's CPU counters, a process tree and its CPU time.

Shared by the machine-load meter (how busy the machine was) and the NVML meter (whose GPU
processes are ours). Everything returns ``None`` or an empty set where ``/proc`` is absent
or unreadable; nothing here raises for a process that exits while it is being read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, final

__all__ = [
    "CLOCK_TICKS",
    "MachineCpu",
    "descendant_pids",
    "machine_cpu",
    "process_cpu_s",
    "tree_cpu_s",
]

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""``/proc`` counts CPU time in clock ticks (USER_HZ, 100 per second on Linux)."""


@final
@dataclass(frozen=True, slots=True)
class MachineCpu:
    """The first line of ``/proc/stat``: CPU time of all CPUs since boot, in seconds."""

    busy_s: float
    """user + nice + system + irq + softirq (guest time is inside user)."""
    idle_s: float
    """idle + iowait."""
    steal_s: float


def machine_cpu(path: str = "/proc/stat") -> MachineCpu | None:
    try:
        with open(path, encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    ticks = [int(v) for v in fields[1:]] + [0] * 10
    user, nice, system, idle, iowait, irq, softirq, steal = ticks[:8]
    return MachineCpu(
        busy_s=(user + nice + system + irq + softirq) / CLOCK_TICKS,
        idle_s=(idle + iowait) / CLOCK_TICKS,
        steal_s=steal / CLOCK_TICKS,
    )


def descendant_pids(root_pid: int, proc: str = "/proc") -> set[int]:
    """PIDs of every live descendant of ``root_pid`` (empty where ``/proc`` is absent).

    Follows ``/proc/PID/task/TID/children`` where the kernel has it (cheap: no scan of
    every process); otherwise scans every ``/proc/PID/stat`` for parent links once.
    """
    if os.path.exists(f"{proc}/{root_pid}/task/{root_pid}/children"):
        return _descendants_by_children_files(root_pid, proc)
    return _descendants_by_scan(root_pid, proc)


def _descendants_by_children_files(root_pid: int, proc: str) -> set[int]:
    found: set[int] = set()
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        try:
            tasks = os.listdir(f"{proc}/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"{proc}/{pid}/task/{task}/children", encoding="ascii") as f:
                    children = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return found


def _descendants_by_scan(root_pid: int, proc: str) -> set[int]:
    try:
        entries = os.listdir(proc)
    except OSError:
        return set()
    children: dict[int, list[int]] = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found: set[int] = set()
    pending = [root_pid]
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def process_cpu_s(pid: int, proc: str = "/proc") -> float | None:
    """CPU time of ``pid`` and of its children it has reaped (utime + stime + cutime +
    cstime), in seconds; None when the process is gone."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_s(pid: int | None = None, proc: str = "/proc") -> tuple[float, int]:
    """CPU time of this process (all threads, nanosecond clock, plus reaped children) and
    of every live descendant (``/proc``, in ticks): ``(seconds, descendants)``.

    ``pid`` other than this process reads that process from ``/proc`` too.
    """
    import resource
    import time

    me = os.getpid()
    root = me if pid is None else pid
    if root == me:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        total = time.process_time() + children.ru_utime + children.ru_stime
    else:
        total = process_cpu_s(root, proc) or 0.0
    descendants = descendant_pids(root, proc)
    total += sum(process_cpu_s(d, proc) or 0.0 for d in descendants)
    return total, len(descendants)
