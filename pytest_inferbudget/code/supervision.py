"""Supervise one child process from the parent: limits, its process group, the clock, the reap.

The child gets rlimits (set in ``preexec_fn``), its own session (so it leads a process group),
an empty environment and ``/dev/null`` as stdin. The parent drains its stdout, stderr and result
pipe concurrently (keeping only bounded parts), kills the whole group with ``os.killpg`` at the
wall limit, and reaps it with ``os.wait4``, whose rusage gives the CPU time of the child and
every descendant it reaped: a clock inside the child is never trusted.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, final

from pytest_inferbudget.errors import SandboxError

__all__ = [
    "Finished",
    "group_alive",
    "namespace_alive",
    "namespace_gone",
    "rlimits",
    "run_supervised",
]

_GRACE_SECONDS: Final = 0.25
"""How long to keep reading pipes after the child is gone, for data still in flight."""

_GROUP_GONE_SECONDS: Final = 2.0
"""How long to wait for the killed process group to disappear before reporting leftovers."""


def rlimits(
    *,
    cpu_seconds: float,
    memory_bytes: int,
    file_bytes: int,
    open_files: int,
    processes: int | None,
) -> Callable[[], None]:
    """The ``preexec_fn``: only lowers limits, clamped to the current hard limits (computed
    here in the parent, so the child after ``fork`` only calls ``setrlimit``)."""
    cpu = max(1, math.ceil(cpu_seconds))
    wanted: list[tuple[int, int, int]] = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, memory_bytes, memory_bytes),
        (resource.RLIMIT_FSIZE, file_bytes, file_bytes),
        (resource.RLIMIT_NOFILE, open_files, open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if processes is not None:
        wanted.append((resource.RLIMIT_NPROC, processes, processes))
    plan: list[tuple[int, tuple[int, int]]] = []
    for which, soft, hard in wanted:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        plan.append((which, (soft, hard)))

    def apply() -> None:
        for which, pair in plan:
            resource.setrlimit(which, pair)

    return apply


@dataclass(slots=True)
class _Streams:
    stdout: bytearray
    stderr: bytearray
    result: bytearray
    output_cap: int
    result_cap: int
    result_overflow: bool = False

    def add(self, name: str, chunk: bytes) -> None:
        if name == "stdout":
            room = self.output_cap - len(self.stdout)
            if room > 0:
                self.stdout += chunk[:room]
        elif name == "stderr":
            self.stderr += chunk
            if len(self.stderr) > 2 * self.output_cap:
                del self.stderr[: len(self.stderr) - self.output_cap]
        else:
            room = self.result_cap - len(self.result)
            if len(chunk) > room:
                self.result_overflow = True
            self.result += chunk[: max(0, room)]


def _has_exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its pid, and so its process-group
    id, stays reserved until ``wait4``)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, read from ``/proc`` (empty without procfs)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(pid: int) -> None:
    """SIGKILL the child's descendants, then its process group. A sandbox's first process
    may sit in a session of its own (bubblewrap's ``--new-session``) and lose its
    parent-death signal when it changes uid; as the PID 1 of its namespace, killing it takes
    every process of the namespace along."""
    for descendant in _descendants(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(descendant, signal.SIGKILL)
    _kill_group(pid)


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count: a killed
    grandchild orphaned to the system's init waits there to be reaped, on init's
    schedule, but can no longer run anything."""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: any member, zombie or not, counts
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def namespace_alive(pid_namespace: str) -> bool:
    """Whether a live (not zombie) process of the PID namespace ``pid_namespace``
    (``"pid:[inode]"``, as ``/proc/self/ns/pid`` reads inside it) is left on this machine.
    Such a process may have left the child's process group (``setsid()``); it cannot leave
    its PID namespace."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != pid_namespace:
                continue
            with open(f"/proc/{entry}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # exited meanwhile, or not ours to inspect
        if state not in (b"Z", b"X"):
            return True
    return False


def namespace_gone(pid_namespace: str, timeout_s: float = _GROUP_GONE_SECONDS) -> bool:
    """Wait up to ``timeout_s`` for every process of ``pid_namespace`` to end."""
    deadline = time.monotonic() + timeout_s
    while namespace_alive(pid_namespace):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def _read_chunk(fd: int) -> bytes | None:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None


def _pump(
    sel: selectors.BaseSelector, streams: _Streams, deadline: float, stop: Callable[[], bool]
) -> bool:
    """Read what the registered pipes offer until ``stop()`` or the deadline; ``True`` when
    the deadline passed first."""
    while True:
        if stop():
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        for key, _ in sel.select(min(remaining, 0.01)):
            if key.data == "exit":
                continue
            fd = int(key.fd)
            chunk = _read_chunk(fd)
            if chunk is None:
                continue
            if not chunk:
                sel.unregister(fd)
                continue
            streams.add(str(key.data), chunk)
        if streams.result_overflow:
            return False


@final
@dataclass(frozen=True, slots=True)
class Finished:
    """A child that ended (or was killed) and was reaped, with what it wrote."""

    exit_code: int
    """As ``Popen.returncode``: negative when killed by that signal."""
    cpu_seconds: float
    """``ru_utime + ru_stime`` from ``os.wait4``: the child and its reaped descendants."""
    wall_seconds: float
    """From just before the spawn to the reap."""
    max_rss_kb: int
    killed: bool
    """The wall limit passed and the parent killed the process group."""
    result: bytes
    """What the child wrote to the result pipe, at most ``result_bytes``."""
    result_overflow: bool
    """The child wrote more than ``result_bytes`` to the result pipe before it ended."""
    stdout: bytes
    """The start of stdout, at most ``output_bytes``."""
    stderr: bytes
    """The end of stderr, at least ``output_bytes`` of it when there was that much."""
    pid: int
    """The child's pid, also its process-group id."""
    group_reaped: bool
    """No live process of the group was left at the end."""


def run_supervised(
    argv: Sequence[str],
    *,
    cwd: str,
    preexec: Callable[[], None],
    wall_seconds: float,
    output_bytes: int,
    result_bytes: int,
    pass_fds: Sequence[int] = (),
) -> Finished:
    """Start ``argv`` plus the number of the result pipe's write end as its last argument, in a
    new session with an empty environment, and supervise it to its end (see the module
    docstring); ``pass_fds`` are inherited too (a launcher's job files). Raises
    :class:`SandboxError` when it cannot start."""
    read_fd, write_fd = os.pipe()
    try:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [*argv, str(write_fd)],
                cwd=cwd,
                env={},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd, *pass_fds),
                start_new_session=True,
                preexec_fn=preexec,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(f"cannot start the sandboxed interpreter: {exc}") from exc
        finally:
            os.close(write_fd)
        return _supervise(
            proc,
            read_fd,
            started=started,
            wall_seconds=wall_seconds,
            output_bytes=output_bytes,
            result_bytes=result_bytes,
        )
    finally:
        os.close(read_fd)


def _supervise(
    proc: subprocess.Popen[bytes],
    read_fd: int,
    *,
    started: float,
    wall_seconds: float,
    output_bytes: int,
    result_bytes: int,
) -> Finished:
    if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE was asked
        raise SandboxError("the child's pipes are missing")
    pid = proc.pid
    streams = _Streams(bytearray(), bytearray(), bytearray(), output_bytes, result_bytes)
    sel = selectors.DefaultSelector()
    pidfd: int | None = None
    try:
        for fd, name in (
            (proc.stdout.fileno(), "stdout"),
            (proc.stderr.fileno(), "stderr"),
            (read_fd, "result"),
        ):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, name)
        try:
            pidfd = os.pidfd_open(pid)
            sel.register(pidfd, selectors.EVENT_READ, "exit")
        except (AttributeError, OSError):
            pidfd = None
        killed = _pump(sel, streams, started + wall_seconds, lambda: _has_exited(pid))
        overflow = streams.result_overflow
        # The child is exited or still running, but not reaped: its pid still names the
        # process group, so killing the group cannot hit a recycled pid.
        if killed or overflow:
            _kill_tree(pid)
        else:
            _kill_group(pid)
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if pidfd is not None:
            sel.unregister(pidfd)
            os.close(pidfd)
            pidfd = None
        _pump(sel, streams, time.monotonic() + _GRACE_SECONDS, lambda: not sel.get_map())
        reaped = _group_gone(pid, _GROUP_GONE_SECONDS)
    finally:
        if pidfd is not None:
            os.close(pidfd)
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode is None:
            _kill_tree(pid)
            proc.wait()
    return Finished(
        exit_code=proc.returncode,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        wall_seconds=wall,
        max_rss_kb=int(usage.ru_maxrss),
        killed=killed,
        result=bytes(streams.result),
        result_overflow=overflow,
        stdout=bytes(streams.stdout),
        stderr=bytes(streams.stderr),
        pid=pid,
        group_reaped=reaped,
    )
