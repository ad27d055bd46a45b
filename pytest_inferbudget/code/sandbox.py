"""Run untrusted generated code in a contained child process, and time it from the parent.

What one call to :func:`run_candidate` does:

- It takes the containment probed for this interpreter (:mod:`~pytest_inferbudget.code.
  isolation`): bubblewrap by default (:mod:`~pytest_inferbudget.code.bwrap`), else the
  ``unshare`` recipe (:mod:`~pytest_inferbudget.code.unshare`), else it refuses with
  :class:`SandboxError` naming the fix, unless the caller asked for ``sandbox="none"``.
- The job (the source, the entry point and the tests' arguments, never the expected answers)
  and a copy of the child harness (:mod:`~pytest_inferbudget.code.harness`) travel in memory
  files into the sandbox's private tmpfs working directory; the harness deletes both before
  any candidate code runs. Nothing of a contained run is written to the host's disk, and the
  tmpfs mounts vanish with the sandbox. Uncontained (``none``), they lie in a host temporary
  directory that is removed afterwards.
- The child is ``python -I -S harness.py <fd>`` (isolated mode, no site-packages, no current
  directory on ``sys.path``), supervised by :mod:`~pytest_inferbudget.code.supervision`: its
  own session, an empty environment, rlimits, the wall-clock kill of its process group, and
  CPU time from ``os.wait4``; afterwards the parent checks that no process of the sandbox's
  PID namespace is left.
- The harness reports return values only; the parent judges them
  (:mod:`~pytest_inferbudget.code.protocol`), so a candidate can forge nothing but its own
  answers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, final

from pytest_inferbudget.code.isolation import (
    HARNESS_PATH,
    UNPRIVILEGED_UID,
    Isolation,
    no_isolation,
    own_namespace,
    own_netns,
    probe_isolation,
    require_containment,
    run_contained,
    unprivileged_interpreter,
)
from pytest_inferbudget.code.launch import Containment, SandboxChoice, Space
from pytest_inferbudget.code.protocol import Records, judge
from pytest_inferbudget.code.results import ExecutionResult, Executor, Outcome
from pytest_inferbudget.code.supervision import (
    Finished,
    group_alive,
    namespace_gone,
    rlimits,
    run_supervised,
)
from pytest_inferbudget.code.task import TestCase
from pytest_inferbudget.errors import SandboxError

__all__ = [
    "HARNESS_PATH",
    "UNPRIVILEGED_UID",
    "Containment",
    "ExecutionResult",
    "Executor",
    "Isolation",
    "Outcome",
    "SandboxChoice",
    "SandboxError",
    "Sandboxed",
    "group_alive",
    "probe_isolation",
    "run_candidate",
    "unprivileged_interpreter",
]

_HARNESS_NAME: Final = "harness.py"


def _prepare(workdir: str, job: bytes) -> str:
    """Write the job and a copy of the harness into ``workdir``; return the harness's path."""
    path = os.path.join(workdir, "input.json")
    with open(path, "wb") as f:
        f.write(job)
    os.chmod(path, 0o644)
    harness = os.path.join(workdir, _HARNESS_NAME)
    shutil.copyfile(HARNESS_PATH, harness)
    os.chmod(harness, 0o444)
    return harness


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
    disk_mb: int = 64,
    open_files: int = 64,
    max_processes: int = 64,
    output_bytes: int = 64 * 1024,
    result_bytes: int = 64 * 1024 * 1024,
    python: str | None = None,
    sandbox: SandboxChoice | str = SandboxChoice.AUTO,
    isolate: bool = True,
) -> ExecutionResult:
    """Run ``entry_point(*test.args)`` of ``source`` for every test, in order, in one
    contained child process, and judge the answers in this process.

    Containment (``sandbox``): ``auto`` takes bubblewrap where it works, else the ``unshare``
    recipe, else refuses with :class:`SandboxError`; ``bwrap`` and ``unshare`` take that one
    or refuse; ``none`` runs the child uncontained, on purpose (``isolate=False`` is the
    same). The result's ``containment`` says which ran.

    Limits: ``cpu_seconds`` (RLIMIT_CPU, whole seconds, rounded up), ``memory_mb``
    (RLIMIT_AS of each process), ``wall_seconds`` (then the whole process group, and with it
    the sandbox's PID namespace, is killed), ``file_size_mb`` (RLIMIT_FSIZE), ``disk_mb``
    (the size of each private tmpfs, ``/tmp`` with the working directory and ``/dev/shm``:
    what the run may write in all; nothing reaches the host's disk), ``open_files``
    (RLIMIT_NOFILE), ``max_processes`` (RLIMIT_NPROC, applied where the kernel sees uid 65534:
    it does not bind root, nor a user namespace's mapped caller), core dumps off.
    ``output_bytes`` caps what is kept of stdout (its start) and stderr (its end);
    ``result_bytes`` caps the reported answers. ``python`` picks the child's interpreter.

    The tests stop at the first exception. A test is judged in order: a wrong answer before a
    crash or a timeout makes the run a wrong answer, as sequential execution would.
    Raises :class:`SandboxError` when nothing can contain the child (and ``sandbox`` is not
    ``none``), or when the child never got to run candidate code.
    """
    _check_positive("cpu_seconds", cpu_seconds)
    _check_positive("wall_seconds", wall_seconds)
    for name, value in (
        ("memory_mb", memory_mb),
        ("file_size_mb", file_size_mb),
        ("disk_mb", disk_mb),
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
    choice = _choice(sandbox, isolate)
    tests = tuple(tests)
    if not all(isinstance(t, TestCase) for t in tests):
        raise TypeError("tests must be TestCase objects (pytest_inferbudget.code.TestCase)")
    job = json.dumps(
        {"source": source, "entry_point": entry_point, "tests": [list(t.args) for t in tests]}
    ).encode("utf-8")
    if len(job) >= min(file_size_mb, disk_mb) << 20:
        raise ValueError(
            f"the job ({len(job)} bytes of source and arguments) does not fit "
            f"file_size_mb={file_size_mb} and disk_mb={disk_mb}; raise them"
        )
    iso = (
        probe_isolation(python, str(choice))
        if choice is not SandboxChoice.NONE
        else no_isolation("containment switched off (sandbox='none')")
    )
    require_containment(iso, str(choice))
    limits = {
        "cpu_seconds": cpu_seconds,
        "memory_bytes": memory_mb << 20,
        "file_bytes": file_size_mb << 20,
        "open_files": open_files,
    }
    if iso.containment is Containment.NONE:
        finished = _run_uncontained(
            python or sys.executable,
            job,
            limits,
            wall_seconds=wall_seconds,
            output_bytes=output_bytes,
            result_bytes=result_bytes,
        )
    else:
        finished = run_contained(
            iso,
            job,
            Space(tmp_bytes=disk_mb << 20, shm_bytes=disk_mb << 20),
            cpu_seconds=cpu_seconds,
            memory_bytes=memory_mb << 20,
            file_bytes=file_size_mb << 20,
            open_files=open_files,
            processes=max_processes,
            wall_seconds=wall_seconds,
            output_bytes=output_bytes,
            result_bytes=result_bytes,
        )
    return _result(
        finished,
        tests,
        iso,
        wall_seconds=wall_seconds,
        cpu_seconds=cpu_seconds,
        output_bytes=output_bytes,
        result_bytes=result_bytes,
    )


def _choice(sandbox: SandboxChoice | str, isolate: bool) -> SandboxChoice:
    try:
        choice = SandboxChoice(sandbox)
    except ValueError:
        known = ", ".join(c.value for c in SandboxChoice)
        raise ValueError(f"sandbox must be one of {known}, got {sandbox!r}") from None
    return choice if isolate else SandboxChoice.NONE


def _run_uncontained(
    python: str,
    job: bytes,
    limits: dict[str, int | float],
    *,
    wall_seconds: float,
    output_bytes: int,
    result_bytes: int,
) -> Finished:
    """``sandbox="none"``: the child in a host temporary directory, rlimits only."""
    preexec = rlimits(
        cpu_seconds=float(limits["cpu_seconds"]),
        memory_bytes=int(limits["memory_bytes"]),
        file_bytes=int(limits["file_bytes"]),
        open_files=int(limits["open_files"]),
        processes=None,
    )
    workdir = tempfile.mkdtemp(prefix="inferbudget-code-")
    try:
        harness = _prepare(workdir, job)
        return run_supervised(
            [python, "-I", "-S", harness],
            cwd=workdir,
            preexec=preexec,
            wall_seconds=wall_seconds,
            output_bytes=output_bytes,
            result_bytes=result_bytes,
        )
    finally:
        _remove_tree(workdir)


@final
@dataclass(frozen=True, slots=True)
class Sandboxed:
    """An :class:`Executor` that runs :func:`run_candidate` with a fixed ``sandbox`` choice
    and interpreter; equal settings make equal (and equally hashed) executors, so scoring's
    reference cache reuses one measurement per choice."""

    sandbox: SandboxChoice = SandboxChoice.AUTO
    python: str | None = None

    def __call__(
        self,
        source: str,
        entry_point: str,
        tests: Sequence[TestCase],
        *,
        cpu_seconds: float,
        memory_mb: int,
        wall_seconds: float,
    ) -> ExecutionResult:
        return run_candidate(
            source,
            entry_point,
            tests,
            cpu_seconds=cpu_seconds,
            memory_mb=memory_mb,
            wall_seconds=wall_seconds,
            python=self.python,
            sandbox=self.sandbox,
        )


def _result(
    finished: Finished,
    tests: tuple[TestCase, ...],
    iso: Isolation,
    *,
    wall_seconds: float,
    cpu_seconds: float,
    output_bytes: int,
    result_bytes: int,
) -> ExecutionResult:
    """Judge what the supervised child left and say how well it was contained."""
    records = Records.parse(finished.result)
    if records.header is None:
        raise SandboxError(
            f"the sandboxed interpreter never reported (exit code {finished.exit_code}, "
            f"killed={finished.killed}); stderr: {_tail_text(finished.stderr, 500)!r}"
        )
    netns = records.header.get("netns")
    network_isolated = iso.network and isinstance(netns, str) and netns not in ("", own_netns())
    note = iso.note
    if iso.network and not network_isolated:
        note = "; ".join(filter(None, [note, "the child's network namespace was the parent's"]))
    pidns = records.header.get("pidns")
    reaped = finished.group_reaped
    if isinstance(pidns, str) and pidns not in ("", own_namespace("pid")):
        reaped = namespace_gone(pidns) and reaped
    # The harness reports the soft CPU limit (SIGXCPU) itself; this catches the hard limit's
    # SIGKILL, judged with slack because this clock and the kernel's limit can differ by a
    # quarter (seen on a VM with paravirtual steal-time accounting).
    cpu_limited = finished.cpu_seconds >= 0.7 * max(1, math.ceil(cpu_seconds))
    verdict = judge(
        records,
        tests,
        killed=finished.killed,
        cpu_limited=cpu_limited,
        overflow=finished.result_overflow,
        exit_code=finished.exit_code,
        stderr_tail=_tail_text(finished.stderr, 4096),
        wall_seconds=wall_seconds,
        result_bytes=result_bytes,
    )
    return ExecutionResult(
        outcome=verdict.outcome,
        tests_total=len(tests),
        tests_passed=verdict.tests_passed,
        failed_test=verdict.failed_test,
        cpu_seconds=finished.cpu_seconds,
        wall_seconds=finished.wall_seconds,
        max_rss_kb=finished.max_rss_kb,
        exit_code=finished.exit_code,
        killed=finished.killed,
        error_type=verdict.error_type,
        detail=verdict.detail,
        stdout=finished.stdout.decode("utf-8", "replace"),
        stderr_tail=_tail_text(finished.stderr, output_bytes),
        network_isolated=network_isolated,
        isolation_note=note,
        pid=finished.pid,
        group_reaped=reaped,
        containment=iso.containment,
    )


def _tail_text(data: bytes, limit: int) -> str:
    return data[-limit:].decode("utf-8", "replace")


def _check_positive(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
