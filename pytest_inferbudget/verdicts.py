"""Verdicts: each budget limit judged against what a test recorded.

Split from :mod:`pytest_inferbudget.budget` so that collection never loads it: the plugin
imports it once a budgeted test has run. Imports point one way: verdicts -> budget,
records, metrics.

Longer than 500 lines because every key family of the budget table (cost samples, ratios
of totals, accuracy scores, paired strategies, load and text keys) is judged here on one
verdict rule (confident bound, else point, else inconclusive with its reason); the pure
statistics live in :mod:`pytest_inferbudget.metrics`, the pairing of strategies in
:mod:`pytest_inferbudget.strategies.judging`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pytest_inferbudget.budget import (
    COST_KEYS,
    KEYS,
    LOAD_KEYS,
    TEXT_KEYS,
    TOKEN_COST_UNITS,
    BudgetLimit,
    BudgetSpec,
    Key,
    needs_hardware,
)
from pytest_inferbudget.metrics import summarize
from pytest_inferbudget.metrics.saturation import Saturation, saturation
from pytest_inferbudget.records import (
    BudgetResult,
    CapacitySearch,
    Judgement,
    LoadRun,
    Score,
    Trace,
)
from pytest_inferbudget.records.energy import MAX_RELATIVE_ERROR
from pytest_inferbudget.records.information import TextMeasurement
from pytest_inferbudget.vocabulary import QUANTILES, Direction, EnergyMethod, Outcome, Verdict

LATENCY_KEYS = frozenset({"ms_per_request", "ttft_ms", "tpot_ms"})
"""Per-request latencies: a saturated load run's are the queue's, so not judged."""
BOOTSTRAP_CONFIDENCE = 0.95
"""Level of the interval shown beside accuracy metrics when no ``confidence`` is given."""


def _energy_note(traces: Sequence[Trace]) -> str:
    for trace in traces:
        for response in trace.responses:
            if response.energy is None:
                return "no energy meter ran (--inferbudget-energy=off)"
            if response.energy.method is EnergyMethod.UNMEASURED:
                return f"energy unmeasured: {response.energy.note or 'no meter'}"
            error = response.energy.relative_error
            if error is not None and error > MAX_RELATIVE_ERROR:
                energy = response.energy
                calls = energy.window_calls or 1
                return (
                    f"the energy windows are too short for the counter: error bound "
                    f"{error:.0%} of the figure (over {MAX_RELATIVE_ERROR:.0%}) in a window "
                    f"of {calls} engine call{'s' if calls > 1 else ''} over "
                    f"{energy.window_s:.2f} s; make the test's engine calls longer or more "
                    "(a window joins consecutive calls until the bound holds; docs/energy.md)"
                )
            net = response.energy.net_energy_j
            bound = response.energy.error_j
            if net is not None and bound is not None and bound > MAX_RELATIVE_ERROR * abs(net):
                return (
                    f"net energy is not resolved: the counter's error bound ({bound:.3g} J) "
                    f"is over {MAX_RELATIVE_ERROR:.0%} of the net figure ({net:.3g} J) over "
                    f"the {response.energy.window_s:.2f} s window; budget gross energy, or "
                    "make the test's engine calls longer or more (docs/energy.md)"
                )
    return "energy was not measured for every request"


def samples_of(key: str, traces: Sequence[Trace], energy: str = "gross") -> list[float]:
    """Every measured sample of a cost key over the traces (unmeasured ones left out)."""
    sample = KEYS[key].sample
    if sample is None:
        raise TypeError(f"{key} has no per-trace samples")
    return [float(v) for t in traces for v in sample(t, energy) if v is not None]


def evaluate(
    spec: BudgetSpec | Iterable[BudgetLimit],
    traces: Sequence[Trace],
    scores: Sequence[Score] = (),
    *,
    sequential: bool = False,
    machine: str = "",
    capped_at: int | None = None,
    loads: Sequence[LoadRun] = (),
    capacity: Sequence[CapacitySearch] = (),
    texts: Sequence[TextMeasurement] = (),
) -> list[BudgetResult]:
    """Judge each limit against the test's traces and scores.

    ``sequential`` says the samples were looked at after every batch, which calls for
    the anytime-valid construction for quantiles. ``machine`` (``"DEVICE: NAME"``) picks
    the ``hardware=`` limits that apply here. ``capped_at`` says sequential sampling
    stopped at its ``max_samples`` cap: an inconclusive verdict then says so instead of
    advising more samples. ``loads`` and ``capacity`` are the test's load runs and
    capacity searches, judged by the load keys; a saturated load run makes the test's
    latency budgets inconclusive (docs/load.md). ``texts`` are the test's
    ``infer.measure_text`` results, judged by the text keys.
    """
    limits = select_for_machine(
        spec.limits if isinstance(spec, BudgetSpec) else tuple(spec), machine
    )
    results = []
    runs = [run for run in loads if not run.probe]
    saturated = [run for run in runs if run.saturated]
    for limit in limits:
        if limit.key in LOAD_KEYS:
            judgement = _judge_load(limit, runs, capacity)
        elif limit.key in TEXT_KEYS:
            judgement = _judge_text(limit, texts)
        elif limit.key in COST_KEYS:
            judgement = _judge_cost(limit, traces, sequential)
            if saturated and limit.key in LATENCY_KEYS:  # even with no sample: the queue's
                from pytest_inferbudget.load.judging import saturated_reason

                judgement.verdict = Verdict.INCONCLUSIVE
                judgement.reason = saturated_reason(saturated)
        elif KEYS[limit.key].paired:
            judgement = _judge_paired(limit, scores)
        else:
            judgement = _judge_accuracy(limit, scores)
        results.append(
            BudgetResult(
                key=limit.label,
                limit=limit.limit,
                stat=limit.stat if limit.key in COST_KEYS else "",
                unit=limit.unit,
                measured=judgement.measured,
                samples=judgement.samples,
                verdict=judgement.verdict,
                reason=_capped_reason(limit, judgement, capped_at),
                direction=limit.direction,
                ci_low=judgement.ci[0],
                ci_high=judgement.ci[1],
                confidence=judgement.ci_confidence,
                per_problem=judgement.per_problem,
            )
        )
    return results


def _judge_load(
    limit: BudgetLimit, runs: Sequence[LoadRun], capacity: Sequence[CapacitySearch]
) -> Judgement:
    from pytest_inferbudget.load.judging import judge_load

    return judge_load(
        limit.key,
        limit.limit,
        runs,
        capacity,
        slo=limit.slo,
        requires_correct=limit.requires_correct,
        confidence=limit.confidence,
    )


def _judge_text(limit: BudgetLimit, texts: Sequence[TextMeasurement]) -> Judgement:
    from pytest_inferbudget.perfmodel.information import text_figure

    measured, samples, reason = text_figure(limit.key, texts, limit.text)
    if measured is None:
        return Judgement(None, samples, Verdict.UNMEASURED, reason)
    return Judgement(measured, samples, _point_verdict(measured, limit))


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


def _point_verdict(measured: float, limit: BudgetLimit) -> Verdict:
    within = (
        measured <= limit.limit
        if limit.direction is Direction.AT_MOST
        else (measured >= limit.limit)
    )
    return Verdict.PASS if within else Verdict.FAIL


def _judge_cost(limit: BudgetLimit, traces: Sequence[Trace], sequential: bool) -> Judgement:
    metric = KEYS[limit.key]
    if metric.totals is not None:
        return _judge_total(limit, metric, traces)
    samples = samples_of(limit.key, traces, limit.energy)
    if not samples:
        return Judgement(None, 0, Verdict.UNMEASURED, _unmeasured_reason(limit.key, traces))
    measured = summarize(samples, limit.stat)
    if limit.confidence is None:
        return Judgement(measured, len(samples), _point_verdict(measured, limit))
    from pytest_inferbudget.metrics import confidence as conf

    if limit.stat in QUANTILES:
        q = QUANTILES[limit.stat]
        ci: tuple[float | None, float | None] = conf.quantile_ci(samples, q, limit.confidence)
        judge = conf.quantile_sequential_verdict if sequential else conf.quantile_verdict
        verdict = judge(samples, q, limit.limit, limit.confidence)
    else:  # a bounded mean: token counts never exceed what the requests allowed
        bound = max(
            float(sum(r.request.max_new_tokens * r.request.n for r in t.responses)) for t in traces
        )
        ci, verdict = _confident_mean(samples, bound, limit, limit.confidence)
    reason = (
        "" if verdict is not Verdict.INCONCLUSIVE else _inconclusive_reason(limit, len(samples))
    )
    return Judgement(measured, len(samples), verdict, reason, ci, limit.confidence)


def _confident_mean(
    samples: Sequence[float], hi: float, limit: BudgetLimit, confidence: float
) -> tuple[tuple[float | None, float | None], Verdict]:
    """The anytime-valid interval of a mean bounded in [0, hi], and the verdict it gives
    against the limit in the limit's direction."""
    from pytest_inferbudget.metrics import confidence as conf

    ci = conf.mean_confidence_sequence(samples, lo=0.0, hi=hi, confidence=confidence)
    verdict = conf.mean_verdict(
        samples, lo=0.0, hi=hi, limit=limit.limit, confidence=confidence, direction=limit.direction
    )
    return ci, verdict


def _unmeasured_reason(key: str, traces: Sequence[Trace]) -> str:
    if not traces:
        return "the test recorded no generation"
    if any(t.replayed for t in traces) and key not in (
        "idealized_ms_per_request",
        "eflops_per_request",
        "reasoning_tokens",
        "answer_tokens",
    ):
        return "replayed from a cassette: times, energy and memory are never replayed"
    if KEYS[key].unit.startswith("J"):
        return _energy_note(traces)
    return KEYS[key].unmeasured_hint or f"no request measured {key}"


def _judge_total(limit: BudgetLimit, metric: Key, traces: Sequence[Trace]) -> Judgement:
    if metric.totals is None:
        raise TypeError(f"{limit.key} is not a ratio of totals")
    parts = [metric.totals(t, limit.energy) for t in traces]
    if not parts or any(numerator is None for numerator, _ in parts):
        return Judgement(None, 0, Verdict.UNMEASURED, _unmeasured_reason(limit.key, traces))
    numerator = math.fsum(n for n, _ in parts if n is not None)
    denominator = math.fsum(d for _, d in parts)
    speculative = limit.key in ("spec_acceptance_rate", "spec_accept_length")
    if denominator == 0:
        empty = "the drafter proposed no token" if speculative else "no request produced tokens"
        return Judgement(None, len(traces), Verdict.UNMEASURED, empty)
    measured = numerator / denominator
    note = speculation_note(traces) if speculative else ""
    return Judgement(measured, len(traces), _point_verdict(measured, limit), note)


def speculation_note(traces: Sequence[Trace]) -> str:
    """What the i.i.d. model expects per verification step at the measured acceptance rate
    (shown beside the speculative keys, pass or fail; docs/speculative.md)."""
    from pytest_inferbudget.metrics.speculative import describe
    from pytest_inferbudget.records import Speculation

    c = Speculation.total([t.speculation for t in traces])
    return "" if c is None else describe(c.drafted, c.accepted, c.steps, c.gamma, c.approximate)


def _capped_reason(limit: BudgetLimit, judgement: Judgement, capped_at: int | None) -> str:
    if capped_at is None or judgement.verdict is not Verdict.INCONCLUSIVE:
        return judgement.reason
    return (
        f"still inconclusive when sequential sampling reached its cap, max_samples="
        f"{capped_at}: the {limit.confidence:g} confidence interval from "
        f"{judgement.samples} samples contains the limit {limit.limit:g}; the measured value "
        "is too close to the limit to tell at this confidence: raise max_samples, lower "
        "confidence, or set the limit further from the expected value"
    )


def _inconclusive_reason(limit: BudgetLimit, samples: int) -> str:
    return (
        f"the {limit.confidence:g} confidence interval from {samples} samples contains the "
        f"limit {limit.limit:g}; draw more samples (infer.sample_until_confident) or "
        "lower confidence"
    )


def sampling_saturation(scores: Sequence[Score], epsilon: float = 0.01) -> Saturation | None:
    """Whether a test's repeated samples paid: N* for its pass@1 and the coverage fit
    (:mod:`~pytest_inferbudget.metrics.saturation`); None when no problem was sampled twice."""
    groups: dict[tuple[str, str], list[Score]] = {}
    for score in scores:  # a test that scores several strategies samples each apart
        groups.setdefault((score.strategy, score.problem), []).append(score)
    counts = [(len(g), sum(s.correct for s in g)) for g in groups.values()]
    return saturation(counts, epsilon)


def wasted_samples_lint(nodeid: str, scores: Sequence[Score]) -> str:
    """The ``wasted_samples`` lint: "" unless the test drew more samples per problem than
    N* for its measured pass@1."""
    found = sampling_saturation(scores)
    if found is None or not found.wasted:
        return ""
    return (
        f"{nodeid}: wasted_samples: {found.wasted} sample(s) per problem past N*; "
        + found.describe()
    )


def _problems(scores: Sequence[Score]) -> dict[str, list[Score]]:
    groups: dict[str, list[Score]] = {}
    for score in scores:
        groups.setdefault(score.problem, []).append(score)
    return groups


def _sample_cost(score: Score, unit: str) -> float | None:
    if unit == "eflops":
        return score.eflops
    if unit in ("answer_tokens", "reasoning_tokens"):
        count = score.answer_tokens if unit == "answer_tokens" else score.reasoning_tokens
        return None if count is None else float(count)
    return float(score.tokens) if unit == "tokens" else score.ms


def _judge_accuracy(limit: BudgetLimit, scores: Sequence[Score]) -> Judgement:

    if not scores:
        return Judgement(
            None,
            0,
            Verdict.UNMEASURED,
            "the test scored no sample; call infer.score(result, correct=...)",
        )
    named = _problems(scores)
    groups = list(named.values())
    if limit.k is not None:
        fewest = min(len(group) for group in groups)
        if limit.k > fewest:
            return Judgement(
                None,
                len(scores),
                Verdict.UNMEASURED,
                f"{limit.label} needs at least {limit.k} samples of every problem, but a "
                f"problem has only {fewest} (samples per problem: "
                f"{sorted({len(g) for g in groups})}); lower k or draw more samples",
            )
    try:
        per_problem = _per_problem_values(limit, groups)
    except _Unmeasurable as exc:
        return Judgement(None, len(scores), Verdict.UNMEASURED, str(exc))
    if per_problem is not None:
        measured = math.fsum(per_problem) / len(per_problem)
        by_problem = dict(zip(named, per_problem, strict=True))
        if limit.confidence is not None:
            hi = limit.alpha / (limit.alpha - 1) if limit.key == "eff_at_k" else 1.0
            ci, verdict = _confident_mean(per_problem, hi, limit, limit.confidence)
            reason = ""
            if verdict is Verdict.INCONCLUSIVE:
                reason = _inconclusive_reason(limit, len(per_problem))
            return Judgement(
                measured, len(scores), verdict, reason, ci, limit.confidence, by_problem
            )
        verdict = _point_verdict(measured, limit)
        if len(per_problem) < 2:
            return Judgement(measured, len(scores), verdict, _ONE_PROBLEM, per_problem=by_problem)
        ci = _bootstrap(per_problem)
        return Judgement(measured, len(scores), verdict, "", ci, BOOTSTRAP_CONFIDENCE, by_problem)
    return _judge_ratio(limit, groups)


def _judge_paired(limit: BudgetLimit, scores: Sequence[Score]) -> Judgement:
    """``tokens_saved``: judged in :mod:`pytest_inferbudget.strategies.judging`."""
    from pytest_inferbudget.strategies.judging import judge_paired

    return judge_paired(
        scores,
        versus=str(limit.versus),
        candidate=limit.candidate,
        required=limit.limit,
        margin=limit.margin,
        confidence=limit.confidence or BOOTSTRAP_CONFIDENCE,
        interval_confidence=BOOTSTRAP_CONFIDENCE,
    )


_ONE_PROBLEM = (
    "no interval: the test scored one problem, and an interval resamples problems; "
    "score two or more problems for one"
)


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


def _judge_ratio(limit: BudgetLimit, groups: list[list[Score]]) -> Judgement:
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
        # E3 divides by generated tokens: all of them, or the part cost_unit names
        unit = limit.cost if limit.cost in TOKEN_COST_UNITS else "tokens"
        tokens = [_sample_cost(s, unit) for s in samples]
        if any(t is None for t in tokens):
            raise _Unmeasurable(f"e3 counts {unit}, which were not counted for every sample")
        mean_tokens = math.fsum(t for t in tokens if t is not None) / len(samples)
        if mean_tokens == 0:
            raise _Unmeasurable(f"e3 needs the scored samples to have cost {unit}")
        return accuracy.e3(rate, mean_tokens)

    samples = sum(len(g) for g in groups)
    try:
        measured = statistic(groups)
    except _Unmeasurable as exc:
        return Judgement(None, samples, Verdict.UNMEASURED, str(exc))
    reason = "no sample was correct, so a pass costs without bound" if math.isinf(measured) else ""
    if len(groups) < 2:
        return Judgement(measured, samples, _point_verdict(measured, limit), reason or _ONE_PROBLEM)
    ci = _bootstrap(
        [float(i) for i in range(len(groups))],
        lambda picked: statistic([groups[int(i)] for i in picked]),
    )
    return Judgement(
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


@dataclass(frozen=True, slots=True)
class Decision:
    """What the run does with a test after its budgets were judged, and why."""

    outcome: Outcome
    failing: tuple[BudgetResult, ...] = ()
    """The budgets that fail the test (with ``Outcome.FAIL``)."""
    unmeasured: tuple[BudgetResult, ...] = ()
    """Budgets the machine (a meter) or a replay could not measure (with ``Outcome.SKIP``)."""


def decide(budgets: Sequence[BudgetResult], *, strict: bool, replay: bool) -> Decision:
    """The pass / skip / warn / fail policy, as a pure function.

    A failed budget fails the test. What the machine lacks (a hardware meter) or a replay
    cannot carry (time, energy) is unmeasured, not violated: the test is skipped naming
    it, unless ``strict``. Any other unmeasured budget (the test scored nothing, too few
    samples for k) fails: the test did not give its budget anything to judge. An
    inconclusive confident budget warns, and fails under ``strict``.
    """
    excused = tuple(
        b for b in budgets if b.verdict is Verdict.UNMEASURED and (replay or needs_hardware(b.key))
    )
    failing = tuple(
        b
        for b in budgets
        if b.verdict is Verdict.FAIL
        or (b.verdict is Verdict.UNMEASURED and (strict or b not in excused))
        or (b.verdict is Verdict.INCONCLUSIVE and strict)
    )
    if failing:
        return Decision(Outcome.FAIL, failing, excused)
    if excused:
        return Decision(Outcome.SKIP, (), excused)
    if any(b.verdict is Verdict.INCONCLUSIVE for b in budgets):
        return Decision(Outcome.WARN)
    return Decision(Outcome.PASS)
