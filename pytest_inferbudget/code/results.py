"""What one sandboxed run yields: its outcome, the result record, and the executor's shape.

Kept apart from the machinery that produces them so that the scorer, and stand-in executors
in tests, depend on these types only.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, final

from pytest_inferbudget.code.launch import Containment
from pytest_inferbudget.code.task import TestCase

__all__ = ["ExecutionResult", "Executor", "Outcome"]


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
    """What the containment lacks here, and what failed before it was found ("" when
    nothing)."""
    pid: int
    """The child's pid in the parent's namespace, also its process-group id."""
    group_reaped: bool
    """No process of the child's process group, nor of its sandbox's PID namespace, was left
    once this returned."""
    containment: Containment = Containment.NONE
    """Which tool contained the run: ``bwrap``, ``unshare``, or ``none`` (uncontained, asked
    for with ``sandbox="none"``)."""

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
            "containment": str(self.containment),
        }


class Executor(Protocol):
    """What the scorer calls to run code: :func:`~pytest_inferbudget.code.sandbox.
    run_candidate` or a stand-in with its shape."""

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
