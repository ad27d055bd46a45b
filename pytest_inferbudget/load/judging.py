"""The load budget keys judged on a test's load runs and capacity searches.

Called by :mod:`pytest_inferbudget.verdicts` (which owns the budget table) with plain
values, so this package never imports the judging layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_inferbudget.load.slo import Slo, summarize_slo
from pytest_inferbudget.records import CapacitySearch, Judgement, LoadRun
from pytest_inferbudget.vocabulary import Verdict


def saturated_reason(runs: Sequence[LoadRun]) -> str:
    """Why a saturated run's latency and SLO budgets are not judged."""
    run = runs[0]
    rate = f" at {run.rate:g} req/s" if run.rate is not None else ""
    return (
        f"not judged: the load run{rate} was saturated ({run.saturation.reason}); lower "
        "the rate, or find the capacity with load.find_max_rate"
    )


def judge_load(
    key: str,
    floor: float,
    runs: Sequence[LoadRun],
    capacity: Sequence[CapacitySearch],
    *,
    slo: tuple[tuple[str, float], ...],
    requires_correct: bool,
    confidence: float | None,
) -> Judgement:
    """``attainment``, ``goodput_rps``, ``good_tokens_per_s`` on the runs (not probes),
    pooled; ``max_rate_rps`` on the capacity searches (the lowest, if several)."""
    if key == "max_rate_rps":
        if not capacity:
            return Judgement(
                None,
                0,
                Verdict.UNMEASURED,
                "the test ran no capacity search; call load.find_max_rate(...)",
            )
        found = min(c.max_rate_rps or 0.0 for c in capacity)
        probes = sum(len(c.probes) for c in capacity)
        notes = "; ".join(c.note for c in capacity if c.note)
        verdict = Verdict.PASS if found >= floor else Verdict.FAIL
        return Judgement(found, probes, verdict, notes)
    if not any(run.measured for run in runs):
        return Judgement(None, 0, Verdict.UNMEASURED, "the test ran no load; call load.run(...)")
    objective = Slo.parse(slo, require_correct=requires_correct)
    if requires_correct:
        unscored = [r for run in runs for r in run.measured if r.ok and r.correct is None]
        if unscored:
            return Judgement(
                None,
                len(unscored),
                Verdict.UNMEASURED,
                f"slo_requires_correct=True but {len(unscored)} finished request(s) were "
                "not scored; call load.score(result, correct=...)",
            )
    summary = summarize_slo(runs, objective, confidence)
    measured = {
        "attainment": summary.attainment,
        "goodput_rps": summary.goodput_rps,
        "good_tokens_per_s": summary.good_tokens_per_s,
    }[key]
    if measured is None:
        return Judgement(None, summary.total, Verdict.UNMEASURED, "the load run lasted no time")
    ci: tuple[float | None, float | None] = (None, None)
    if key == "attainment" and confidence is not None:
        ci = (summary.lower, summary.upper)
        if summary.lower is not None and summary.lower >= floor:
            verdict = Verdict.PASS
        elif summary.upper is not None and summary.upper < floor:
            verdict = Verdict.FAIL
        else:
            verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.PASS if measured >= floor else Verdict.FAIL
    reason = f"SLO {objective.describe()}: {summary.good} of {summary.total} requests good"
    if summary.errors:
        reason += f" ({summary.errors} failed)"
    saturated = [run for run in runs if run.saturated]
    if saturated:
        verdict = Verdict.INCONCLUSIVE
        reason = saturated_reason(saturated)
    elif verdict is Verdict.INCONCLUSIVE:
        reason += (
            f"; the {confidence:g} confidence interval contains {floor:g}: run longer (more "
            "requests) or lower confidence"
        )
    return Judgement(
        measured, summary.total, verdict, reason, ci, confidence if ci != (None, None) else None
    )
