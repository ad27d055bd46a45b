"""Interleaved A/B in one session (``--inferbudget-ab``): every engine call of a test was
served by the session's engine (A) and a second engine (B), one after the other in an
order drawn per call (Randomized Multiple Interleaved Trials, Abedi & Brecht 2017). A
shift of the machine's state then falls on both sides alike, and B's requests are judged
against A's paired, request by request, with the comparison every saved run gets."""

from __future__ import annotations

from collections.abc import Mapping

from pytest_inferbudget.compare.runs import compare_test
from pytest_inferbudget.records import Comparison, EngineInfo, RunRecord, TestComparison, TestRecord

__all__ = ["interleaved_comparison", "interleaved_test"]


def interleaved_test(
    record: TestRecord,
    gates: Mapping[str, float],
    per_test_gates: Mapping[str, Mapping[str, float]] | None = None,
) -> TestComparison | None:
    """B's traces of one test against A's; None when the test made no interleaved call."""
    if not record.ab_traces:
        return None
    a = TestRecord(record.nodeid, traces=record.traces, machine=record.machine)
    b = TestRecord(record.nodeid, traces=record.ab_traces, machine=record.machine)
    # both sides ran under the same load, call by call: nothing for load to explain
    return compare_test(a, b, gates=gates, per_test_gates=per_test_gates, load_tolerance=1.0)


def interleaved_comparison(
    run: RunRecord,
    partner: EngineInfo,
    gates: Mapping[str, float],
    per_test_gates: Mapping[str, Mapping[str, float]] | None = None,
) -> Comparison | None:
    """Every interleaved test of ``run``: engine ``partner`` (B) against the run's (A)."""
    tests = tuple(
        t for r in run.tests if (t := interleaved_test(r, gates, per_test_gates)) is not None
    )
    if not tests:
        return None
    a, b = run.engine.get("spec", "the session's engine"), partner.get("spec", "B")
    return Comparison(
        baseline_run_id=run.run_id,
        candidate_run_id=run.run_id,
        alpha=0.05,
        tests=tests,
        baseline_label=f"{a} (A, the session's engine), interleaved with {b} (B)",
    )
