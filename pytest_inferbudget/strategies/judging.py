"""The ``tokens_saved`` budget judged on a test's scores of two strategies.

Called by :mod:`pytest_inferbudget.verdicts` (which owns the budget table) with plain
values, so this package never imports the judging layer. The math is in
:mod:`pytest_inferbudget.metrics.noninferiority`; this module pairs the scores by problem
and says what it found.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_inferbudget.records import Judgement, Score
from pytest_inferbudget.vocabulary import Verdict


class _Unpairable(Exception):
    pass


def judge_paired(
    scores: Sequence[Score],
    *,
    versus: str,
    candidate: str | None,
    required: float,
    margin: float,
    confidence: float,
    interval_confidence: float,
) -> Judgement:
    """The candidate's tokens against the ``versus`` strategy's on the same problems (a
    ratio of totals, at least ``required`` saved) and its accuracy not shown worse by
    ``margin`` (Tango's paired score test at ``confidence``). Fails on either; passes
    when non-inferiority is shown; otherwise inconclusive. Unpairable scores are
    unmeasured, with the reason."""
    from pytest_inferbudget.metrics import noninferiority as ni

    try:
        name, cand, base = _paired_sides(scores, versus, candidate)
    except _Unpairable as exc:
        return Judgement(None, len(scores), Verdict.UNMEASURED, str(exc))
    problems = list(base)
    cand_tokens = [float(cand[p].tokens) for p in problems]
    base_tokens = [float(base[p].tokens) for p in problems]
    if not any(base_tokens):
        return Judgement(
            None, len(problems), Verdict.UNMEASURED, f"the baseline {versus} spent no tokens"
        )
    saved = ni.tokens_saved(cand_tokens, base_tokens)
    accuracy = ni.noninferiority(
        [cand[p].correct for p in problems],
        [base[p].correct for p in problems],
        margin=margin,
        confidence=confidence,
    )
    reason = (
        f"{name} vs {versus} over {len(problems)} problems: tokens {sum(cand_tokens):g} vs "
        f"{sum(base_tokens):g}, saved {saved:.1%} (required {required:.1%}); " + accuracy.describe()
    )
    if saved < required or accuracy.verdict is Verdict.FAIL:
        verdict = Verdict.FAIL
    else:
        verdict = accuracy.verdict
    ci: tuple[float | None, float | None] = (None, None)
    level = None
    if len(problems) >= 2:
        ci = ni.tokens_saved_ci(
            cand_tokens, base_tokens, confidence=interval_confidence, resamples=1000
        )
        level = interval_confidence
    per_problem = {p: base_tokens[i] - cand_tokens[i] for i, p in enumerate(problems)}
    return Judgement(saved, len(problems), verdict, reason, ci, level, per_problem)


def _paired_sides(
    scores: Sequence[Score], versus: str, candidate: str | None
) -> tuple[str, dict[str, Score], dict[str, Score]]:
    """The candidate's name, and its and the baseline's one score per problem, on the
    same problems."""
    if not scores:
        raise _Unpairable("the test scored no sample; call infer.score(result, correct=...)")
    by_strategy: dict[str, list[Score]] = {}
    for score in scores:
        by_strategy.setdefault(score.strategy, []).append(score)
    scored = ", ".join(repr(name) if name else "'' (plain requests)" for name in by_strategy)
    if versus not in by_strategy:
        raise _Unpairable(
            f"versus={versus!r} names no strategy this test scored; it scored {scored}. "
            "Name the baseline as its results carry it (strategy.name), and score both "
            "strategies' results with infer.score"
        )
    others = [other for other in by_strategy if other != versus]
    name = candidate or (others[0] if len(others) == 1 else None)
    if name is None:
        raise _Unpairable(
            f"tokens_saved needs exactly one strategy besides versus={versus!r}; the "
            f"test scored {scored}: pick one with candidate=..."
        )
    if name not in by_strategy:
        raise _Unpairable(
            f"candidate={name!r} names no strategy this test scored; it scored {scored}"
        )
    sides = []
    for side in (name, versus):
        groups: dict[str, list[Score]] = {}
        for score in by_strategy[side]:
            groups.setdefault(score.problem, []).append(score)
        repeated = [p for p, g in groups.items() if len(g) > 1]
        if repeated:
            raise _Unpairable(
                f"{side} scored problem {repeated[0]!r} {len(groups[repeated[0]])} times; a "
                "paired comparison takes one result per problem and strategy"
            )
        sides.append({p: g[0] for p, g in groups.items()})
    cand, base = sides
    unpaired = sorted(set(cand) ^ set(base))
    if unpaired:
        raise _Unpairable(
            f"{len(unpaired)} problem(s) scored by only one of {name} and {versus} "
            f"(such as {unpaired[0]!r}); a paired comparison needs both on every problem"
        )
    return name, cand, base
