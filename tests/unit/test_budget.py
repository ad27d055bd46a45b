"""Budget parsing and judging are exact; one key table feeds markers, verdicts and comparison."""

from __future__ import annotations

import random

import numpy
import pytest
from hypothesis import given, strategies as st

from pytest_inferbudget import budget, metrics, verdicts, vocabulary
from pytest_inferbudget.budget import BudgetLimit, parse_markers
from pytest_inferbudget.errors import BudgetSpecError
from pytest_inferbudget.metrics import quantile
from pytest_inferbudget.verdicts import evaluate
from tests.unit.runs import trace


def test_evaluate_uses_each_keys_samples_and_statistic() -> None:
    responses = [trace([3], [100.0]), trace([9], [300.0]), trace([2, 4], [200.0, 250.0])]
    limits = parse_markers(
        [
            ((), {"max_tokens": 8, "tokens_per_request": 6}),
            ((), {"ms_per_request": 260, "stat": "p50"}),
        ],
        where="t",
    )
    by_key = {r.key: r for r in evaluate(limits, responses)}
    assert by_key["max_tokens"].measured == 9 and by_key["max_tokens"].verdict == "fail"
    assert by_key["max_tokens"].samples == 4  # one per completion
    assert by_key["tokens_per_request"].measured == pytest.approx(6.0)  # (3 + 9 + 6) / 3
    assert by_key["tokens_per_request"].verdict == "pass"
    assert by_key["ms_per_request"].measured == 250.0  # median of 100, 300, 250
    assert by_key["ms_per_request"].verdict == "pass"


def test_unmeasured_budgets_say_why() -> None:
    limits = [BudgetLimit("tpot_ms", 50.0, "mean"), BudgetLimit("ms_per_request", 50.0, "mean")]
    results = evaluate(limits, [trace([1], [None], ttft=None)])
    assert [r.verdict for r in results] == ["unmeasured", "unmeasured"]
    assert "two or more tokens" in results[0].reason
    assert "end-to-end" in results[1].reason
    assert evaluate(limits, [])[0].reason == "the test recorded no generation"


def test_same_key_with_two_statistics_is_two_budgets_not_a_conflict() -> None:
    limits = parse_markers(
        [((), {"ms_per_request": 500}), ((), {"ms_per_request": 900, "stat": "p99"})], where="t"
    )
    assert {(lim.key, lim.stat, lim.limit) for lim in limits.limits} == {
        ("ms_per_request", "mean", 500.0),
        ("ms_per_request", "p99", 900.0),
    }
    with pytest.raises(BudgetSpecError, match="conflict"):
        parse_markers([((), {"ttft_ms": 5}), ((), {"ttft_ms": 6})], where="t")


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50),
    st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_quantile_matches_numpy_linear_method(values: list[float], q: float) -> None:
    assert quantile(values, q) == pytest.approx(float(numpy.quantile(values, q)), rel=1e-9)


def test_quantile_is_order_independent() -> None:
    values = [random.Random(1).expovariate(1.0) for _ in range(101)]
    assert quantile(values, 0.95) == quantile(sorted(values, reverse=True), 0.95)


def test_one_key_table_feeds_markers_verdicts_and_comparison() -> None:
    # every list of keys derives from budget.KEYS; statistics are named in vocabulary only
    assert set(budget.COST_KEYS) | set(budget.ACCURACY_KEYS) | set(budget.LOAD_KEYS) | set(
        budget.TEXT_KEYS
    ) == set(budget.KEYS)
    assert all(budget.KEYS[k].sample or budget.KEYS[k].totals for k in budget.COST_KEYS)
    assert set(budget.COMPARED_KEYS) <= set(budget.KEYS)
    assert tuple(metrics.STATISTICS) == vocabulary.STATISTICS
    assert set(vocabulary.QUANTILES) <= set(vocabulary.STATISTICS)


def test_hardware_variants_take_the_outer_modifiers_and_their_pattern() -> None:
    spec = parse_markers(
        [((), {"stat": "p90", "ms_per_request": 900, "hardware": {"cuda:*": {"ttft_ms": 80}}})],
        where="t",
    )
    assert BudgetLimit("ttft_ms", 80.0, "p90", hardware="cuda:*") in spec.limits
    chosen = verdicts.select_for_machine(spec.limits, "cpu: some cpu")
    assert [lim.key for lim in chosen] == ["ms_per_request"]  # the cuda-only limit is not here
    assert bool(spec) and not spec.confident
    assert not budget.BudgetSpec()


EVALUATION_MODULES = (
    "pytest_inferbudget.session",
    "pytest_inferbudget.verdicts",
    "pytest_inferbudget.records",
    "pytest_inferbudget.recorder",
    "pytest_inferbudget.metrics",
    "pytest_inferbudget.report.terminal",
    "pytest_inferbudget.compare",
)


def test_collection_loads_spec_checks_but_no_evaluation_code(pytester: pytest.Pytester) -> None:
    """`pytest --co` pays for option and marker registration and key validation only."""
    pytester.makeconftest(
        f"""
        import sys

        def pytest_collection_finish(session):
            loaded = [m for m in {EVALUATION_MODULES!r} if m in sys.modules]
            print("EVALUATION-MODULES:", ",".join(loaded) or "none")
            print("SPEC-LOADED:", "pytest_inferbudget.budget" in sys.modules)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=8, ms_per_request=100, stat="p95")
        def test_one(infer):
            infer("hi")

        @pytest.mark.budget(ttft_ms=-1)
        def test_bad(infer):
            infer("hi")
        """
    )
    result = pytester.runpytest_subprocess("--co", "-s", "-p", "inferbudget")
    result.stdout.fnmatch_lines(
        [
            "EVALUATION-MODULES: none",
            "SPEC-LOADED: True",
            "*test_bad*ttft_ms=-1*must be a finite number above 0*",
        ]
    )
