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

__all__ = ["LOAD_TOLERANCE", "judge_under_load"]

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
    if not KEYS[change.metric].wall_clock or change.verdict not in _CLAIMS:
        return change
    old = before.other_cpu_share if before is not None else None
    new = after.other_cpu_share if after is not None else None
    if old is None or new is None or abs(new - old) <= tolerance:
        return change
    busier = "busier" if new > old else "quieter"
    return dataclasses.replace(
        change,
        verdict=Change.INCONCLUSIVE,
        method="load-aware",
        detail=(
            f"machine {busier} than baseline: {new:.0%} vs {old:.0%} other CPU (a difference "
            f"over {tolerance:.0%}); would have been {change.verdict.value}"
            + (f" ({change.detail})" if change.detail else "")
        ),
    )
