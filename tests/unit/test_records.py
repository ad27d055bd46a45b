"""Records round-trip through builtin types, refuse newer schemas and bad requests, and
aggregate every sample."""

from __future__ import annotations

import json

import pytest

from pytest_inferbudget.records import (
    BudgetResult,
    Generation,
    Request,
    Response,
    RunRecord,
    Score,
    TestRecord,
    Trace,
)
from pytest_inferbudget.vocabulary import Verdict
from tests.unit.runs import response, trace


def test_run_record_round_trips_through_json() -> None:
    run = RunRecord("abc", "2026-01-01T00:00:00+00:00", engine={"spec": "x:y"})
    chat = Response(
        Request(({"role": "user", "content": "hi"},)), (Generation("ok", 2, 1, "length"),)
    )
    run.tests.append(
        TestRecord(
            "t.py::test",
            [trace([3, 4], [20.0, 30.0]), Trace((chat,), "best-of-2", 12.5, "ok")],
            [
                BudgetResult("max_tokens", 4.0, "max", "tokens", 4.0, 2, Verdict.PASS),
                BudgetResult(
                    "cost_of_pass", 9.0, "", "tokens", float("inf"), 2, Verdict.FAIL, "none"
                ),
            ],
            "passed",
            [Score("q", False, 3, 20.0, "7"), Score("q", True, 4, None, None, 0.5)],
        )
    )
    data = json.loads(json.dumps(run.to_dict(), allow_nan=False))
    assert RunRecord.from_dict(data).to_dict() == run.to_dict()
    assert data["tests"][0]["budgets"][1]["measured"] == "inf"
    assert only_builtin_types(run.to_dict())


def only_builtin_types(value: object) -> bool:
    """What xdist's execnet can carry from a worker: exact builtin types, no subclass (a
    ``StrEnum`` member is a ``str`` to json but not to execnet)."""
    if isinstance(value, dict):
        return all(type(k) is str and only_builtin_types(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(only_builtin_types(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_newer_schema_is_refused() -> None:
    data = RunRecord("abc", "now").to_dict()
    data["schema_version"] = 99
    with pytest.raises(ValueError, match=r"schema_version 99 .*upgrade pytest-inferbudget"):
        RunRecord.from_dict(data)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n": 2}, "n=2 samples with temperature=0"),
        ({"temperature": -1.0}, "temperature must be >= 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ],
)
def test_bad_requests_name_the_problem(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Request("q", **kwargs)  # type: ignore[arg-type]


def test_request_level_aggregates_count_every_sample() -> None:
    r = response([3, 5], [20.0, 35.0])
    assert r.completion_tokens == 8
    assert r.max_completion_tokens == 5
    assert r.e2e_ms == 35.0
    assert r.ttft_ms == 10.0
