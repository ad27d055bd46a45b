"""Run untrusted generated code in a contained child process, and time it from the parent.

What one call to :func:`run_candidate` does:

- A fresh temporary working directory holds ``input.json`` (the source, the entry point and
  the tests' arguments, never the expected answers) and a copy of the child harness
  (:mod:`~pytest_inferbudget.code.harness`, copied so that an unprivileged uid can read it
  wherever the package lies); both are deleted by the harness before any candidate code runs,
  and the directory is removed afterwards.
- The child is ``python -I -S harness.py <fd>`` (isolated mode, no site-packages, no current
  directory on ``sys.path``), supervised by :mod:`~pytest_inferbudget.code.supervision`: its
  own session, an empty environment, rlimits, the wall-clock kill of its process group, and
  CPU time from ``os.wait4``.
- Where ``unshare`` allows (:mod:`~pytest_inferbudget.code.isolation`), it runs in new
  network, PID and mount namespaces, as uid 65534 when root has an interpreter that uid can run.
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
from pathlib import Path
from typing import Final

from pytest_inferbudget.code.isolation import (
    UNPRIVILEGED_UID,
    Isolation,
    no_isolation,
    own_netns,
    probe_isolation,
    unprivileged_interpreter,
)
from pytest_inferbudget.code.protocol import Records, judge
from pytest_inferbudget.code.results import ExecutionResult, Executor, Outcome
from pytest_inferbudget.code.supervision import Finished, group_alive, rlimits, run_supervised
from pytest_inferbudget.code.task import TestCase
from pytest_inferbudget.errors import SandboxError

__all__ = [
    "HARNESS_PATH",
    "UNPRIVILEGED_UID",
    "ExecutionResult",
    "Executor",
    "Isolation",
    "Outcome",
    "SandboxError",
    "group_alive",
    "probe_isolation",
    "run_candidate",
    "unprivileged_interpreter",
]

HARNESS_PATH: Final = Path(__file__).with_name("harness.py")
"""The child harness, copied into each run's working directory."""

_HARNESS_NAME: Final = "harness.py"


def _prepare(workdir: str, source: str, entry_point: str, tests: Sequence[TestCase]) -> str:
    """Write the job and a copy of the harness into ``workdir``; return the harness's path."""
    job = {"source": source, "entry_point": entry_point, "tests": [list(t.args) for t in tests]}
    path = os.path.join(workdir, "input.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(job, f)
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
        else no_isolation("isolation switched off (isolate=False)")
    )
    preexec = rlimits(
        cpu_seconds=cpu_seconds,
        memory_bytes=memory_mb * 1024 * 1024,
        file_bytes=file_size_mb * 1024 * 1024,
        open_files=open_files,
        processes=max_processes if iso.uid is not None else None,
    )
    workdir = tempfile.mkdtemp(prefix="inferbudget-code-")
    try:
        harness = _prepare(workdir, source, entry_point, tests)
        if iso.uid is not None:
            os.chown(workdir, iso.uid, iso.uid)
        finished = run_supervised(
            [*iso.prefix, interpreter, "-I", "-S", harness],
            cwd=workdir,
            preexec=preexec,
            wall_seconds=wall_seconds,
            output_bytes=output_bytes,
            result_bytes=result_bytes,
        )
    finally:
        _remove_tree(workdir)
    return _result(
        finished,
        tests,
        iso,
        wall_seconds=wall_seconds,
        cpu_seconds=cpu_seconds,
        output_bytes=output_bytes,
        result_bytes=result_bytes,
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
        group_reaped=finished.group_reaped,
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
