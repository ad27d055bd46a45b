"""Telling a slower build from a busier machine.

Requests of one session share the machine's state, so a test on per-request samples
(Mann-Whitney) treats a session under other load as slower code. Each test records how
much CPU other processes used during its engine calls
(:class:`~pytest_inferbudget.records.MachineLoad`); a wall-clock change between runs whose
loads differ materially is not blamed on the code.
"""

from __future__ import annotations

import dataclasses

from pytest_inferbudget.budget import KEYS
from pytest_inferbudget.records import MachineLoad, MetricChange
from pytest_inferbudget.vocabulary import Change

__all__ = ["LOAD_TOLERANCE", "explainable_change", "judge_under_load"]

LOAD_TOLERANCE = 0.10
"""How far the share of the machine's CPU that *other* processes used may differ between
the baseline's and the candidate's engine calls (0.10: ten percentage points) before a
wall-clock change is called inconclusive rather than blamed on the code."""


_CLAIMS = (Change.REGRESSION, Change.IMPROVEMENT, Change.UNCHANGED)
"""Verdicts that say the code changed (or did not) by a significant amount."""


def judge_under_load(
    change: MetricChange,
    before: MachineLoad | None,
    after: MachineLoad | None,
    tolerance: float,
) -> MetricChange:
    """A wall-clock change between runs under materially different machine load is
    ``inconclusive``, naming both loads: the load, not the code, may have moved it.

    Requests of one session share the machine's state, so a within-session test
    (Mann-Whitney on requests) cannot tell a busier machine from slower code.
    """
    if not KEYS[change.metric].load_sensitive or change.verdict not in _CLAIMS:
        return change
    old = before.other_cpu_share if before is not None else None
    new = after.other_cpu_share if after is not None else None
    if old is None or new is None or abs(new - old) <= tolerance:
        return change
    busier = "busier" if new > old else "quieter"
    loads = f"machine {busier} than baseline: {new:.0%} vs {old:.0%} other CPU"
    cores = max(before.cpu_count if before else 1, after.cpu_count if after else 1)
    explained = explainable_change(old, new, cores)
    measured = change.relative_change
    if change.verdict is not Change.UNCHANGED and abs(measured) > explained:
        return dataclasses.replace(
            change,
            detail=(
                f"{loads}, but a change of {measured:+.0%} is beyond the {explained:.0%} "
                "that load could explain" + (f"; {change.detail}" if change.detail else "")
            ),
        )
    return dataclasses.replace(
        change,
        verdict=Change.INCONCLUSIVE,
        method="load-aware",
        detail=(
            f"{loads} (a difference over {tolerance:.0%}); would have been "
            f"{change.verdict.value}" + (f" ({change.detail})" if change.detail else "")
        ),
    )


def explainable_change(old_share: float, new_share: float, cpu_count: int = 1) -> float:
    """The largest relative change of an engine's time that other processes' share of the
    machine moving from ``old_share`` to ``new_share`` could cause.

    The worst case is an engine with one thread per core that meet at barriers (torch's
    intra-op pool): it runs at the pace of its slowest thread, and other load worth
    ``share x cpu_count`` cores may all land on that thread's core, leaving it
    ``1 - share x cpu_count`` of it. Measured here, bursty load of a fifth of a 2-core
    machine stretched SmolLM2's requests by 50-100%, which this bound (+77%) covers only
    in part: past it, a change is still called, so a gate on a shared machine should
    compare runs under like load. Capped at a 20-fold change.
    """
    free_old = max(0.05, 1.0 - old_share * cpu_count)
    free_new = max(0.05, 1.0 - new_share * cpu_count)
    return abs(max(free_old, free_new) / min(free_old, free_new) - 1.0)
