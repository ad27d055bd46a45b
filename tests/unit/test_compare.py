"""Run comparison: Mann-Whitney, Holm, the bootstrap ratio, exact greedy tokens, A/A alarms."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from itertools import combinations

import pytest
from hypothesis import given, settings, strategies as st

from pytest_inferbudget.compare import ComparisonError, compare_runs, hardware_key
from pytest_inferbudget.contention import explainable_change
from pytest_inferbudget.metrics.significance import (
    bootstrap_log_ratio,
    holm,
    mann_whitney_u,
    paired_min_p,
    paired_permutation_p,
)
from pytest_inferbudget.records import (
    Comparison,
    TestRecord,
)
from pytest_inferbudget.report.comparison import format_p
from tests.unit.runs import (
    ENGINE,
    HARDWARE,
    TIMED_AND_TOKENS,
    TOKENS_METRIC,
    change_of,
    make_run,
    make_test,
)

# --------------------------------------------------------------------------- Mann-Whitney


def brute_force(a: list[float], b: list[float]) -> tuple[float, float]:
    """U by counting pairs, and the permutation p-value by enumerating every split."""
    pooled = a + b
    mean = len(a) * len(b) / 2

    def u_of(x: list[float], y: list[float]) -> float:
        return sum((xi > yj) + 0.5 * (xi == yj) for xi in x for yj in y)

    observed = abs(u_of(a, b) - mean)
    hits = total = 0
    for chosen in combinations(range(len(pooled)), len(a)):
        rest = set(range(len(pooled))) - set(chosen)
        u = u_of([pooled[i] for i in chosen], [pooled[i] for i in rest])
        hits += abs(u - mean) >= observed - 1e-9
        total += 1
    return u_of(a, b), hits / total


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (1, 5), (2, 3), (4, 4), (5, 7), (8, 6), (3, 10)])
def test_exact_p_values_match_permutation_enumeration(n1: int, n2: int) -> None:
    rng = random.Random(n1 * 100 + n2)
    for shift in (0.0, 0.4, 1.5):
        a = [rng.random() for _ in range(n1)]
        b = [rng.random() + shift for _ in range(n2)]
        u, p = mann_whitney_u(a, b)
        expected_u, expected_p = brute_force(a, b)
        assert u == expected_u
        assert p == pytest.approx(expected_p, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=6, unique=True).flatmap(
        lambda values: st.permutations(values).map(
            lambda shuffled: (shuffled, max(1, len(shuffled) // 2))
        )
    ),
    st.lists(st.integers(10**6 + 1, 2 * 10**6), min_size=0, max_size=5, unique=True),
)
def test_exact_p_values_match_enumeration_for_any_untied_samples(
    split: tuple[list[int], int], extra: list[int]
) -> None:
    values, cut = split
    a, b = [float(v) for v in values[:cut]], [float(v) for v in values[cut:] + extra]
    if not b:
        b = [0.5]
    assert mann_whitney_u(a, b) == pytest.approx(brute_force(a, b), rel=1e-12)


def test_exact_p_value_of_complete_separation() -> None:
    u, p = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 0
    assert p == pytest.approx(2 / math.comb(10, 5))
    assert mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == (25, p)


def permutation_p(a: list[float], b: list[float], rounds: int, seed: int) -> float:
    """Monte Carlo permutation p-value of |U - mean|, for samples too large to enumerate."""
    rng = random.Random(seed)
    pooled = a + b
    mean = len(a) * len(b) / 2
    observed = abs(mann_whitney_u(a, b)[0] - mean)
    hits = 0
    for _ in range(rounds):
        rng.shuffle(pooled)
        u, _ = mann_whitney_u(pooled[: len(a)], pooled[len(a) :])
        hits += abs(u - mean) >= observed - 1e-9
    return hits / rounds


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "heavily-tied"])
def test_normal_approximation_agrees_with_permutations_for_large_samples(tied: bool) -> None:
    rng = random.Random(7)

    def draw(shift: float) -> float:
        value = rng.gauss(shift, 1.0)
        return float(round(value)) if tied else value

    a = [draw(0.0) for _ in range(40)]
    b = [draw(0.45) for _ in range(50)]
    _, p = mann_whitney_u(a, b)
    assert 0.001 < p < 0.2  # a moderate effect: neither certain nor nothing
    assert p == pytest.approx(permutation_p(a, b, 3000, seed=1), abs=0.015)


def test_normal_approximation_is_calibrated_and_degenerate_cases() -> None:
    rng = random.Random(3)
    p_values = [
        mann_whitney_u(
            [rng.lognormvariate(0, 1) for _ in range(60)],
            [rng.lognormvariate(0, 1) for _ in range(60)],
        )[1]
        for _ in range(400)
    ]
    assert 0.025 <= sum(p < 0.05 for p in p_values) / len(p_values) <= 0.08
    assert mann_whitney_u([3.0] * 30, [3.0] * 30) == (450.0, 1.0)
    far = mann_whitney_u([float(i) for i in range(100)], [float(i) + 1000 for i in range(100)])
    assert far[0] == 0 and far[1] < 1e-30
    with pytest.raises(ValueError, match="empty"):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        mann_whitney_u([1.0, math.nan], [1.0])


# --------------------------------------------------------------------------- Holm, bootstrap


def test_holm_matches_hand_computation() -> None:
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == [0.02]
    assert holm([]) == []
    with pytest.raises(ValueError, match="probability"):
        holm([0.1, 1.5])


def test_bootstrap_log_ratio_estimates_the_ratio_of_medians() -> None:
    rng = random.Random(5)
    a = [rng.lognormvariate(math.log(100), 0.1) for _ in range(40)]
    b = [v * 1.3 for v in a]
    estimate, low, high = bootstrap_log_ratio(a, b, resamples=500)
    assert estimate == pytest.approx(math.log(1.3))
    assert low < estimate < high
    assert low > 0  # a clear slowdown: the interval excludes no change
    assert bootstrap_log_ratio(a, b, resamples=500) == (estimate, low, high)  # seeded
    with pytest.raises(ValueError, match="positive"):
        bootstrap_log_ratio([0.0, 1.0], [1.0])


# --------------------------------------------------------------------------- compare_runs


def test_identical_runs_have_no_regression_and_exact_equal_tokens() -> None:
    run = make_run(make_test("t.py::test_a", random.Random(1)))
    comparison = compare_runs(run, run, thresholds={"ms_per_request": 0.10})
    assert comparison.regressions == ()
    assert change_of(comparison, "tokens_per_request") == "exact-equal"
    for metric in ("ms_per_request", "ttft_ms", "tpot_ms"):
        assert change_of(comparison, metric) == "equal"  # identical samples: nothing to test
    assert json.loads(json.dumps(comparison.to_dict())) == comparison.to_dict()
    assert Comparison.from_dict(comparison.to_dict()) == comparison


def test_a_30_percent_slowdown_is_a_regression_while_tokens_are_exact_equal() -> None:
    baseline = make_run(make_test("t.py::test_a", random.Random(1)), run_id="base")
    candidate = make_run(make_test("t.py::test_a", random.Random(2), slowdown=1.3), run_id="new")
    comparison = compare_runs(baseline, candidate, thresholds={"ms_per_request": 0.10})
    ms = next(c for c in comparison.changes if c.metric == "ms_per_request")
    assert ms.verdict == "regression"
    assert ms.n_baseline == ms.n_candidate == 30
    assert ms.relative_change == pytest.approx(0.3, abs=0.1)
    assert ms.p_adjusted is not None and ms.p_value is not None
    assert ms.p_value <= ms.p_adjusted < 0.05
    assert ms.ci_low is not None and ms.ci_high is not None and ms.ci_low > 0.10
    assert change_of(comparison, "tokens_per_request") == "exact-equal"
    assert ms in comparison.regressions


def test_a_slowdown_under_other_machine_load_is_inconclusive() -> None:
    """The machine, not the code, may have been slower: the timings (CPU time too: an
    engine's waiting threads spin) are inconclusive and name both loads."""
    baseline = make_run(
        make_test("t.py::test_a", random.Random(1), other_cpu_share=0.03), run_id="base"
    )
    busy = make_test("t.py::test_a", random.Random(2), slowdown=1.4, other_cpu_share=0.25)
    comparison = compare_runs(baseline, make_run(busy, run_id="new"))
    for metric in ("ms_per_request", "ttft_ms", "tpot_ms", "cpu_ms_per_request"):
        change = next(c for c in comparison.changes if c.metric == metric)
        assert change.verdict == "inconclusive" and change.method == "load-aware", change
        assert "machine busier than baseline: 25% vs 3% other CPU" in change.detail
        assert "would have been regression" in change.detail
    assert change_of(comparison, "tokens_per_request") == "exact-equal"
    assert not comparison.regressions

    # five times slower is beyond what half a core of other load can do to 2 cores
    much_slower = make_test("t.py::test_a", random.Random(2), slowdown=5.0, other_cpu_share=0.25)
    comparison = compare_runs(baseline, make_run(much_slower, run_id="new"))
    ms = next(c for c in comparison.changes if c.metric == "ms_per_request")
    assert ms.verdict == "regression" and ms.method == "paired"
    assert "beyond the 88% that load could explain" in ms.detail, ms.detail


def test_the_change_load_can_explain() -> None:
    assert explainable_change(0.0, 0.5) == pytest.approx(1.0)  # half the machine: 2x
    assert explainable_change(0.5, 0.0) == pytest.approx(1.0)  # symmetric
    assert explainable_change(0.2, 0.2) == 0.0
    assert explainable_change(0.0, 1.0) == pytest.approx(19.0)  # capped at 20-fold
    # a quarter of a 2-core machine is half a core: a barrier-bound pool may halve its pace
    assert explainable_change(0.0, 0.25, cpu_count=2) == pytest.approx(1.0)


def test_the_same_load_on_both_sides_leaves_a_regression_a_regression() -> None:
    baseline = make_run(make_test("t.py::test_a", random.Random(1), other_cpu_share=0.40))
    candidate = make_run(
        make_test("t.py::test_a", random.Random(2), slowdown=1.3, other_cpu_share=0.45)
    )
    comparison = compare_runs(baseline, candidate)
    assert change_of(comparison, "ms_per_request") == "regression"
    # runs saved before machine load was measured are judged as before
    old = make_run(make_test("t.py::test_a", random.Random(1)))
    assert change_of(compare_runs(old, candidate), "ms_per_request") == "regression"


def test_a_significant_change_within_the_threshold_is_not_a_regression() -> None:
    baseline = make_run(make_test("t.py::test_a", random.Random(1), sigma=0.005))
    candidate = make_run(make_test("t.py::test_a", random.Random(2), sigma=0.005, slowdown=1.02))
    comparison = compare_runs(baseline, candidate, thresholds={"ms_per_request": 0.10})
    ms = next(c for c in comparison.changes if c.metric == "ms_per_request")
    # clearly significant: the same 30 requests, paired (the permutation test's floor is
    # 1 / 20001 Monte Carlo draws)
    assert ms.method == "paired" and ms.p_adjusted is not None and ms.p_adjusted < 1e-3
    assert ms.verdict == "unchanged"
    assert "ms_per_request" not in {c.metric for c in comparison.regressions}


def test_the_same_requests_are_compared_paired_and_others_unpaired() -> None:
    """Requests of different lengths vary among themselves far more than between runs:
    paired, a 25% slowdown of 12 such requests stands out; unpaired it cannot."""

    def lengths_vary(rng: random.Random, slowdown: float, sampled: bool = False) -> TestRecord:
        test = make_test("t.py::test_a", rng, n=12, sigma=0.05, greedy=not sampled)
        scaled = []
        for i, trace in enumerate(test.traces):
            (response,) = trace.responses
            (g,) = response.generations
            scale = (1 + i % 6) * slowdown  # 1x to 6x as long, by prompt
            g = dataclasses.replace(g, e2e_ms=(g.e2e_ms or 0) * scale)
            scaled.append(
                dataclasses.replace(
                    trace, responses=(dataclasses.replace(response, generations=(g,)),)
                )
            )
        test.traces = scaled
        return test

    baseline = make_run(lengths_vary(random.Random(1), 1.0))
    slower = make_run(lengths_vary(random.Random(2), 1.25))
    ms = next(c for c in compare_runs(baseline, slower).changes if c.metric == "ms_per_request")
    assert ms.method == "paired" and ms.verdict == "regression", ms
    assert ms.relative_change == pytest.approx(0.25, abs=0.05)
    assert ms.ci_low is not None and ms.ci_low > 0.1

    sampled = make_run(lengths_vary(random.Random(2), 1.25, sampled=True))
    base_sampled = make_run(lengths_vary(random.Random(1), 1.0, sampled=True))
    unpaired = compare_runs(base_sampled, sampled).changes
    ms = next(c for c in unpaired if c.metric == "ms_per_request")
    assert ms.method == "mann-whitney" and ms.verdict == "insignificant", ms


def test_a_speedup_is_an_improvement_never_a_regression() -> None:
    baseline = make_run(make_test("t.py::test_a", random.Random(1)))
    candidate = make_run(make_test("t.py::test_a", random.Random(2), slowdown=0.7))
    comparison = compare_runs(baseline, candidate, thresholds={m: 0.05 for m in TIMED_AND_TOKENS})
    assert comparison.regressions == ()
    improved = {c.metric for c in comparison.improvements}
    assert improved == {"ms_per_request", "ttft_ms", "tpot_ms", "cpu_ms_per_request"}


def test_per_test_thresholds_override_and_unknown_metrics_are_refused() -> None:
    baseline = make_run(make_test("t.py::test_a", random.Random(1)))
    candidate = make_run(make_test("t.py::test_a", random.Random(2), slowdown=1.3))
    relaxed = compare_runs(
        baseline,
        candidate,
        thresholds={m: 0.10 for m in TIMED_AND_TOKENS},
        per_test_thresholds={"t.py::test_a": {"ms_per_request": 0.5, "ttft_ms": 0.5}},
    )
    assert change_of(relaxed, "ms_per_request") == "unchanged"
    assert change_of(relaxed, "tpot_ms") == "regression"
    with pytest.raises(ComparisonError, match="unknown metric 'ms'"):
        compare_runs(baseline, candidate, thresholds={"ms": 0.1})
    with pytest.raises(ComparisonError, match="relative change >= 0"):
        compare_runs(baseline, candidate, thresholds={"ms_per_request": -0.1})


def test_greedy_tokens_compare_request_by_request() -> None:
    lengths = [20 + i % 7 for i in range(30)]
    baseline = make_run(make_test("t.py::test_a", random.Random(1), tokens=lengths))

    def against(new_lengths: list[int], **thresholds: float) -> str:
        candidate = make_run(make_test("t.py::test_a", random.Random(1), tokens=new_lengths))
        return change_of(compare_runs(baseline, candidate, thresholds=thresholds), TOKENS_METRIC)

    longer = [*lengths[:-1], lengths[-1] + 5]
    assert against(longer) == "regression"  # default threshold 0 for exact tokens
    assert against(longer, tokens_per_request=0.05) == "exact-changed"
    assert against([*lengths[:-1], lengths[-1] - 1]) == "improvement"
    swapped = [lengths[1], lengths[0], *lengths[2:]]
    assert against(swapped) == "exact-changed"  # same total, different requests
    candidate = make_run(make_test("t.py::test_a", random.Random(1), tokens=longer))
    detail = next(
        c.detail
        for c in compare_runs(baseline, candidate, thresholds={}).changes
        if c.metric == TOKENS_METRIC
    )
    assert "1 of 30 requests differ" in detail


def test_sampled_or_mismatched_requests_compare_tokens_statistically() -> None:
    baseline = make_run(make_test("t.py::test_a", random.Random(1), greedy=False))
    candidate = make_run(make_test("t.py::test_a", random.Random(2), greedy=False))
    tokens = next(
        c
        for c in compare_runs(baseline, candidate, thresholds={}).changes
        if c.metric == TOKENS_METRIC
    )
    assert tokens.p_value is not None and not tokens.exact
    assert tokens.verdict in ("insignificant", "unchanged")
    fewer = make_run(make_test("t.py::test_a", random.Random(1), n=29))
    full = make_run(make_test("t.py::test_a", random.Random(1)))
    tokens = next(
        c for c in compare_runs(full, fewer, thresholds={}).changes if c.metric == TOKENS_METRIC
    )
    assert tokens.p_value is not None  # requests no longer match one-for-one


def test_different_hardware_or_engine_is_refused_unless_allowed() -> None:
    test = make_test("t.py::test_a", random.Random(1))
    baseline = make_run(test)
    other_cpu = make_run(test, hardware={**HARDWARE, "cpu_model": "Other CPU"})
    with pytest.raises(ComparisonError, match=r"'Test CPU' \(baseline\) vs 'Other CPU'"):
        compare_runs(baseline, other_cpu, thresholds={})
    other_engine = make_run(test, engine={**ENGINE, "spec": "vllm:model"})
    with pytest.raises(ComparisonError, match=r"transformers:smollm2-135m-instruct.*vllm:model"):
        compare_runs(baseline, other_engine, thresholds={})
    allowed = compare_runs(baseline, other_cpu, thresholds={}, allow_different_hardware=True)
    assert "cpu_model" in allowed.hardware_mismatch
    # the kernel release and memory size do not make runs incomparable
    rebooted = make_run(test, hardware={**HARDWARE, "release": "6.9", "memory_gb": 23.1})
    assert compare_runs(baseline, rebooted, thresholds={}).hardware_mismatch == ""
    assert hardware_key(baseline) == hardware_key(rebooted)
    assert len({hardware_key(r) for r in (baseline, other_cpu, other_engine)}) == 3
    gpu = make_run(test, engine={**ENGINE, "gpu": "NVIDIA H100 80GB HBM3"})
    assert hardware_key(gpu) != hardware_key(baseline)
    assert re.fullmatch(r"[0-9a-f]{16}", hardware_key(gpu))


def test_added_and_removed_tests_are_listed() -> None:
    rng = random.Random(1)
    baseline = make_run(make_test("t.py::test_a", rng), make_test("t.py::test_old", rng))
    candidate = make_run(make_test("t.py::test_a", rng), make_test("t.py::test_new", rng))
    comparison = compare_runs(baseline, candidate, thresholds={})
    assert comparison.added == ("t.py::test_new",)
    assert comparison.removed == ("t.py::test_old",)
    assert [t.nodeid for t in comparison.tests] == ["t.py::test_a"]


def test_a_malformed_run_is_an_error() -> None:
    good = make_run(make_test("t.py::test_a", random.Random(1)))
    with pytest.raises(ComparisonError, match="baseline run is not a valid saved run"):
        compare_runs({**good, "schema_version": 99}, good, thresholds={})


AA_PAIRS = 2000


def test_false_alarm_rate_of_a_a_comparisons_is_at_most_one_percent() -> None:
    """Baseline and candidate drawn from one lognormal distribution: a regression is a
    false alarm. Sampled requests, so every metric (tokens too) goes through the tests."""
    flagged = dict.fromkeys(TIMED_AND_TOKENS, 0)
    for seed in range(AA_PAIRS):
        rng = random.Random(seed)
        baseline = make_run(make_test("t.py::test_a", rng, greedy=False, sigma=0.25))
        candidate = make_run(make_test("t.py::test_a", rng, greedy=False, sigma=0.25))
        comparison = compare_runs(
            baseline, candidate, thresholds=dict.fromkeys(TIMED_AND_TOKENS, 0.05), resamples=0
        )
        for change in comparison.regressions:
            flagged[change.metric] += 1
    rates = {metric: count / AA_PAIRS for metric, count in flagged.items()}
    print(f"A/A false-alarm rate per metric over {AA_PAIRS} pairs: {rates}")
    assert max(rates.values()) <= 0.01, rates


@pytest.mark.parametrize("n", [1, 2, 5, 12, 16, 17, 30])
def test_the_paired_floor_is_the_smallest_p_the_permutation_test_gives(n: int) -> None:
    exact = n <= 16  # beyond, a Monte Carlo estimate whose floor is one draw in 20001
    observed = paired_permutation_p([1.0] * n)
    if exact:
        assert paired_min_p(n) == pytest.approx(observed, rel=1e-12)
    else:
        assert paired_min_p(n) <= observed <= 3 * paired_min_p(n)


@pytest.mark.parametrize(
    ("df", "exact"), [(2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (9, 2.262), (30, 2.042)]
)
def test_student_t_quantile_matches_the_table(df: int, exact: float) -> None:
    from pytest_inferbudget.metrics.significance import student_t_quantile

    assert student_t_quantile(0.975, df) == pytest.approx(exact, rel=1e-3)
    assert student_t_quantile(0.025, df) == pytest.approx(-exact, rel=1e-3)
    assert student_t_quantile(0.75, 1) == pytest.approx(1.0)  # Cauchy, exact


def _session(seed: int, shift: float, slowdown: float = 1.0) -> dict[str, object]:
    """A run whose every request moved together by ``shift`` (the machine's state that
    session), with small noise within the session: what per-request tests misjudge."""
    test = make_test(
        "t.py::test_a", random.Random(seed), n=20, sigma=0.03, slowdown=shift * slowdown
    )
    return make_run(test, run_id=f"run{seed}")


def test_history_absorbs_run_to_run_variation_that_per_request_tests_call_regressions() -> None:
    """Sessions shifted as a whole by lognormal noise of 15%: Mann-Whitney on requests
    calls many A/A pairs regressions; held against the spread of 8 saved runs, almost none;
    a 2x slowdown is still caught."""
    rng = random.Random(7)
    shifts = [rng.lognormvariate(0.0, 0.15) for _ in range(60)]
    plain = history_aware = 0
    pairs = 0
    for i in range(10, 60, 2):
        history = [_session(j, shifts[j]) for j in range(i - 8, i)]
        baseline, candidate = history[-1], _session(i, shifts[i])
        gate = {"ms_per_request": 0.05}
        without = compare_runs(baseline, candidate, thresholds=gate, resamples=0)
        within = compare_runs(baseline, candidate, thresholds=gate, resamples=0, history=history)
        plain += change_of(without, "ms_per_request") == "regression"
        history_aware += change_of(within, "ms_per_request") == "regression"
        pairs += 1
        change = next(c for c in within.changes if c.metric == "ms_per_request")
        assert change.history_runs == 8
    assert plain >= pairs // 5, (plain, pairs)  # the problem is real in this model
    assert history_aware <= 1, (history_aware, pairs)

    history = [_session(j, shifts[j]) for j in range(8)]
    slower = _session(50, shifts[50], slowdown=2.0)
    caught = compare_runs(history[-1], slower, resamples=0, history=history)
    ms = next(c for c in caught.changes if c.metric == "ms_per_request")
    assert ms.verdict == "regression" and "beyond the +-" in ms.detail, ms
    assert "history of 8 runs" in format_p(ms)


def test_history_needs_three_runs_of_the_test() -> None:
    history = [_session(j, 1.0) for j in range(2)]
    comparison = compare_runs(history[-1], _session(9, 1.3), resamples=0, history=history)
    ms = next(c for c in comparison.changes if c.metric == "ms_per_request")
    assert ms.history_runs == 0 and ms.method == "paired"


def test_a_past_step_in_the_history_does_not_hide_a_later_change() -> None:
    """Eight quiet runs with a 2x step after the fourth (an old, accepted slowdown): the
    standard deviation of those runs would allow about +-170%, the successive differences
    a few percent, so a new 40% slowdown is still called."""
    from pytest_inferbudget.compare.history import run_to_run_spread

    history = [_session(j, 1.0 if j < 4 else 2.0) for j in range(8)]
    slower = _session(50, 2.0, slowdown=1.4)
    comparison = compare_runs(history[-1], slower, resamples=0, history=history)
    ms = next(c for c in comparison.changes if c.metric == "ms_per_request")
    assert ms.verdict == "regression" and ms.history_runs == 8, ms
    medians = [1.0, 1.01, 0.99, 1.0, 2.0, 2.02, 1.98, 2.0]
    allowed = run_to_run_spread(medians, 0.05)
    assert allowed is not None and allowed < 0.1, allowed
