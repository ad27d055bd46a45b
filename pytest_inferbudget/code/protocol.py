"""The parent's side of the harness protocol: read the child's records and judge them.

The child (:mod:`~pytest_inferbudget.code.harness`) reports a header, then one record per test
holding its return value only. Judging happens here, test by test in order, against the expected
values the child never saw: a record the candidate forged can claim nothing but an answer it
could have returned anyway, and a duplicated, malformed or missing record is never a pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, final

from pytest_inferbudget.code.results import Outcome
from pytest_inferbudget.code.task import TestCase

__all__ = ["Judgement", "Records", "judge"]

OUT_OF_MEMORY_SIGNS: Final = ("MemoryError", "Cannot allocate memory", "out of memory")
"""Read in stderr when a child died without a report: the address-space limit can kill
Python outside a catchable ``MemoryError`` (a failed thread start, a C extension). The text
is the candidate's to write, but claiming out-of-memory gains it nothing it could not get by
raising ``MemoryError`` itself, which ENAMEL also treats as out of memory."""


class Judgement(NamedTuple):
    """The parent's verdict on one run's records."""

    outcome: Outcome
    failed_test: int | None
    """The first test that did not pass; -1 for the source itself; None when none failed
    (or when the stream itself was at fault)."""
    tests_passed: int
    error_type: str | None
    detail: str


@final
@dataclass(frozen=True, slots=True)
class Records:
    """The result stream, decoded (:meth:`parse`) but not yet judged."""

    header: dict[str, Any] | None
    """The harness's first record (network namespace, pid, uid); None when it never came."""
    by_test: dict[int, dict[str, Any]]
    """One record per test index (-1: loading the source)."""
    done: bool
    """The harness got past the last test."""
    problem: str | None
    """The first protocol violation met (junk, a duplicate, no header first), else None."""

    @classmethod
    def parse(cls, data: bytes) -> Records:
        """Decode the newline-separated JSON records the child wrote."""
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


def judge(
    records: Records,
    tests: tuple[TestCase, ...],
    *,
    killed: bool,
    cpu_limited: bool,
    overflow: bool,
    exit_code: int,
    stderr_tail: str,
    wall_seconds: float,
    result_bytes: int,
) -> Judgement:
    """Judge the records against ``tests`` in order: a wrong answer before a crash or a
    timeout makes the run a wrong answer, as sequential execution would."""
    if records.problem is not None:
        return Judgement(
            Outcome.RUNTIME_ERROR, None, 0, None, f"protocol violation: {records.problem}"
        )
    if overflow:
        return Judgement(
            Outcome.RUNTIME_ERROR, None, 0, None, f"the answers exceeded {result_bytes} bytes"
        )
    load = records.by_test.get(-1)
    if load is not None:
        return _error_outcome(load, -1, 0)
    for i, case in enumerate(tests):
        record = records.by_test.get(i)
        if record is None:
            if killed:
                return Judgement(
                    Outcome.TIMEOUT,
                    i,
                    i,
                    None,
                    f"killed at the wall limit of {wall_seconds:.3g} s during test {i}",
                )
            if cpu_limited:
                return Judgement(
                    Outcome.TIMEOUT, i, i, None, f"stopped by the CPU-time limit in test {i}"
                )
            if any(sign in stderr_tail for sign in OUT_OF_MEMORY_SIGNS):
                return Judgement(
                    Outcome.MEMORY_ERROR,
                    i,
                    i,
                    None,
                    f"the child ran out of memory in test {i} (exit code {exit_code})",
                )
            return Judgement(
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
            return Judgement(
                Outcome.WRONG_ANSWER,
                i,
                i,
                None,
                f"test {i} returned a {record.get('type')!s}, which is not JSON",
            )
        if not case.check(record.get("value")):
            return Judgement(Outcome.WRONG_ANSWER, i, i, None, f"test {i} returned a wrong answer")
    if killed:
        return Judgement(
            Outcome.TIMEOUT,
            None,
            len(tests),
            None,
            f"answered every test but was still running at the wall limit of {wall_seconds:.3g} s",
        )
    return Judgement(Outcome.OK, None, len(tests), None, "every test passed")


def _error_outcome(record: dict[str, Any], index: int, passed: int) -> Judgement:
    where = "loading the source" if index < 0 else f"test {index}"
    if record["kind"] == "cpu_limit":
        return Judgement(
            Outcome.TIMEOUT, index, passed, None, f"stopped by the CPU-time limit in {where}"
        )
    error = str(record.get("error", "Exception"))
    message = str(record.get("message", ""))
    outcome = Outcome.MEMORY_ERROR if error == "MemoryError" else Outcome.RUNTIME_ERROR
    text = f"{error} in {where}" + (f": {message}" if message else "")
    return Judgement(outcome, index, passed, error, text)
