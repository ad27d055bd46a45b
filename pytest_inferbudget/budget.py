"""Budget specs: parsed and checked at collection, judged against records after the test.

A budget marker holds limits (``ms_per_request=1500``, ``pass_at_k=(4, 0.5)``) and
modifiers (``stat="p95"``, ``confidence=0.95``). A marker's modifiers apply to the limits
in that same marker, so one test can hold a mean and a tail limit on the same key
through two markers; the same key with the same statistic given two different limits is
a conflict.

Two families of keys: *cost* keys sample each trace (one logical request) the test
recorded; *accuracy* keys aggregate the scores given with ``infer.score``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_inferbudget.errors import BudgetSpecError
from pytest_inferbudget.metrics import STATISTICS, summarize

if TYPE_CHECKING:
    from pytest_inferbudget.records import BudgetResult, Score, Trace

DEFAULT_STAT = "mean"
QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
COST_UNITS = {"tokens": "tokens", "ms": "ms"}
"""What a sample's cost can be counted in (energy joins when the meters record it)."""
BOOTSTRAP_CONFIDENCE = 0.95
"""Level of the interval shown beside accuracy metrics when no ``confidence`` is given."""


@dataclass(frozen=True, slots=True)
class CostMetric:
    """A quantity each trace (or each completion) has, limited from above."""

    key: str
    unit: str
    samples: Callable[[Trace], Sequence[float | None]]
    fixed_stat: str | None = None
    """Set for keys whose statistic is part of their meaning (``max_tokens`` is a maximum)."""
    unmeasured_hint: str = ""
    bounded: bool = False
    """Token counts are bounded by ``max_new_tokens``, which allows confident means."""
    needs_hardware: bool = False
    """Measured by a hardware meter: unmeasured here means skipped, not failed (unless
    strict), since the machine, not the code, lacks what the budget needs."""
    ratio: Callable[[Sequence[Trace], str], tuple[float | None, float]] | None = None
    """A total over the test (numerator, denominator) instead of per-trace samples."""


@dataclass(frozen=True, slots=True)
class AccuracyMetric:
    """A quantity computed from scored samples: a floor (at_least) or a cost (at_most)."""

    key: str
    direction: str
    takes_k: bool


COST_METRICS: dict[str, CostMetric] = {
    metric.key: metric
    for metric in (
        CostMetric(
            "max_tokens",
            "tokens",
            lambda t: [g.completion_tokens for g in t.generations],
            fixed_stat="max",
        ),
        CostMetric("tokens_per_request", "tokens", lambda t: [t.completion_tokens], bounded=True),
        CostMetric(
            "ms_per_request",
            "ms",
            lambda t: [t.e2e_ms],
            unmeasured_hint="the engine measured no end-to-end time (replayed results carry none)",
        ),
        CostMetric(
            "ttft_ms",
            "ms",
            lambda t: [t.ttft_ms],
            unmeasured_hint="the engine measured no time to first token",
        ),
        CostMetric(
            "tpot_ms",
            "ms",
            lambda t: [t.tpot_ms],
            unmeasured_hint="time per output token needs a completion of two or more tokens",
        ),
        CostMetric(
            "joules_per_token",
            "J/token",
            lambda t: [],
            fixed_stat="total",
            needs_hardware=True,
            ratio=lambda traces, kind: _joules_and_tokens(traces, kind),
        ),
        CostMetric(
            "joules_per_request",
            "J",
            lambda t: [],  # read through _energy_samples, which knows gross from net
            needs_hardware=True,
        ),
        CostMetric(
            "idealized_ms_per_request",
            "ms",
            lambda t: [t.idealized_ms],
            unmeasured_hint="no runtime profile: pass --inferbudget-profile PATH (make one with "
            "`inferbudget calibrate --engine SPEC --out PATH`)",
        ),
        CostMetric(
            "roofline_ratio",
            "x",
            lambda t: [t.roofline_ratio],
            unmeasured_hint="no hardware bound: pass --inferbudget-accelerator NAME "
            "(or cpu:PEAK_GFLOPS:BANDWIDTH_GBS)",
        ),
        CostMetric(
            "peak_memory_mb",
            "MB",
            lambda t: [t.peak_memory_mb],
            fixed_stat="max",
            needs_hardware=True,
            unmeasured_hint="the memory meter could not read this process's peak RSS",
        ),
    )
}
ENERGY_KEYS = ("joules_per_token", "joules_per_request")


def _joules_and_tokens(traces: Sequence[Trace], kind: str) -> tuple[float | None, float]:
    """Energy over the measured windows per output token, as vLLM's and Zeus's meters
    report it: a ratio of totals, not a mean of per-request ratios."""
    energies = [t.energy(kind) for t in traces]
    if not energies or any(e is None for e in energies):
        return None, 0.0
    return math.fsum(e for e in energies if e is not None), float(
        sum(t.completion_tokens for t in traces)
    )


def _energy_note(traces: Sequence[Trace]) -> str:
    for trace in traces:
        for response in trace.responses:
            if response.energy is None:
                return "no energy meter ran (--inferbudget-energy=off)"
            if response.energy.get("method") == "unmeasured":
                return f"energy unmeasured: {response.energy.get('note') or 'no meter'}"
    return "energy was not measured for every request"


ACCURACY_METRICS: dict[str, AccuracyMetric] = {
    metric.key: metric
    for metric in (
        AccuracyMetric("pass_at_k", "at_least", takes_k=True),
        AccuracyMetric("eff_at_k", "at_least", takes_k=True),
        AccuracyMetric("maj_at_k", "at_least", takes_k=True),
        AccuracyMetric("cost_of_pass", "at_most", takes_k=False),
        AccuracyMetric("e3", "at_least", takes_k=False),
    )
}

BUDGET_KEYS = (*COST_METRICS, *ACCURACY_METRICS)
MODIFIERS = (
    "stat",
    "confidence",
    "min_samples",
    "max_samples",
    "eff_reference",
    "eff_cost",
    "eff_alpha",
    "cost_unit",
    "energy",
    "hardware",
    "compare_fail",
)
ENERGY_KINDS = ("gross", "net")

PLANNED_KEYS: frozenset[str] = frozenset()
"""Keys DESIGN.md names that this version does not check yet: refused, never ignored."""


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    key: str
    limit: float
    stat: str
    k: int | None = None
    confidence: float | None = None
    reference: float | None = None
    """eff@k: the reference cost a sample is scored against."""
    cost: str = "tokens"
    """eff@k and cost-of-pass: what a sample's cost is counted in."""
    alpha: float = 2.0
    """eff@k: ENAMEL's censoring factor; a cost at or beyond alpha x reference scores 0."""
    energy: str = "gross"
    """Energy keys: ``gross`` as metered, or ``net`` of the idle power."""
    hardware: str | None = None
    """A pattern matched against the machine; None is the limit for any other machine."""

    @property
    def direction(self) -> str:
        metric = ACCURACY_METRICS.get(self.key)
        return metric.direction if metric else "at_most"

    @property
    def unit(self) -> str:
        if self.key in COST_METRICS:
            return COST_METRICS[self.key].unit
        if self.key == "cost_of_pass":
            return self.cost
        return ""

    @property
    def label(self) -> str:
        return f"{self.key}@{self.k}" if self.k is not None else self.key


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """Every limit on one test, and how many samples a sequential run may take."""

    limits: tuple[BudgetLimit, ...] = ()
    min_samples: int | None = None
    max_samples: int | None = None
    compare_fail: tuple[tuple[str, float], ...] = ()
    """Per-test regression thresholds, over --inferbudget-compare-fail's."""

    @property
    def confident(self) -> bool:
        return any(limit.confidence is not None for limit in self.limits)

    def __bool__(self) -> bool:
        return bool(self.limits)


def _where(where: str, key: str, value: object) -> str:
    return f"{where}: budget {key}={value!r}"


def _positive(value: object, *, where: str, key: str, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BudgetSpecError(
            f"{_where(where, key, value)} must be a number"
            + (f" (in {unit})" if unit else "")
            + f", got {type(value).__name__}"
        )
    if not math.isfinite(value) or value <= 0:
        raise BudgetSpecError(
            f"{_where(where, key, value)} must be a finite number above 0"
            + (f" (in {unit})" if unit else "")
        )
    return float(value)


def _count(value: object, *, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BudgetSpecError(f"{_where(where, key, value)} must be an integer >= 1")
    return value


def _k_and_floor(value: object, *, where: str, key: str) -> tuple[int, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise BudgetSpecError(
            f"{_where(where, key, value)} must be a pair (k, floor), for example {key}=(4, 0.5)"
        )
    k = _count(value[0], where=where, key=f"{key}[k]")
    floor = value[1]
    upper = math.inf if key == "eff_at_k" else 1.0
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 <= floor <= upper:
        bound = "0 or more" if key == "eff_at_k" else "between 0 and 1"
        raise BudgetSpecError(f"{_where(where, key, value)}: the floor must be {bound}")
    return k, float(floor)


def _choice(value: object, choices: Iterable[str], *, where: str, key: str) -> str:
    options = tuple(choices)
    if value not in options:
        raise BudgetSpecError(
            f"{_where(where, key, value)} is not one of {', '.join(repr(c) for c in options)}"
        )
    return str(value)


def parse_marker_kwargs(kwargs: Mapping[str, Any], *, where: str) -> list[BudgetLimit]:
    """Validate one ``budget`` marker's keywords; ``where`` names the test in errors."""
    for key in kwargs:
        if key not in BUDGET_KEYS and key not in MODIFIERS:
            raise BudgetSpecError(_unknown_key_message(key, where))
    stat = kwargs.get("stat", DEFAULT_STAT)
    if not isinstance(stat, str) or stat not in STATISTICS:
        raise BudgetSpecError(
            f"{where}: budget stat={stat!r} is not a statistic; "
            f"use one of {', '.join(repr(s) for s in STATISTICS)}"
        )
    confidence = kwargs.get("confidence")
    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, float)
        or not 0.5 <= confidence < 1
    ):
        raise BudgetSpecError(
            f"{_where(where, 'confidence', confidence)} must be a probability in [0.5, 1), "
            "such as 0.95"
        )
    reference = kwargs.get("eff_reference")
    if reference is not None:
        reference = _positive(reference, where=where, key="eff_reference", unit="")
    cost = _choice(kwargs.get("eff_cost", "tokens"), COST_UNITS, where=where, key="eff_cost")
    cost_unit = _choice(kwargs.get("cost_unit", "tokens"), COST_UNITS, where=where, key="cost_unit")
    energy = _choice(kwargs.get("energy", "gross"), ENERGY_KINDS, where=where, key="energy")
    alpha = _positive(kwargs.get("eff_alpha", 2.0), where=where, key="eff_alpha", unit="")
    if alpha <= 1:
        raise BudgetSpecError(f"{_where(where, 'eff_alpha', alpha)} must be above 1")
    limits: list[BudgetLimit] = []
    for key, value in kwargs.items():
        if key in COST_METRICS:
            metric = COST_METRICS[key]
            limit = _positive(value, where=where, key=key, unit=metric.unit)
            key_stat = metric.fixed_stat or stat
            key_confidence = None if metric.fixed_stat else confidence
            if key_confidence is not None:
                _check_confident_cost(metric, key_stat, where)
            limits.append(
                BudgetLimit(key, limit, key_stat, confidence=key_confidence, energy=energy)
            )
        elif key in ACCURACY_METRICS:
            if ACCURACY_METRICS[key].takes_k:
                k, floor = _k_and_floor(value, where=where, key=key)
                limits.append(
                    BudgetLimit(key, floor, "mean", k, confidence, reference, cost, alpha)
                )
            else:
                if confidence is not None:
                    raise BudgetSpecError(
                        f"{where}: budget {key} is a ratio of two random quantities and has "
                        "no confident verdict here; drop confidence= from its marker"
                    )
                unit = cost_unit if key == "cost_of_pass" else ""
                limit = _positive(value, where=where, key=key, unit=unit)
                limits.append(BudgetLimit(key, limit, "mean", cost=cost_unit))
    limits += _hardware_limits(kwargs, where)
    if not limits and "compare_fail" not in kwargs:
        raise BudgetSpecError(
            f"{where}: budget marker sets no limit; give at least one of {', '.join(BUDGET_KEYS)}"
        )
    if "eff_reference" in kwargs and not any(lim.key == "eff_at_k" for lim in limits):
        raise BudgetSpecError(f"{where}: eff_reference= is given without eff_at_k in its marker")
    return limits


def _hardware_limits(kwargs: Mapping[str, Any], where: str) -> list[BudgetLimit]:
    """``hardware={"cuda:*H100*": {"ms_per_request": 80}}``: limits for matching machines,
    taking the marker's modifiers unless they set their own."""
    variants = kwargs.get("hardware")
    if variants is None:
        return []
    if not isinstance(variants, Mapping) or not variants:
        raise BudgetSpecError(
            f"{_where(where, 'hardware', variants)} must map a machine pattern to limits, "
            "for example hardware={'cuda:*H100*': {'ms_per_request': 80}}"
        )
    outer = {k: v for k, v in kwargs.items() if k in MODIFIERS and k != "hardware"}
    limits = []
    for pattern, inner in variants.items():
        if not isinstance(pattern, str) or not isinstance(inner, Mapping) or not inner:
            raise BudgetSpecError(
                f"{where}: budget hardware entry {pattern!r}: {inner!r} must be a pattern "
                "string mapped to a dict of limits"
            )
        if "hardware" in inner:
            raise BudgetSpecError(f"{where}: budget hardware entries cannot nest hardware=")
        for limit in parse_marker_kwargs({**outer, **inner}, where=f"{where} [{pattern}]"):
            limits.append(dataclasses.replace(limit, hardware=pattern))
    return limits


def _check_confident_cost(metric: CostMetric, stat: str, where: str) -> None:
    if stat == "max":
        raise BudgetSpecError(
            f"{where}: budget {metric.key} with stat='max' and confidence: no finite sample "
            "bounds a maximum with confidence; use stat='p99' (or drop confidence)"
        )
    if stat == "mean" and not metric.bounded:
        raise BudgetSpecError(
            f"{where}: budget {metric.key} with stat='mean' and confidence: the mean of an "
            "unbounded quantity has no distribution-free confidence interval; use a quantile "
            "such as stat='p50' or stat='p90' with confidence"
        )


def _unknown_key_message(key: str, where: str) -> str:
    if key in PLANNED_KEYS:
        return (
            f"{where}: budget key {key!r} is not supported by this version of "
            f"pytest-inferbudget yet; supported keys: {', '.join(BUDGET_KEYS)}"
        )
    import difflib  # only on this error path: start-up stays light

    known = [*BUDGET_KEYS, *MODIFIERS]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{where}: unknown budget key {key!r}; {hint}known keys: {', '.join(known)}"


def parse_markers(
    markers: Iterable[tuple[Sequence[Any], Mapping[str, Any]]], *, where: str
) -> BudgetSpec:
    """Merge several ``budget`` markers (``(args, kwargs)`` each) into one spec."""
    merged: dict[tuple[str, str, int | None, str | None], BudgetLimit] = {}
    caps: dict[str, int] = {}
    gates: dict[str, float] = {}
    for args, kwargs in markers:
        if args:
            raise BudgetSpecError(
                f"{where}: budget takes keyword limits only, such as "
                f"@pytest.mark.budget(ms_per_request=500); got positional {tuple(args)!r}"
            )
        for limit in parse_marker_kwargs(kwargs, where=where):
            slot = (limit.key, limit.stat, limit.k, limit.hardware)
            earlier = merged.get(slot)
            if earlier is not None and earlier != limit:
                raise BudgetSpecError(
                    f"{where}: budget markers conflict on {limit.label} (stat {limit.stat}): "
                    f"{_describe(earlier)} vs {_describe(limit)}; keep one"
                )
            merged[slot] = limit
        gates.update(_compare_fail(kwargs.get("compare_fail"), where))
        for cap in ("min_samples", "max_samples"):
            if cap in kwargs:
                value = _count(kwargs[cap], where=where, key=cap)
                if caps.setdefault(cap, value) != value:
                    raise BudgetSpecError(
                        f"{where}: budget markers conflict on {cap}: {caps[cap]} vs {value}"
                    )
    spec = BudgetSpec(
        tuple(merged.values()),
        caps.get("min_samples"),
        caps.get("max_samples"),
        tuple(gates.items()),
    )
    if spec.min_samples and spec.max_samples and spec.min_samples > spec.max_samples:
        raise BudgetSpecError(
            f"{where}: budget min_samples={spec.min_samples} is above "
            f"max_samples={spec.max_samples}"
        )
    if (spec.min_samples or spec.max_samples) and not spec.confident:
        raise BudgetSpecError(
            f"{where}: min_samples/max_samples bound sequential sampling, which needs "
            "confidence=... on a budget of the same test"
        )
    return spec


def _compare_fail(value: object, where: str) -> dict[str, float]:
    """``compare_fail={"ms_per_request": "10%", "tokens_per_request": 0}``."""
    if value is None:
        return {}
    from pytest_inferbudget.compare import METRICS

    if not isinstance(value, Mapping):
        raise BudgetSpecError(
            f"{_where(where, 'compare_fail', value)} must map a metric to a threshold, "
            "for example compare_fail={'ms_per_request': '10%'}"
        )
    gates = {}
    for metric, threshold in value.items():
        if metric not in METRICS:
            raise BudgetSpecError(
                f"{where}: budget compare_fail names {metric!r}; compared metrics are "
                f"{', '.join(METRICS)}"
            )
        if isinstance(threshold, str) and threshold.endswith("%"):
            try:
                threshold = float(threshold[:-1]) / 100
            except ValueError:
                threshold = None
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
            raise BudgetSpecError(
                f"{where}: budget compare_fail[{metric!r}] must be a fraction >= 0 or a "
                "percentage such as '10%'"
            )
        gates[str(metric)] = float(threshold)
    return gates


def _describe(limit: BudgetLimit) -> str:
    text = f"{limit.limit:g}"
    if limit.confidence is not None:
        text += f" at confidence {limit.confidence:g}"
    return text


@dataclass(slots=True)
class _Judgement:
    measured: float | None
    samples: int
    verdict: str
    reason: str = ""
    ci: tuple[float | None, float | None] = (None, None)
    ci_confidence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def evaluate(
    spec: BudgetSpec | Iterable[BudgetLimit],
    traces: Sequence[Trace],
    scores: Sequence[Score] = (),
    *,
    sequential: bool = False,
    machine: str = "",
) -> list[BudgetResult]:
    """Judge each limit against the test's traces and scores.

    ``sequential`` says the samples were looked at after every batch, which calls for
    the anytime-valid construction for quantiles. ``machine`` (``"DEVICE: NAME"``) picks
    the ``hardware=`` limits that apply here.
    """
    from pytest_inferbudget.records import BudgetResult

    limits = select_for_machine(
        spec.limits if isinstance(spec, BudgetSpec) else tuple(spec), machine
    )
    results = []
    for limit in limits:
        if limit.key in COST_METRICS:
            judgement = _judge_cost(limit, traces, sequential)
        else:
            judgement = _judge_accuracy(limit, scores)
        results.append(
            BudgetResult(
                key=limit.label,
                limit=limit.limit,
                stat=limit.stat if limit.key in COST_METRICS else "",
                unit=limit.unit,
                measured=judgement.measured,
                samples=judgement.samples,
                verdict=judgement.verdict,
                reason=judgement.reason,
                direction=limit.direction,
                ci_low=judgement.ci[0],
                ci_high=judgement.ci[1],
                confidence=judgement.ci_confidence,
            )
        )
    return results


def needs_hardware(label: str) -> bool:
    """Whether a result's key is measured by a hardware meter (see CostMetric)."""
    metric = COST_METRICS.get(label)
    return metric is not None and metric.needs_hardware


def select_for_machine(limits: Sequence[BudgetLimit], machine: str) -> list[BudgetLimit]:
    """Per key, the first ``hardware=`` limit whose pattern matches ``machine``
    (shell-style, case-insensitive), else the marker's plain limit; a key with only
    non-matching hardware limits is not checked on this machine."""
    chosen: dict[tuple[str, str, int | None], BudgetLimit] = {}
    for limit in limits:
        slot = (limit.key, limit.stat, limit.k)
        if limit.hardware is None:
            chosen.setdefault(slot, limit)
        elif fnmatch.fnmatch(machine.lower(), limit.hardware.lower()) and (
            slot not in chosen or chosen[slot].hardware is None
        ):
            chosen[slot] = limit
    return list(chosen.values())


def _point_verdict(measured: float, limit: BudgetLimit) -> str:
    if limit.direction == "at_most":
        return "pass" if measured <= limit.limit else "fail"
    return "pass" if measured >= limit.limit else "fail"


def _judge_cost(limit: BudgetLimit, traces: Sequence[Trace], sequential: bool) -> _Judgement:
    metric = COST_METRICS[limit.key]
    if metric.ratio is not None:
        return _judge_total(limit, metric, traces)
    if limit.key == "joules_per_request":
        measured_values = [t.energy(limit.energy) for t in traces]
    else:
        measured_values = [value for t in traces for value in metric.samples(t)]
    samples = [value for value in measured_values if value is not None]
    if not samples:
        return _Judgement(None, 0, "unmeasured", _unmeasured_reason(metric, traces))
    measured = summarize(samples, limit.stat)
    if limit.confidence is None:
        return _Judgement(measured, len(samples), _point_verdict(measured, limit))
    from pytest_inferbudget.metrics import confidence as conf

    if limit.stat in QUANTILES:
        q = QUANTILES[limit.stat]
        ci: tuple[float | None, float | None] = conf.quantile_ci(samples, q, limit.confidence)
        judge = conf.quantile_sequential_verdict if sequential else conf.quantile_verdict
        verdict = str(judge(samples, q, limit.limit, limit.confidence))
    else:  # a bounded mean: token counts never exceed what the requests allowed
        bound = max(
            float(sum(r.request.max_new_tokens * r.request.n for r in t.responses)) for t in traces
        )
        ci = conf.mean_confidence_sequence(samples, lo=0.0, hi=bound, confidence=limit.confidence)
        verdict = str(
            conf.mean_verdict(
                samples,
                lo=0.0,
                hi=bound,
                limit=limit.limit,
                confidence=limit.confidence,
                direction="at_most",
            )
        )
    reason = "" if verdict != "inconclusive" else _inconclusive_reason(limit, len(samples))
    return _Judgement(measured, len(samples), verdict, reason, ci, limit.confidence)


def _unmeasured_reason(metric: CostMetric, traces: Sequence[Trace]) -> str:
    if not traces:
        return "the test recorded no generation"
    if metric.key in ENERGY_KEYS:
        return _energy_note(traces)
    return metric.unmeasured_hint or f"no request measured {metric.key}"


def _judge_total(limit: BudgetLimit, metric: CostMetric, traces: Sequence[Trace]) -> _Judgement:
    if metric.ratio is None:
        raise TypeError(f"{metric.key} is not a ratio of totals")
    numerator, denominator = metric.ratio(traces, limit.energy)
    if numerator is None:
        return _Judgement(None, 0, "unmeasured", _unmeasured_reason(metric, traces))
    if denominator == 0:
        return _Judgement(None, len(traces), "unmeasured", "the requests produced no tokens")
    measured = numerator / denominator
    return _Judgement(measured, len(traces), _point_verdict(measured, limit))


def _inconclusive_reason(limit: BudgetLimit, samples: int) -> str:
    return (
        f"the {limit.confidence:g} confidence interval from {samples} samples contains the "
        f"limit {limit.limit:g}; draw more samples (infer.sample_until_confident) or "
        "lower confidence"
    )


def _problems(scores: Sequence[Score]) -> dict[str, list[Score]]:
    groups: dict[str, list[Score]] = {}
    for score in scores:
        groups.setdefault(score.problem, []).append(score)
    return groups


def _sample_cost(score: Score, unit: str) -> float | None:
    return float(score.tokens) if unit == "tokens" else score.ms


def _judge_accuracy(limit: BudgetLimit, scores: Sequence[Score]) -> _Judgement:

    if not scores:
        return _Judgement(
            None,
            0,
            "unmeasured",
            "the test scored no sample; call infer.score(result, correct=...)",
        )
    groups = list(_problems(scores).values())
    if limit.k is not None:
        fewest = min(len(group) for group in groups)
        if limit.k > fewest:
            return _Judgement(
                None,
                len(scores),
                "unmeasured",
                f"{limit.label} needs at least {limit.k} samples of every problem, but a "
                f"problem has only {fewest} (samples per problem: "
                f"{sorted({len(g) for g in groups})}); lower k or draw more samples",
            )
    try:
        per_problem = _per_problem_values(limit, groups)
    except _Unmeasurable as exc:
        return _Judgement(None, len(scores), "unmeasured", str(exc))
    if per_problem is not None:
        measured = math.fsum(per_problem) / len(per_problem)
        if limit.confidence is not None:
            from pytest_inferbudget.metrics import confidence as conf

            hi = limit.alpha / (limit.alpha - 1) if limit.key == "eff_at_k" else 1.0
            ci = conf.mean_confidence_sequence(
                per_problem, lo=0.0, hi=hi, confidence=limit.confidence
            )
            verdict = str(
                conf.mean_verdict(
                    per_problem,
                    lo=0.0,
                    hi=hi,
                    limit=limit.limit,
                    confidence=limit.confidence,
                    direction="at_least",
                )
            )
            reason = (
                "" if verdict != "inconclusive" else _inconclusive_reason(limit, len(per_problem))
            )
            return _Judgement(measured, len(scores), verdict, reason, ci, limit.confidence)
        return _Judgement(
            measured,
            len(scores),
            _point_verdict(measured, limit),
            "",
            _bootstrap(per_problem),
            BOOTSTRAP_CONFIDENCE,
        )
    return _judge_ratio(limit, groups)


class _Unmeasurable(Exception):
    pass


def _per_problem_values(limit: BudgetLimit, groups: list[list[Score]]) -> list[float] | None:
    """pass@k, eff@k and maj@k average over problems, as the papers do."""
    from pytest_inferbudget.metrics import accuracy

    k = limit.k or 1
    if limit.key == "pass_at_k":
        return [accuracy.pass_at_k(len(g), sum(s.correct for s in g), k) for g in groups]
    if limit.key == "eff_at_k":
        return [accuracy.eff_at_k([_efficiency(s, limit) for s in g], k) for g in groups]
    if limit.key == "maj_at_k":
        values = []
        for group in groups:
            if any(s.answer is None and s.correct for s in group):
                raise _Unmeasurable(
                    "maj_at_k needs each sample's answer: pass answer=... to infer.score "
                    "(strategies fill it in)"
                )
            right = [s.answer for s in group if s.correct]
            if not right:
                values.append(0.0)
                continue
            values.append(accuracy.maj_at_k([s.answer for s in group], right[0], k))
        return values
    return None


def _efficiency(score: Score, limit: BudgetLimit) -> float:
    from pytest_inferbudget.metrics import accuracy

    if not score.correct:
        return 0.0
    if score.efficiency is not None:
        return score.efficiency
    if limit.reference is None:
        raise _Unmeasurable(
            "eff_at_k needs a reference cost: give eff_reference=... in the marker, or "
            "efficiency=... to infer.score"
        )
    cost = _sample_cost(score, limit.cost)
    if cost is None:
        raise _Unmeasurable(f"eff_at_k counts cost in {limit.cost}, which was not measured")
    return accuracy.efficiency_score(cost, limit.reference, limit.alpha)


def _judge_ratio(limit: BudgetLimit, groups: list[list[Score]]) -> _Judgement:
    """cost_of_pass and E3: statistics of all samples; intervals by resampling problems."""
    from pytest_inferbudget.metrics import accuracy

    def statistic(chosen: Sequence[list[Score]]) -> float:
        samples = [s for g in chosen for s in g]
        if limit.key == "cost_of_pass":
            costs = [_sample_cost(s, limit.cost) for s in samples]
            if any(c is None for c in costs):
                raise _Unmeasurable(f"cost_of_pass counts cost in {limit.cost}, not measured")
            return accuracy.cost_of_pass(
                [c for c in costs if c is not None], [s.correct for s in samples]
            )
        rate = sum(s.correct for s in samples) / len(samples)
        mean_tokens = sum(s.tokens for s in samples) / len(samples)
        if mean_tokens == 0:
            raise _Unmeasurable("e3 needs the scored samples to have cost tokens")
        return accuracy.e3(rate, mean_tokens)

    samples = sum(len(g) for g in groups)
    try:
        measured = statistic(groups)
    except _Unmeasurable as exc:
        return _Judgement(None, samples, "unmeasured", str(exc))
    ci = _bootstrap(
        [float(i) for i in range(len(groups))],
        lambda picked: statistic([groups[int(i)] for i in picked]),
    )
    reason = "no sample was correct, so a pass costs without bound" if math.isinf(measured) else ""
    return _Judgement(
        measured, samples, _point_verdict(measured, limit), reason, ci, BOOTSTRAP_CONFIDENCE
    )


def _bootstrap(
    values: list[float], statistic: Callable[[Sequence[float]], float] | None = None
) -> tuple[float | None, float | None]:
    from pytest_inferbudget.metrics import accuracy

    if len(values) < 2:
        return (None, None)
    if statistic is None:
        return accuracy.bootstrap_ci(values, confidence=BOOTSTRAP_CONFIDENCE, resamples=1000)
    return accuracy.bootstrap_ci(values, statistic, confidence=BOOTSTRAP_CONFIDENCE, resamples=1000)
