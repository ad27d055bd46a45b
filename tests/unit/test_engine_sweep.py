"""Engine sweeps without a model: engine ids, the per-test and total comparison, the best
engine, ``relative_to_best`` parsing and judging, and the records' JSON round trip."""

from __future__ import annotations

import json

import pytest

from pytest_inferbudget.budget import parse_markers
from pytest_inferbudget.compare.engines import (
    engine_figures,
    engine_sweep,
    group_id,
    judge_relative,
)
from pytest_inferbudget.engines.sweep import engine_choices, split_named
from pytest_inferbudget.errors import BudgetSpecError, EngineSpecError
from pytest_inferbudget.records import (
    Generation,
    MachineLoad,
    Request,
    Response,
    RunRecord,
    TestRecord,
    Trace,
)
from pytest_inferbudget.records.sweep import EngineSweep, RelativeLimit
from pytest_inferbudget.report.sweep import sweep_chart, sweep_html, sweep_lines, sweep_markdown
from pytest_inferbudget.vocabulary import Verdict

FAST, SLOW = "tf-bs4", "tf-bs1"


def _trace(tokens: int, e2e: float, ttft: float) -> Trace:
    generation = Generation("a", 10, tokens, "stop", e2e, ttft, None)
    return Trace((Response(Request("q"), (generation,), "e"),))


def _load(window_s: float) -> MachineLoad:
    return MachineLoad(window_s, 2, 1.0, 0.1, 0.0, 1.0)


def _record(
    name: str,
    engine: str,
    e2e: list[float],
    window_s: float | None,
    *,
    tokens: int = 20,
    relative: list[RelativeLimit] | None = None,
) -> TestRecord:
    return TestRecord(
        f"t.py::{name}[{engine}]",
        [_trace(tokens, ms, ms / 4) for ms in e2e],
        machine=None if window_s is None else _load(window_s),
        engine=engine,
        relative_to_best=relative or [],
    )


# --------------------------------------------------------------------------- ids


def test_default_ids_read_as_the_configuration_and_a_name_replaces_them() -> None:
    choices = engine_choices(
        [
            "vllm:m?max_num_seqs=8&dtype=float32",
            "fast=transformers:m?batch_size=4",
            "transformers:m",
        ]
    )
    assert [c.id for c in choices] == ["vllm-max_num_seqs=8-dtype=float32", "fast", "transformers"]
    assert choices[1].spec == "transformers:m?batch_size=4"
    # the target joins the id only where the targets differ
    assert [c.id for c in engine_choices(["transformers:/a/one", "transformers:/b/two"])] == [
        "transformers-one",
        "transformers-two",
    ]


def test_bad_names_and_clashing_ids_are_refused_naming_the_fix() -> None:
    assert split_named("transformers:m?batch_size=4") == (None, "transformers:m?batch_size=4")
    with pytest.raises(EngineSpecError, match="only letters"):
        engine_choices(["my engine=transformers:m"])
    with pytest.raises(EngineSpecError, match="the same spec twice"):
        engine_choices(["transformers:m", "transformers:m"])
    with pytest.raises(EngineSpecError, match="NAME=SPEC"):
        engine_choices(["a=transformers:m", "a=vllm:m"])
    with pytest.raises(EngineSpecError, match="NAME:TARGET"):
        engine_choices(["transformers"])


@pytest.mark.parametrize(
    ("nodeid", "engine", "expected"),
    [
        ("t.py::test_a[e1]", "e1", "t.py::test_a"),
        ("t.py::test_a[e1-3]", "e1", "t.py::test_a[3]"),
        ("t.py::test_a[3-e1]", "e1", "t.py::test_a[3]"),
        ("t.py::test_a[3-e-1-x]", "e-1", "t.py::test_a[3-x]"),
        ("t.py::test_a", "", "t.py::test_a"),
    ],
)
def test_group_id_drops_only_the_engine(nodeid: str, engine: str, expected: str) -> None:
    assert group_id(nodeid, engine) == expected


# --------------------------------------------------------------------------- comparison


def test_figures_take_throughput_over_engine_time_not_summed_request_time() -> None:
    # four requests served as one batch: each took 1000 ms, the batch 1.0 s in all
    figures = engine_figures(FAST, [_record("b", FAST, [1000.0] * 4, 1.0, tokens=20)])
    assert figures.completion_tokens == 80
    assert figures.tokens_per_s == pytest.approx(80.0)
    assert figures.ms_per_request == {"mean": 1000.0, "p50": 1000.0, "p90": 1000.0, "p99": 1000.0}
    assert figures.ttft_ms["p50"] == 250.0
    untimed = engine_figures(FAST, [_record("b", FAST, [], None)])
    assert untimed.tokens_per_s is None and untimed.ms_per_request == {}


def test_sweep_marks_the_best_per_test_and_in_total() -> None:
    tests = [
        _record("a", SLOW, [400.0, 500.0], 0.9),
        _record("a", FAST, [100.0, 120.0], 0.22),
        _record("b", SLOW, [300.0], 0.3),
        _record("b", FAST, [310.0], 0.31),
    ]
    sweep = engine_sweep(tests, {SLOW: {"spec": "s"}, FAST: {"spec": "f"}})
    assert [row.test for row in sweep.tests] == ["t.py::a", "t.py::b"]
    assert [row.best for row in sweep.tests] == [FAST, SLOW]
    assert [f.engine for f in sweep.total] == [SLOW, FAST]  # the session's order
    assert sweep.best == FAST
    total = {f.engine: f for f in sweep.total}
    assert total[FAST].requests == 3 and total[FAST].busy_s == pytest.approx(0.53)


def test_relative_to_best_on_latency_fails_the_engine_beyond_the_factor() -> None:
    limit = [RelativeLimit("ms_per_request", 1.1, "mean")]
    by_engine = {
        SLOW: [_record("a", SLOW, [130.0, 130.0], 0.3, relative=limit)],
        FAST: [_record("a", FAST, [100.0, 100.0], 0.2, relative=limit)],
    }
    results = judge_relative("t.py::a", by_engine, [SLOW, FAST])
    verdicts = {r.engine: r.verdict for r in results}
    assert verdicts == {SLOW: Verdict.FAIL, FAST: Verdict.PASS}
    failed = next(r for r in results if r.engine == SLOW)
    assert failed.best_engine == FAST and failed.ratio == pytest.approx(1.3)
    assert "1.3x the best (tf-bs4: 100)" in failed.describe()
    generous = [RelativeLimit("ms_per_request", 1.5, "mean")]
    for records in by_engine.values():
        records[0].relative_to_best = generous
    assert all(r.verdict is Verdict.PASS for r in judge_relative("t.py::a", by_engine))


def test_relative_to_best_on_throughput_takes_the_highest_as_best() -> None:
    limit = [RelativeLimit("tokens_per_s", 2.0)]
    by_engine = {
        SLOW: [_record("a", SLOW, [1.0], 1.0, tokens=100, relative=limit)],  # 100 tok/s
        FAST: [_record("a", FAST, [1.0], 0.25, tokens=100, relative=limit)],  # 400 tok/s
        "mid": [_record("a", "mid", [1.0], 0.5, tokens=100, relative=limit)],  # 200 tok/s
    }
    results = {r.engine: r for r in judge_relative("t.py::a", by_engine)}
    assert results[FAST].best_engine == FAST
    assert results[SLOW].verdict is Verdict.FAIL and results[SLOW].ratio == pytest.approx(4.0)
    assert results["mid"].verdict is Verdict.PASS  # exactly half the best: within 2x


def test_relative_to_best_unmeasured_is_not_judged() -> None:
    limit = [RelativeLimit("tokens_per_s", 1.0)]
    by_engine = {SLOW: [_record("a", SLOW, [1.0], None, relative=limit)]}
    (result,) = judge_relative("t.py::a", by_engine)
    assert result.verdict is Verdict.UNMEASURED and "unmeasured" in result.describe()


# --------------------------------------------------------------------------- markers


def test_relative_to_best_marker_parses_with_its_statistic() -> None:
    spec = parse_markers(
        [((), {"relative_to_best": {"ms_per_request": 1.1, "tokens_per_s": 1.2}, "stat": "p90"})],
        where="t.py::a",
    )
    assert spec.relative_to_best == (("ms_per_request", 1.1, "p90"), ("tokens_per_s", 1.2, "p90"))
    assert not spec  # no absolute limit: nothing for the per-test verdicts


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"ms_per_requests": 1.1}, "'ms_per_requests', not a key"),
        ({"pass_at_k": 1.1}, "an accuracy or load key"),
        ({"ms_per_request": 0.9}, "must be a number >= 1"),
        ({"ms_per_request": True}, "must be a number >= 1"),
        ({"ms_per_request": float("inf")}, "finite"),
        (1.1, "must map a key to a factor"),
        ({}, "must map a key to a factor"),
    ],
)
def test_bad_relative_to_best_is_a_collection_error(value: object, message: str) -> None:
    with pytest.raises(BudgetSpecError, match=message):
        parse_markers([((), {"relative_to_best": value})], where="t.py::a")


# --------------------------------------------------------------------------- records, reports


def _sweep() -> EngineSweep:
    limit = [RelativeLimit("ms_per_request", 1.1)]
    tests = [
        _record("a", SLOW, [400.0], 0.4, relative=limit),
        _record("a", FAST, [100.0], 0.1, relative=limit),
    ]
    return engine_sweep(tests, {SLOW: {"spec": "transformers:m?batch_size=1"}, FAST: {}})


def test_sweep_and_per_test_engine_survive_json_and_one_engine_runs_are_unchanged() -> None:
    sweep = _sweep()
    run = RunRecord("r", "2026-01-01T00:00:00+00:00", engines={SLOW: {"spec": "x"}}, sweep=sweep)
    run.tests = [_record("a", SLOW, [1.0], 0.1, relative=[RelativeLimit("tokens_per_s", 2.0)])]
    data = json.loads(json.dumps(run.to_dict()))
    again = RunRecord.from_dict(data)
    assert again.sweep == sweep
    assert again.tests[0].engine == SLOW
    assert again.tests[0].relative_to_best == [RelativeLimit("tokens_per_s", 2.0)]
    assert data["sweep"]["best"] == FAST
    assert data["sweep"]["relative_to_best"][0]["verdict"] == "fail"
    plain = RunRecord("r", "t", tests=[TestRecord("t.py::a")]).to_dict()
    assert "sweep" not in plain and "engines" not in plain
    assert "engine" not in plain["tests"][0] and "relative_to_best" not in plain["tests"][0]


def test_reports_show_the_table_the_best_and_the_verdicts_escaped() -> None:
    sweep = _sweep()
    sweep.engines["<b>x"] = {"spec": "<script>"}
    lines = sweep_lines(sweep)
    assert lines[0].startswith("engine sweep over 3 engines; best overall: tf-bs4")
    rows = [line for line in lines if not line.startswith("test ")]  # not the header
    best_rows = [line for line in rows if line.rstrip().endswith("best")]
    assert len(best_rows) == 2 and all(FAST in row for row in best_rows)  # total and test a
    assert any("FAIL" in line and line.startswith("relative_to_best:") for line in lines)
    markdown = "\n".join(sweep_markdown(sweep))
    assert "### Engine sweep" in markdown and "&lt;script&gt;" in markdown
    assert "relative\\_to\\_best" in markdown
    html = sweep_html(sweep)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count('class="ib-plot ib-sweep"') == 2
    assert "400 (best)" not in html and "(best)" in html


def test_chart_has_one_bar_per_measured_engine_and_none_without_figures() -> None:
    svg = sweep_chart([("a", 10.0, False), ("b", 20.0, True), ("c", None, False)], "t")
    assert svg.count("<rect") == 2 and "20 (best)" in svg and ">c</text>" in svg
    assert sweep_chart([("a", None, False)], "t") == ""


def test_a_test_that_failed_before_any_call_leaves_the_totals_timed() -> None:
    tests = [_record("a", FAST, [100.0], 0.5, tokens=50), _record("b", FAST, [], None)]
    assert engine_figures(FAST, tests).tokens_per_s == pytest.approx(100.0)


def test_vllm_scheduler_settings_reach_the_engine_and_bad_ones_are_refused() -> None:
    from pytest_inferbudget.engines import EngineSpec
    from pytest_inferbudget.engines.vllm import VllmSettings

    spec = EngineSpec.parse("vllm:m?max_num_seqs=4&max_num_batched_tokens=512")
    kwargs = VllmSettings.from_spec(spec, on_cpu=True).llm_kwargs()
    assert kwargs["max_num_seqs"] == 4 and kwargs["max_num_batched_tokens"] == 512
    assert (
        "max_num_seqs" not in VllmSettings.from_spec(EngineSpec.parse("vllm:m"), True).llm_kwargs()
    )
    with pytest.raises(EngineSpecError, match="max_num_seqs must be an integer >= 1, got '0'"):
        VllmSettings.from_spec(EngineSpec.parse("vllm:m?max_num_seqs=0"), on_cpu=True)
