"""Run untrusted generated code in a contained child process, and time it from the parent.

What one call to :func:`run_candidate` does:

- A fresh temporary working directory holds ``input.json`` (the source, the entry point and
  the tests' arguments, never the expected answers); it is removed afterwards.
- The child is ``python -I -S -c <harness>`` (isolated mode, no site-packages, no current
  directory on ``sys.path``) started with ``start_new_session=True``, an empty environment,
  stdin from ``/dev/null``, and, set in ``preexec_fn``, rlimits on CPU time, address space,
  file size, open files and core dumps (0), plus process count when it runs unprivileged.
- Where ``unshare`` allows (probed once per interpreter, see :func:`probe_isolation`), the
  child runs in new network, PID and mount namespaces with a private ``/proc``: no network
  (only a down loopback), no view of other processes and their environments, and every
  process the candidate forks dies with it. As root and with an interpreter that uid 65534
  can run, it also drops to that uid.
- The harness writes a header (network namespace, pid, uid) before any candidate code runs,
  then one JSON line per test with the *return value*; the parent compares values with the
  expected answers, so a candidate can forge nothing but its own answers.
- The parent enforces the wall limit, kills the whole process group with ``os.killpg``,
  reaps the child and reads its CPU time (``ru_utime + ru_stime``) from ``os.wait4``'s
  rusage, which includes every descendant the child reaped; a clock inside the child is
  never trusted.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import math
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, final

from pytest_inferbudget.code.task import TestCase
from pytest_inferbudget.errors import SandboxError

__all__ = [
    "ExecutionResult",
    "Executor",
    "Isolation",
    "Outcome",
    "SandboxError",
    "probe_isolation",
    "run_candidate",
]

UNPRIVILEGED_UID: Final = 65534
"""The uid (and gid) a root parent drops the child to, ``nobody`` on most systems."""

_GRACE_SECONDS: Final = 0.25
"""How long to keep reading pipes after the child is gone, for data still in flight."""

_GROUP_GONE_SECONDS: Final = 2.0
"""How long to wait for the killed process group to disappear before reporting leftovers."""

_OUT_OF_MEMORY_SIGNS: Final = ("MemoryError", "Cannot allocate memory", "out of memory")
"""Read in stderr when a child died without a report: the address-space limit can kill
Python outside a catchable ``MemoryError`` (a failed thread start, a C extension). The text
is the candidate's to write, but claiming out-of-memory gains it nothing it could not get by
raising ``MemoryError`` itself, which ENAMEL also treats as out of memory."""

_PROBE: Final = (
    "import json, os\n"
    "print(json.dumps({'netns': os.readlink('/proc/self/ns/net'), 'pid': os.getpid(),"
    " 'uid': os.getuid(), 'groups': os.getgroups()}))\n"
)

# The child's side of the protocol. It runs before any candidate code, keeps its own
# references to what it needs (the candidate may patch modules), and reports only return
# values: the expected answers never leave the parent.
_HARNESS: Final = r"""
import json, os, signal, sys, traceback

_write, _exit, _dumps = os.write, os._exit, json.dumps
_fd = int(sys.argv[1])
_current = [-1]


_mask, _xcpu = signal.pthread_sigmask, {signal.SIGXCPU}


def _emit(fd, text):
    # One record is written whole: the CPU-limit handler must not cut into a line.
    view = memoryview(text.encode("ascii"))
    _mask(signal.SIG_BLOCK, _xcpu)
    try:
        while view:
            view = view[_write(fd, view):]
    finally:
        _mask(signal.SIG_UNBLOCK, _xcpu)


def _finish():
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    _exit(0)


def _error(fd, i, exc):
    if isinstance(exc, MemoryError):
        _emit(fd, '{"kind":"error","i":%d,"error":"MemoryError","message":""}\n' % i)
        return
    try:
        message = str(exc)[:1000]
    except BaseException:
        message = ""
    _emit(fd, _dumps({"kind": "error", "i": i, "error": type(exc).__name__,
                      "message": message}) + "\n")
    try:
        traceback.print_exc()
    except BaseException:
        pass


def _on_cpu_limit(signum, frame):
    # The soft RLIMIT_CPU was reached; the hard limit kills one second later regardless.
    _emit(_fd, '{"kind":"cpu_limit","i":%d}\n' % _current[0])
    _exit(0)


def _main():
    fd = _fd
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    try:
        netns = os.readlink("/proc/self/ns/net")
    except OSError:
        netns = ""
    _emit(fd, _dumps({"kind": "header", "netns": netns, "pid": os.getpid(),
                      "uid": os.getuid()}) + "\n")
    with open("input.json", "rb") as f:
        job = json.loads(f.read())
    os.unlink("input.json")
    sys.set_int_max_str_digits(0)
    source, entry, tests = job["source"], job["entry_point"], job["tests"]
    del job
    namespace = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "<candidate>", "exec"), namespace)
        fn = namespace[entry]
        if not callable(fn):
            raise TypeError("%s is not callable" % entry)
    except BaseException as exc:
        _error(fd, -1, exc)
        _finish()
    for i, args in enumerate(tests):
        _current[0] = i
        try:
            value = fn(*args)
        except BaseException as exc:
            _error(fd, i, exc)
            _finish()
        try:
            text = _dumps(value)
        except BaseException as exc:
            _emit(fd, '{"kind":"unserializable","i":%d,"type":%s}\n'
                  % (i, _dumps(type(value).__name__)))
            continue
        _emit(fd, '{"kind":"result","i":%d,"value":%s}\n' % (i, text))
    _emit(fd, '{"kind":"done"}\n')
    _finish()


_main()
"""


class Outcome(enum.StrEnum):
    """How a child run ended, judged by the parent."""

    OK = "ok"
    """Every test returned the expected value."""
    WRONG_ANSWER = "wrong_answer"
    """A test returned another value (or one that is not JSON)."""
    TIMEOUT = "timeout"
    """Killed at the wall limit, or stopped by the CPU-time limit."""
    MEMORY_ERROR = "memory_error"
    """``MemoryError``, typically the address-space limit."""
    RUNTIME_ERROR = "runtime_error"
    """Any other exception, a crash, an early exit, or a protocol violation."""


@final
@dataclass(frozen=True, slots=True)
class Isolation:
    """What containment a child gets on this machine: the result of :func:`probe_isolation`."""

    prefix: tuple[str, ...]
    """The launcher put before the interpreter (``unshare ...``), empty when none works."""
    network: bool
    """The child gets its own network namespace: no interface but a loopback that is down."""
    pid_namespace: bool
    """The child is PID 1 of its own PID namespace with a private ``/proc``: it sees no other
    process, and all its descendants are killed when it exits."""
    uid: int | None
    """The uid the child runs as when privileges are dropped; ``None``: the parent's uid."""
    note: str
    """Why something is missing ("" when everything works)."""


@final
@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """One child run of a candidate over a sequence of tests, as judged by the parent."""

    outcome: Outcome
    tests_total: int
    tests_passed: int
    """Leading tests that returned the expected value."""
    failed_test: int | None
    """Index of the first test that did not pass; -1 when the source itself failed."""
    cpu_seconds: float
    """``ru_utime + ru_stime`` of the child and its reaped descendants, from ``os.wait4``:
    includes interpreter start-up, which the scorer subtracts with a baseline run."""
    wall_seconds: float
    """Parent-side wall time from spawn to reap."""
    max_rss_kb: int
    """Peak resident set size of the largest process, from rusage."""
    exit_code: int
    """The child's exit code (negative: killed by that signal), as ``Popen.returncode``."""
    killed: bool
    """The parent killed the process group at the wall limit."""
    error_type: str | None
    """Exception class name for errors, else ``None``."""
    detail: str
    """A one-line explanation of the outcome."""
    stdout: str
    """The start of the child's stdout, at most ``output_bytes``."""
    stderr_tail: str
    """The end of the child's stderr, at most ``output_bytes``."""
    network_isolated: bool
    """The child's own header showed a network namespace other than the parent's."""
    isolation_note: str
    """Why network isolation or privilege dropping is missing ("" when all held)."""
    pid: int
    """The child's pid in the parent's namespace, also its process-group id."""
    group_reaped: bool
    """No process of the child's process group was left once this returned."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": str(self.outcome),
            "tests_total": self.tests_total,
            "tests_passed": self.tests_passed,
            "failed_test": self.failed_test,
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "max_rss_kb": self.max_rss_kb,
            "exit_code": self.exit_code,
            "killed": self.killed,
            "error_type": self.error_type,
            "detail": self.detail,
            "stdout": self.stdout,
            "stderr_tail": self.stderr_tail,
            "network_isolated": self.network_isolated,
            "isolation_note": self.isolation_note,
            "pid": self.pid,
            "group_reaped": self.group_reaped,
        }


class Executor(Protocol):
    """What the scorer calls to run code: :func:`run_candidate` or a stand-in with its shape."""

    def __call__(
        self,
        source: str,
        entry_point: str,
        tests: Sequence[TestCase],
        *,
        cpu_seconds: float,
        memory_mb: int,
        wall_seconds: float,
    ) -> ExecutionResult: ...


# --------------------------------------------------------------------------- isolation probe


@functools.cache
def _own_netns() -> str:
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return ""


def _launchers() -> list[tuple[tuple[str, ...], bool, bool, int | None]]:
    """Candidate launchers, strongest first: (prefix, network, pid namespace, uid)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    full = ("--net", "--pid", "--fork", "--kill-child", "--mount-proc")
    if os.geteuid() == 0:
        drop = ("--setuid", str(UNPRIVILEGED_UID), "--setgid", str(UNPRIVILEGED_UID))
        return [
            ((unshare, *full, *drop), True, True, UNPRIVILEGED_UID),
            ((unshare, *full), True, True, None),
            ((unshare, "--net"), True, False, None),
        ]
    user = ("--user", "--map-root-user")
    return [
        ((unshare, *user, *full), True, True, None),
        ((unshare, *user, "--net"), True, False, None),
    ]


@functools.lru_cache(maxsize=1)
def unprivileged_interpreter() -> str | None:
    """As root, the first Python that uid 65534 can run (this interpreter, else the
    system's): pass it as ``python=`` so candidates lose root; None when none can (or we
    are not root)."""
    if os.geteuid() != 0:
        return None
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and probe_isolation(candidate).uid is not None:
            return candidate
    return None


@functools.lru_cache(maxsize=8)
def probe_isolation(python: str | None = None) -> Isolation:
    """Find the strongest launcher that works here for ``python`` (default
    ``sys.executable``), by running a tiny probe under each; cached per interpreter.

    Tried in order: ``unshare --net --pid --fork --kill-child --mount-proc`` (with
    ``--setuid/--setgid 65534`` first when running as root; that needs an interpreter and
    stdlib that uid 65534 can read), then ``--user --map-root-user`` variants for non-root
    users, then ``unshare --net`` alone, then no launcher. The note says what failed.
    """
    interpreter = python or sys.executable
    notes: list[str] = []
    if shutil.which("unshare") is None:
        notes.append("no unshare binary (util-linux): no namespaces")
    own = _own_netns()
    chosen: Isolation | None = None
    for prefix, network, pid_ns, uid in _launchers():
        argv = [*prefix, interpreter, "-I", "-S", "-c", _PROBE]
        label = " ".join(prefix[1:])
        try:
            done = subprocess.run(
                argv,
                env={},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                cwd="/",
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        stderr = done.stderr.decode("utf-8", "replace").strip().splitlines()
        last = f" ({stderr[-1]})" if stderr else ""
        try:
            info = json.loads(done.stdout.decode("utf-8", "replace"))
        except ValueError:
            notes.append(f"{label}: exit {done.returncode}{last}")
            continue
        if not isinstance(info, dict):
            notes.append(f"{label}: unexpected probe output")
            continue
        problems = []
        if done.returncode != 0:
            problems.append(f"exit {done.returncode}")
        if network and (info.get("netns") in ("", own)):
            problems.append("network namespace not new")
        if pid_ns and info.get("pid") != 1:
            problems.append("not PID 1 of a new PID namespace")
        if uid is not None and (info.get("uid") != uid or info.get("groups") not in ([], [uid])):
            problems.append(f"uid {uid} not taken")
        if problems:
            notes.append(f"{label}: {', '.join(problems)}{last}")
            continue
        chosen = Isolation(prefix=prefix, network=network, pid_namespace=pid_ns, uid=uid, note="")
        break
    if chosen is None:
        return Isolation(
            prefix=(),
            network=False,
            pid_namespace=False,
            uid=None,
            note="; ".join(notes) or "no launcher worked",
        )
    missing = []
    if os.geteuid() == 0 and chosen.uid is None:
        missing.append(
            f"runs as root: {interpreter} is not usable by uid {UNPRIVILEGED_UID}, so the "
            "candidate keeps root's file-system access (pass python= an interpreter that "
            "uid can run, e.g. /usr/bin/python3, to drop privileges)"
        )
    if not chosen.pid_namespace:
        missing.append("no PID namespace: a process that calls setsid() can outlive the kill")
    if notes:
        missing.append("tried: " + "; ".join(notes))
    return Isolation(
        prefix=chosen.prefix,
        network=chosen.network,
        pid_namespace=chosen.pid_namespace,
        uid=chosen.uid,
        note="; ".join(missing),
    )


# --------------------------------------------------------------------------- the run


def _limits(
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


def _write_input(workdir: str, source: str, entry_point: str, tests: Sequence[TestCase]) -> None:
    job = {"source": source, "entry_point": entry_point, "tests": [list(t.args) for t in tests]}
    path = os.path.join(workdir, "input.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(job, f)
    os.chmod(path, 0o644)


def _remove_tree(path: str) -> None:
    """Remove the working directory, also after the candidate took the write bit off its
    subdirectories (which stops a non-root parent, not root)."""
    try:
        shutil.rmtree(path)
    except OSError:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        for root, dirs, _files in os.walk(path):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, name), 0o700)
        shutil.rmtree(path, ignore_errors=True)


def run_candidate(
    source: str,
    entry_point: str,
    tests: Sequence[TestCase],
    *,
    cpu_seconds: float,
    memory_mb: int,
    wall_seconds: float,
    file_size_mb: int = 16,
    open_files: int = 64,
    max_processes: int = 64,
    output_bytes: int = 64 * 1024,
    result_bytes: int = 64 * 1024 * 1024,
    python: str | None = None,
    isolate: bool = True,
) -> ExecutionResult:
    """Run ``entry_point(*test.args)`` of ``source`` for every test, in order, in one
    contained child process, and judge the answers in this process.

    Limits: ``cpu_seconds`` (RLIMIT_CPU, whole seconds, rounded up), ``memory_mb``
    (RLIMIT_AS of each process), ``wall_seconds`` (then the whole process group is killed),
    ``file_size_mb`` (RLIMIT_FSIZE), ``open_files`` (RLIMIT_NOFILE), ``max_processes``
    (RLIMIT_NPROC, only applied when the child runs as an unprivileged uid: the kernel does
    not apply it to root), core dumps off. ``output_bytes`` caps what is kept of stdout (its
    start) and stderr (its end); ``result_bytes`` caps the reported answers. ``isolate=False``
    skips namespaces (for debugging); ``python`` picks the child's interpreter.

    The tests stop at the first exception. A test is judged in order: a wrong answer before a
    crash or a timeout makes the run a wrong answer, as sequential execution would.
    Raises :class:`SandboxError` when the child never got to run candidate code.
    """
    _check_positive("cpu_seconds", cpu_seconds)
    _check_positive("wall_seconds", wall_seconds)
    for name, value in (
        ("memory_mb", memory_mb),
        ("file_size_mb", file_size_mb),
        ("open_files", open_files),
        ("max_processes", max_processes),
        ("output_bytes", output_bytes),
        ("result_bytes", result_bytes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if memory_mb < 32:
        raise ValueError(f"memory_mb must be >= 32 (Python itself needs some), got {memory_mb}")
    if not isinstance(entry_point, str) or not entry_point.isidentifier():
        raise ValueError(f"entry_point must be a Python identifier, got {entry_point!r}")
    tests = tuple(tests)
    if not all(isinstance(t, TestCase) for t in tests):
        raise TypeError("tests must be TestCase objects (pytest_inferbudget.code.TestCase)")
    interpreter = python or sys.executable
    iso = (
        probe_isolation(python)
        if isolate
        else Isolation(
            prefix=(),
            network=False,
            pid_namespace=False,
            uid=None,
            note="isolation switched off (isolate=False)",
        )
    )
    argv = [*iso.prefix, interpreter, "-I", "-S", "-c", _HARNESS]
    preexec = _limits(
        cpu_seconds=cpu_seconds,
        memory_bytes=memory_mb * 1024 * 1024,
        file_bytes=file_size_mb * 1024 * 1024,
        open_files=open_files,
        processes=max_processes if iso.uid is not None else None,
    )
    workdir = tempfile.mkdtemp(prefix="inferbudget-code-")
    try:
        _write_input(workdir, source, entry_point, tests)
        if iso.uid is not None:
            os.chown(workdir, iso.uid, iso.uid)
        read_fd, write_fd = os.pipe()
        try:
            started = time.monotonic()
            try:
                proc = subprocess.Popen(
                    [*argv, str(write_fd)],
                    cwd=workdir,
                    env={},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=(write_fd,),
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
                tests,
                iso,
                started=started,
                wall_seconds=wall_seconds,
                cpu_seconds=cpu_seconds,
                output_bytes=output_bytes,
                result_bytes=result_bytes,
            )
        finally:
            os.close(read_fd)
    finally:
        _remove_tree(workdir)


def _check_positive(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")


def _supervise(
    proc: subprocess.Popen[bytes],
    read_fd: int,
    tests: tuple[TestCase, ...],
    iso: Isolation,
    *,
    started: float,
    wall_seconds: float,
    cpu_seconds: float,
    output_bytes: int,
    result_bytes: int,
) -> ExecutionResult:
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
            _kill_group(pid)
            proc.wait()
    cpu = usage.ru_utime + usage.ru_stime
    records = _Records.parse(bytes(streams.result))
    if records.header is None:
        raise SandboxError(
            f"the sandboxed interpreter never reported (exit code {proc.returncode}, "
            f"killed={killed}); stderr: {_tail_text(streams.stderr, 500)!r}"
        )
    netns = records.header.get("netns")
    network_isolated = iso.network and isinstance(netns, str) and netns not in ("", _own_netns())
    note = iso.note
    if iso.network and not network_isolated:
        note = "; ".join(filter(None, [note, "the child's network namespace was the parent's"]))
    # The harness reports the soft CPU limit (SIGXCPU) itself; this catches the hard limit's
    # SIGKILL, judged with slack because this clock and the kernel's limit can differ by a
    # quarter (seen on a VM with paravirtual steal-time accounting).
    cpu_limited = cpu >= 0.7 * max(1, math.ceil(cpu_seconds))
    outcome, failed, passed, error_type, detail = _judge(
        records,
        tests,
        killed=killed,
        cpu_limited=cpu_limited,
        overflow=overflow,
        exit_code=proc.returncode,
        stderr_tail=_tail_text(streams.stderr, 4096),
        wall_seconds=wall_seconds,
        result_bytes=result_bytes,
    )
    return ExecutionResult(
        outcome=outcome,
        tests_total=len(tests),
        tests_passed=passed,
        failed_test=failed,
        cpu_seconds=cpu,
        wall_seconds=wall,
        max_rss_kb=int(usage.ru_maxrss),
        exit_code=proc.returncode,
        killed=killed,
        error_type=error_type,
        detail=detail,
        stdout=bytes(streams.stdout).decode("utf-8", "replace"),
        stderr_tail=_tail_text(streams.stderr, output_bytes),
        network_isolated=network_isolated,
        isolation_note=note,
        pid=pid,
        group_reaped=reaped,
    )


def _tail_text(data: bytes | bytearray, limit: int) -> str:
    return bytes(data[-limit:]).decode("utf-8", "replace")


@dataclass(slots=True)
class _Records:
    header: dict[str, Any] | None
    by_test: dict[int, dict[str, Any]]
    done: bool
    problem: str | None

    @classmethod
    def parse(cls, data: bytes) -> _Records:
        header: dict[str, Any] | None = None
        by_test: dict[int, dict[str, Any]] = {}
        done = False
        problem: str | None = None
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for n, line in enumerate(lines):
            try:
                record = json.loads(line)
            except ValueError:
                problem = problem or f"line {n} of the result stream is not JSON"
                continue
            kind = record.get("kind") if isinstance(record, dict) else None
            if n == 0:
                if kind == "header":
                    header = record
                else:
                    problem = problem or "the result stream does not start with a header"
                continue
            index = record.get("i") if isinstance(record, dict) else None
            if kind == "done":
                done = True
            elif kind in ("result", "unserializable", "error", "cpu_limit") and isinstance(
                index, int
            ):
                if index in by_test:
                    problem = problem or f"test {index} was reported twice"
                else:
                    by_test[index] = record
            else:
                problem = problem or f"line {n} of the result stream is not a known record"
        return cls(header=header, by_test=by_test, done=done, problem=problem)


def _judge(
    records: _Records,
    tests: tuple[TestCase, ...],
    *,
    killed: bool,
    cpu_limited: bool,
    overflow: bool,
    exit_code: int,
    stderr_tail: str,
    wall_seconds: float,
    result_bytes: int,
) -> tuple[Outcome, int | None, int, str | None, str]:
    """(outcome, failed test, tests passed, error type, detail), test by test in order."""
    if records.problem is not None:
        return Outcome.RUNTIME_ERROR, None, 0, None, f"protocol violation: {records.problem}"
    if overflow:
        return (Outcome.RUNTIME_ERROR, None, 0, None, f"the answers exceeded {result_bytes} bytes")
    load = records.by_test.get(-1)
    if load is not None:
        return _error_outcome(load, -1, 0)
    for i, case in enumerate(tests):
        record = records.by_test.get(i)
        if record is None:
            if killed:
                return (
                    Outcome.TIMEOUT,
                    i,
                    i,
                    None,
                    f"killed at the wall limit of {wall_seconds:.3g} s during test {i}",
                )
            if cpu_limited:
                return Outcome.TIMEOUT, i, i, None, f"stopped by the CPU-time limit in test {i}"
            if any(sign in stderr_tail for sign in _OUT_OF_MEMORY_SIGNS):
                return (
                    Outcome.MEMORY_ERROR,
                    i,
                    i,
                    None,
                    f"the child ran out of memory in test {i} (exit code {exit_code})",
                )
            return (
                Outcome.RUNTIME_ERROR,
                i,
                i,
                None,
                f"the child ended (exit code {exit_code}) without reporting test {i}",
            )
        kind = record["kind"]
        if kind in ("error", "cpu_limit"):
            return _error_outcome(record, i, i)
        if kind == "unserializable":
            return (
                Outcome.WRONG_ANSWER,
                i,
                i,
                None,
                f"test {i} returned a {record.get('type')!s}, which is not JSON",
            )
        if not case.check(record.get("value")):
            return Outcome.WRONG_ANSWER, i, i, None, f"test {i} returned a wrong answer"
    if killed:
        return (
            Outcome.TIMEOUT,
            None,
            len(tests),
            None,
            f"answered every test but was still running at the wall limit of {wall_seconds:.3g} s",
        )
    return Outcome.OK, None, len(tests), None, "every test passed"


def _error_outcome(
    record: dict[str, Any], index: int, passed: int
) -> tuple[Outcome, int | None, int, str | None, str]:
    where = "loading the source" if index < 0 else f"test {index}"
    if record["kind"] == "cpu_limit":
        return Outcome.TIMEOUT, index, passed, None, f"stopped by the CPU-time limit in {where}"
    error = str(record.get("error", "Exception"))
    message = str(record.get("message", ""))
    outcome = Outcome.MEMORY_ERROR if error == "MemoryError" else Outcome.RUNTIME_ERROR
    text = f"{error} in {where}" + (f": {message}" if message else "")
    return outcome, index, passed, error, text
