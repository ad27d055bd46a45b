"""Comparing a run against a saved baseline: which changes are regressions.

A change is a *regression* only when it is both statistically significant and larger than
a tolerance: two-sided Mann-Whitney U on the per-request samples of each metric,
Holm-corrected across the metrics of one test, and a relative change of the median above
the metric's threshold. Token counts under greedy decoding are deterministic, so when the
requests of a test match one-for-one they are compared exactly instead.

Pure standard library; the inputs are two ``RunRecord.to_dict()`` dicts.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Any, final

from pytest_inferbudget.errors import InferBudgetError
from pytest_inferbudget.metrics.stats import quantile
from pytest_inferbudget.records import RunRecord, TestRecord, decode_float, encode_float
from pytest_inferbudget.report.terminal import format_value

METRICS: dict[str, str] = {
    "ms_per_request": "ms",
    "ttft_ms": "ms",
    "tpot_ms": "ms",
    "tokens_per_request": "tokens",
}
"""The metrics compared per test, with their units; all are costs (lower is better)."""

VERDICTS = (
    "regression",
    "improvement",
    "unchanged",
    "insignificant",
    "exact-equal",
    "exact-changed",
)
"""``regression``/``improvement``: significant and beyond the threshold, worse/better;
``unchanged``: significant but within the threshold; ``insignificant``: not significant;
``exact-equal``/``exact-changed``: greedy token counts compared request by request."""

EXACT_MAX_SAMPLES = 20
"""Mann-Whitney p-values are exact (no ties, both samples at most this size), else normal."""

HARDWARE_FIELDS = ("machine", "cpu_model", "cpu_count")
"""Fields of a run's ``hardware`` that decide whether two runs are comparable."""


class ComparisonError(InferBudgetError, ValueError):
    """Two runs cannot be compared: different hardware, a malformed run or bad settings."""


# --------------------------------------------------------------------------- statistics


def _finite_sample(name: str, values: Sequence[float]) -> list[float]:
    if len(values) == 0:
        raise ValueError(f"{name} is empty; a comparison needs at least one value per sample")
    checked = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}[{index}] must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name}[{index}] must be finite, got {value!r}")
        checked.append(float(value))
    return checked


def _midranks(pooled: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks 1..n of ``pooled``, ties sharing their mean rank; and the tie group sizes."""
    order = sorted(range(len(pooled)), key=pooled.__getitem__)
    ranks = [0.0] * len(pooled)
    groups = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and pooled[order[end + 1]] == pooled[order[start]]:
            end += 1
        rank = (start + end) / 2.0 + 1.0
        for position in range(start, end + 1):
            ranks[order[position]] = rank
        groups.append(end - start + 1)
        start = end + 1
    return ranks, groups


@lru_cache(maxsize=128)
def _u_cumulative_counts(n1: int, n2: int) -> tuple[int, ...]:
    """Cumulative counts of the orderings of n1 + n2 distinct values with U = 0, 1, ....

    ``f(m, n, u) = f(m - 1, n, u - n) + f(m, n - 1, u)``: the largest value is either
    from the first sample (beating all n of the second) or from the second. Exact integers;
    the total is ``comb(n1 + n2, n1)``.
    """
    previous = [[1] for _ in range(n1 + 1)]  # n = 0: U is 0 whatever m is
    for n in range(1, n2 + 1):
        current = [[1]]  # m = 0
        for m in range(1, n1 + 1):
            row = [0] * (m * n + 1)
            for u, count in enumerate(current[m - 1]):
                row[u + n] += count
            for u, count in enumerate(previous[m]):
                row[u] += count
            current.append(row)
        previous = current
    return tuple(accumulate(previous[n1]))


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mann-Whitney U of ``a`` against ``b`` and its two-sided p-value.

    ``U`` counts the pairs in which the value from ``a`` is larger, ties counting one half
    (``scipy.stats.mannwhitneyu``'s ``U1``); ``U`` below ``len(a) * len(b) / 2`` means
    ``b`` tends to be larger. Without ties and with both samples of at most
    :data:`EXACT_MAX_SAMPLES` values the p-value is exact, from the permutation
    distribution of U (``2 * P(U <= min(U, n1 n2 - U))``, capped at 1). Otherwise it is the
    normal approximation with the tie-corrected variance and a continuity correction of
    one half. All values tied gives p = 1.
    """
    first = _finite_sample("a", a)
    second = _finite_sample("b", b)
    n1, n2 = len(first), len(second)
    ranks, ties = _midranks(first + second)
    u = math.fsum(ranks[:n1]) - n1 * (n1 + 1) / 2.0
    mean = n1 * n2 / 2.0
    if max(ties) == 1 and n1 <= EXACT_MAX_SAMPLES and n2 <= EXACT_MAX_SAMPLES:
        cumulative = _u_cumulative_counts(n1, n2)
        smaller = round(min(u, n1 * n2 - u))
        return u, min(1.0, 2.0 * cumulative[smaller] / cumulative[-1])
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0.0:
        return u, 1.0
    z = max(0.0, abs(u - mean) - 0.5) / math.sqrt(variance)
    return u, min(1.0, math.erfc(z / math.sqrt(2.0)))


def bootstrap_log_ratio(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """``log(median(b) / median(a))`` and its percentile bootstrap interval.

    The statistic is the log of the ratio of medians: 0 for no change, ``log(1.3)`` for
    ``b`` 30% above ``a``; ``exp(x) - 1`` turns any of the three numbers into a relative
    change. Each resample draws ``a`` and ``b`` independently with replacement
    (``random.Random(seed)``, so it is reproducible); the bounds are the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled
    statistic. Every value must be positive (latencies, token counts of non-empty answers).
    """
    first = _finite_sample("a", a)
    second = _finite_sample("b", b)
    for name, values in (("a", first), ("b", second)):
        if min(values) <= 0.0:
            raise ValueError(f"{name} has a value <= 0; a log ratio needs positive values")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}; 2000 is typical")
    if not (isinstance(confidence, int | float) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    rng = random.Random(seed)
    median = statistics.median
    estimate = math.log(median(second) / median(first))
    stats = [
        math.log(
            median(rng.choices(second, k=len(second))) / median(rng.choices(first, k=len(first)))
        )
        for _ in range(resamples)
    ]
    tail = (1.0 - confidence) / 2.0
    return estimate, quantile(stats, tail), quantile(stats, 1.0 - tail)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given.

    Sorted ascending, the i-th smallest (from 0) of m becomes ``(m - i) * p``, made
    non-decreasing along the order and capped at 1; rejecting where the adjusted value is
    at most alpha controls the family-wise error rate at alpha.
    """
    for index, p in enumerate(p_values):
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p_values[{index}] must be a probability in [0, 1], got {p!r}")
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted


# --------------------------------------------------------------------------- results


@final
@dataclass(frozen=True, slots=True)
class MetricChange:
    """One metric of one test, baseline against candidate."""

    nodeid: str
    metric: str
    unit: str
    baseline_median: float
    candidate_median: float
    relative_change: float
    """``(candidate - baseline) / baseline`` of the medians (of the totals, for an exact
    token comparison); ``inf`` when the baseline is 0 and the candidate is not."""
    p_value: float | None
    """Two-sided Mann-Whitney p-value; None for an exact comparison."""
    p_adjusted: float | None
    """Holm-adjusted across the metrics of this test; None for an exact comparison."""
    n_baseline: int
    n_candidate: int
    threshold: float
    verdict: str
    ci_low: float | None = None
    ci_high: float | None = None
    """Bootstrap interval of the relative change of the median at level ``1 - alpha``."""
    detail: str = ""

    @property
    def exact(self) -> bool:
        """Compared request by request (greedy token counts), not by a test."""
        return self.p_value is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "metric": self.metric,
            "unit": self.unit,
            "baseline_median": self.baseline_median,
            "candidate_median": self.candidate_median,
            "relative_change": encode_float(self.relative_change),
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "threshold": self.threshold,
            "verdict": self.verdict,
            "ci_low": encode_float(self.ci_low),
            "ci_high": encode_float(self.ci_high),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricChange:
        return cls(
            nodeid=data["nodeid"],
            metric=data["metric"],
            unit=data["unit"],
            baseline_median=data["baseline_median"],
            candidate_median=data["candidate_median"],
            relative_change=float(data["relative_change"]),
            p_value=data["p_value"],
            p_adjusted=data["p_adjusted"],
            n_baseline=data["n_baseline"],
            n_candidate=data["n_candidate"],
            threshold=data["threshold"],
            verdict=data["verdict"],
            ci_low=decode_float(data["ci_low"]),
            ci_high=decode_float(data["ci_high"]),
            detail=data["detail"],
        )


@final
@dataclass(frozen=True, slots=True)
class TestComparison:
    """Every compared metric of one test present in both runs."""

    __test__ = False  # not a pytest test class

    nodeid: str
    changes: tuple[MetricChange, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "changes": [c.to_dict() for c in self.changes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestComparison:
        return cls(data["nodeid"], tuple(MetricChange.from_dict(c) for c in data["changes"]))


@final
@dataclass(frozen=True, slots=True)
class Comparison:
    """A candidate run against a baseline run."""

    baseline_run_id: str
    candidate_run_id: str
    alpha: float
    tests: tuple[TestComparison, ...]
    added: tuple[str, ...] = ()
    """Tests only the candidate has."""
    removed: tuple[str, ...] = ()
    """Tests only the baseline has."""
    hardware_mismatch: str = ""
    """What differs between the runs' hardware or engine, when that was allowed; else ""."""

    @property
    def changes(self) -> tuple[MetricChange, ...]:
        return tuple(c for t in self.tests for c in t.changes)

    @property
    def regressions(self) -> tuple[MetricChange, ...]:
        return tuple(c for c in self.changes if c.verdict == "regression")

    @property
    def improvements(self) -> tuple[MetricChange, ...]:
        return tuple(c for c in self.changes if c.verdict == "improvement")

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline_run_id": self.baseline_run_id,
            "candidate_run_id": self.candidate_run_id,
            "alpha": self.alpha,
            "hardware_mismatch": self.hardware_mismatch,
            "summary": {
                "tests": len(self.tests),
                "added": len(self.added),
                "removed": len(self.removed),
                **{v: sum(c.verdict == v for c in self.changes) for v in VERDICTS},
            },
            "tests": [t.to_dict() for t in self.tests],
            "added": list(self.added),
            "removed": list(self.removed),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        return cls(
            baseline_run_id=data["baseline_run_id"],
            candidate_run_id=data["candidate_run_id"],
            alpha=data["alpha"],
            tests=tuple(TestComparison.from_dict(t) for t in data["tests"]),
            added=tuple(data["added"]),
            removed=tuple(data["removed"]),
            hardware_mismatch=data["hardware_mismatch"],
        )


# --------------------------------------------------------------------------- hardware


def _gpu_names(engine: Mapping[str, Any]) -> list[str] | None:
    gpu = engine.get("gpu")
    if gpu is None or gpu == "":
        return None
    if isinstance(gpu, str):
        return [gpu]
    if isinstance(gpu, list | tuple):
        return sorted(str(g) for g in gpu)
    return [str(gpu)]


def _identity(run: Mapping[str, Any]) -> dict[str, Any]:
    hardware = run.get("hardware") or {}
    engine = run.get("engine") or {}
    if not isinstance(hardware, Mapping) or not isinstance(engine, Mapping):
        raise ComparisonError("a run's 'hardware' and 'engine' must be objects")
    return {
        **{name: hardware.get(name) for name in HARDWARE_FIELDS},
        "gpu": _gpu_names(engine),
        "engine_spec": engine.get("spec"),
    }


def hardware_key(run: Mapping[str, Any]) -> str:
    """16 hex digits identifying where a run ran: its machine type, CPU model and count,
    GPU names (``engine["gpu"]``) and engine spec. Runs with equal keys are comparable;
    the key is stable across processes and versions of Python (SHA-256 of sorted JSON)."""
    canonical = json.dumps(_identity(run), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _hardware_difference(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> str:
    before, after = _identity(baseline), _identity(candidate)
    return "; ".join(
        f"{name}: {before[name]!r} (baseline) vs {after[name]!r} (this run)"
        for name in before
        if before[name] != after[name]
    )


# --------------------------------------------------------------------------- comparison


def _parse(run: Mapping[str, Any], which: str) -> RunRecord:
    if not isinstance(run, Mapping):
        raise ComparisonError(f"the {which} run must be a dict (RunRecord.to_dict()), got {run!r}")
    try:
        return RunRecord.from_dict(dict(run))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ComparisonError(f"the {which} run is not a valid saved run: {exc!r}") from exc


def _samples(test: TestRecord) -> dict[str, list[float]]:
    """Per-trace samples of each metric; what was not measured is left out."""
    samples: dict[str, list[float]] = {metric: [] for metric in METRICS}
    for trace in test.traces:
        if not trace.generations:
            continue
        values = {
            "ms_per_request": trace.e2e_ms,
            "ttft_ms": trace.ttft_ms,
            "tpot_ms": trace.tpot_ms,
            "tokens_per_request": float(trace.completion_tokens),
        }
        for metric, value in values.items():
            if value is not None and math.isfinite(value):
                samples[metric].append(float(value))
    return samples


def _request_plan(test: TestRecord) -> list[tuple[str, list[dict[str, Any]]]] | None:
    """Each trace's strategy and requests, when every request was greedy; else None."""
    plan = []
    for trace in test.traces:
        if not trace.responses or not all(r.request.greedy for r in trace.responses):
            return None
        plan.append((trace.strategy, [r.request.to_dict() for r in trace.responses]))
    return plan or None


def _relative(baseline: float, candidate: float) -> float:
    if baseline == 0.0:
        return 0.0 if candidate == 0.0 else math.copysign(math.inf, candidate)
    return (candidate - baseline) / abs(baseline)


def _threshold(
    nodeid: str,
    metric: str,
    thresholds: Mapping[str, float],
    per_test: Mapping[str, Mapping[str, float]],
) -> float:
    override = per_test.get(nodeid, {})
    if metric in override:
        return float(override[metric])
    return float(thresholds.get(metric, 0.0))


def _check_thresholds(name: str, thresholds: Mapping[str, float]) -> None:
    for metric, value in thresholds.items():
        if metric not in METRICS:
            raise ComparisonError(
                f"{name} names unknown metric {metric!r}; compared metrics are {', '.join(METRICS)}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ComparisonError(
                f"{name}[{metric!r}] must be a relative change >= 0 (0.10 is 10%), got {value!r}"
            )


def _exact_tokens(
    nodeid: str, base: TestRecord, cand: TestRecord, threshold: float
) -> MetricChange:
    before = [t.completion_tokens for t in base.traces]
    after = [t.completion_tokens for t in cand.traces]
    differing = sum(x != y for x, y in zip(before, after, strict=True))
    total_before, total_after = sum(before), sum(after)
    change = _relative(float(total_before), float(total_after))
    if differing == 0:
        verdict = "exact-equal"
    elif change > threshold:
        verdict = "regression"
    elif change < -threshold:
        verdict = "improvement"
    else:
        verdict = "exact-changed"
    return MetricChange(
        nodeid=nodeid,
        metric="tokens_per_request",
        unit="tokens",
        baseline_median=float(statistics.median(before)),
        candidate_median=float(statistics.median(after)),
        relative_change=change,
        p_value=None,
        p_adjusted=None,
        n_baseline=len(before),
        n_candidate=len(after),
        threshold=threshold,
        verdict=verdict,
        detail=(
            f"greedy, compared exactly: {differing} of {len(before)} requests differ; "
            f"total {total_before} -> {total_after} tokens"
        ),
    )


def _compare_test(
    nodeid: str,
    base: TestRecord,
    cand: TestRecord,
    *,
    alpha: float,
    thresholds: Mapping[str, float],
    per_test: Mapping[str, Mapping[str, float]],
    resamples: int,
) -> TestComparison:
    before, after = _samples(base), _samples(cand)
    plan = _request_plan(base)
    exact = plan is not None and plan == _request_plan(cand)
    statistical = [
        m for m in METRICS if before[m] and after[m] and not (exact and m == "tokens_per_request")
    ]
    tests = [mann_whitney_u(before[m], after[m]) for m in statistical]
    adjusted = holm([p for _, p in tests])
    changes = {}
    for metric, (u, p), p_adj in zip(statistical, tests, adjusted, strict=True):
        threshold = _threshold(nodeid, metric, thresholds, per_test)
        base_median = statistics.median(before[metric])
        cand_median = statistics.median(after[metric])
        change = _relative(base_median, cand_median)
        # the candidate ranks higher when the baseline wins fewer than half of the pairs
        shift = u - len(before[metric]) * len(after[metric]) / 2.0
        if p_adj > alpha:
            verdict = "insignificant"
        elif change > threshold and shift < 0:
            verdict = "regression"
        elif change < -threshold and shift > 0:
            verdict = "improvement"
        else:
            verdict = "unchanged"
        ci_low = ci_high = None
        if resamples > 0 and min(before[metric]) > 0 and min(after[metric]) > 0:
            _, low, high = bootstrap_log_ratio(
                before[metric], after[metric], resamples=resamples, confidence=1.0 - alpha
            )
            ci_low, ci_high = math.expm1(low), math.expm1(high)
        changes[metric] = MetricChange(
            nodeid=nodeid,
            metric=metric,
            unit=METRICS[metric],
            baseline_median=base_median,
            candidate_median=cand_median,
            relative_change=change,
            p_value=p,
            p_adjusted=p_adj,
            n_baseline=len(before[metric]),
            n_candidate=len(after[metric]),
            threshold=threshold,
            verdict=verdict,
            ci_low=ci_low,
            ci_high=ci_high,
        )
    if exact:
        threshold = _threshold(nodeid, "tokens_per_request", thresholds, per_test)
        changes["tokens_per_request"] = _exact_tokens(nodeid, base, cand, threshold)
    return TestComparison(nodeid, tuple(changes[m] for m in METRICS if m in changes))


def compare_runs(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    *,
    thresholds: Mapping[str, float],
    alpha: float = 0.05,
    allow_different_hardware: bool = False,
    per_test_thresholds: Mapping[str, Mapping[str, float]] | None = None,
    resamples: int = 1000,
) -> Comparison:
    """Compare two saved runs (``RunRecord.to_dict()``) test by test, matched by nodeid.

    ``thresholds`` maps a metric of :data:`METRICS` to the relative change of its median
    tolerated (``0.10``: 10%); a metric not named has threshold 0, so any significant
    increase is a regression. ``per_test_thresholds[nodeid]`` overrides per test. Greedy
    token counts compared exactly use the same thresholds on the change of their total
    (default 0: any increase is a regression). ``resamples`` bootstrap resamples give each
    statistical change an interval (0 skips it; the verdict does not depend on it).

    Raises :class:`ComparisonError` if the runs ran on different hardware or engines
    (unless ``allow_different_hardware``), or for a malformed run or setting.
    """
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ComparisonError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ComparisonError(f"resamples must be an integer >= 0, got {resamples!r}")
    per_test = per_test_thresholds or {}
    _check_thresholds("thresholds", thresholds)
    for nodeid, overrides in per_test.items():
        _check_thresholds(f"per_test_thresholds[{nodeid!r}]", overrides)
    base_run, cand_run = _parse(baseline, "baseline"), _parse(candidate, "candidate")
    mismatch = _hardware_difference(baseline, candidate)
    if mismatch and not allow_different_hardware:
        raise ComparisonError(
            f"baseline run {base_run.run_id} (hardware key {hardware_key(baseline)}) and this "
            f"run {cand_run.run_id} (hardware key {hardware_key(candidate)}) ran on different "
            f"hardware or engines: {mismatch}; compare runs from the same machine and engine, "
            "or allow different hardware"
        )
    base_tests = {t.nodeid: t for t in base_run.tests}
    cand_tests = {t.nodeid: t for t in cand_run.tests}
    compared = tuple(
        _compare_test(
            test.nodeid,
            base_tests[test.nodeid],
            test,
            alpha=float(alpha),
            thresholds=thresholds,
            per_test=per_test,
            resamples=resamples,
        )
        for test in cand_run.tests
        if test.nodeid in base_tests
    )
    return Comparison(
        baseline_run_id=base_run.run_id,
        candidate_run_id=cand_run.run_id,
        alpha=float(alpha),
        tests=compared,
        added=tuple(t.nodeid for t in cand_run.tests if t.nodeid not in base_tests),
        removed=tuple(t.nodeid for t in base_run.tests if t.nodeid not in cand_tests),
        hardware_mismatch=mismatch,
    )


# --------------------------------------------------------------------------- display


def format_change(change: MetricChange) -> str:
    """``+12.3%``; ``+inf%`` from a zero baseline."""
    if math.isinf(change.relative_change):
        return "+inf%" if change.relative_change > 0 else "-inf%"
    return f"{change.relative_change:+.1%}"


def format_p(change: MetricChange) -> str:
    """``p=0.0012 (Holm 0.0048)``, or ``exact`` for an exact comparison."""
    if change.p_value is None or change.p_adjusted is None:
        return "exact"
    return f"{change.p_value:.2g} (Holm {change.p_adjusted:.2g})"


COMPARISON_HEADER = ("test", "metric", "baseline", "current", "change", "p", "verdict")


def comparison_rows(comparison: Comparison) -> list[tuple[str, ...]]:
    """One row per compared metric, for the terminal, Markdown and HTML tables."""
    rows: list[tuple[str, ...]] = []
    for test in comparison.tests:
        for change in test.changes:
            rows.append(
                (
                    test.nodeid,
                    change.metric,
                    format_value(change.baseline_median, change.unit),
                    format_value(change.candidate_median, change.unit),
                    format_change(change),
                    format_p(change),
                    change.verdict.upper() if change.verdict == "regression" else change.verdict,
                )
            )
    return rows


def summary_line(comparison: Comparison) -> str:
    """``2 regression(s), 1 improvement(s) in 5 test(s) against baseline RUN; 1 added``."""
    counts = [sum(c.verdict == v for c in comparison.changes) for v in VERDICTS]
    text = ", ".join(f"{n} {v}" for v, n in zip(VERDICTS, counts, strict=True) if n)
    text = (
        f"{len(comparison.regressions)} regression(s) in {len(comparison.tests)} test(s) "
        f"against baseline run {comparison.baseline_run_id}" + (f" ({text})" if text else "")
    )
    if comparison.added:
        text += f"; {len(comparison.added)} test(s) added"
    if comparison.removed:
        text += f"; {len(comparison.removed)} test(s) removed"
    if comparison.hardware_mismatch:
        text += f"; different hardware: {comparison.hardware_mismatch}"
    return text
