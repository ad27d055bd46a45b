"""The closed vocabularies every layer shares: verdicts, directions, statistics, change
verdicts. One place, so a report, a saved run and a verdict never spell them apart.

PYTEST_DONT_REWRITE: loaded at start-up (budget markers are checked at collection) and
holds no asserts.

Every member is a ``StrEnum``: it compares equal to its value and serializes as it, so
the JSON reports keep the strings they always had.
"""

from __future__ import annotations

import enum
from typing import Final


class Verdict(enum.StrEnum):
    """What one budget says about what a test recorded."""

    PASS = "pass"
    """Within the limit (with the stated confidence, when one is given)."""
    FAIL = "fail"
    """Over the limit (with the stated confidence, when one is given)."""
    INCONCLUSIVE = "inconclusive"
    """The samples cannot tell at this confidence: the limit lies inside the interval."""
    UNMEASURED = "unmeasured"
    """Nothing measured the quantity: no meter, a replay, too few samples, no score."""


class Direction(enum.StrEnum):
    """Which side of a limit passes."""

    AT_MOST = "at_most"
    """A cost: the statistic must be at most the limit (latency, tokens, energy)."""
    AT_LEAST = "at_least"
    """A floor: the statistic must be at least the limit (pass@k, attainment)."""


class Outcome(enum.StrEnum):
    """What the run does with a test after its budgets were judged (``verdicts.decide``)."""

    PASS = "pass"
    FAIL = "fail"
    """A budget failed, or (strict) one was inconclusive or unmeasured."""
    SKIP = "skip"
    """Only hardware the machine lacks (a meter) or a replay left budgets unmeasured."""
    WARN = "warn"
    """A confident budget stayed inconclusive; strict mode fails instead."""


class Change(enum.StrEnum):
    """A compared metric's verdict, baseline against candidate."""

    REGRESSION = "regression"
    """Significant and beyond the threshold, in the worse direction."""
    IMPROVEMENT = "improvement"
    """Significant and beyond the threshold, in the better direction."""
    UNCHANGED = "unchanged"
    """Significant, but within the threshold."""
    INSIGNIFICANT = "insignificant"
    """The samples differ, but not significantly."""
    EQUAL = "equal"
    """Every sample identical on both sides: nothing to test."""
    INCONCLUSIVE = "inconclusive"
    """Too few samples for the test ever to reach significance at this level: the
    change is shown, not judged (fails under --inferbudget-strict)."""
    EXACT_EQUAL = "exact-equal"
    """Greedy token counts compared request by request: all equal."""
    EXACT_CHANGED = "exact-changed"
    """Greedy token counts compared request by request: some differ, within threshold."""


class Statistic(enum.StrEnum):
    """What a budget's ``stat=`` may name (the functions are in ``metrics.stats``)."""

    MEAN = "mean"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"
    MAX = "max"


class EnergyMethod(enum.StrEnum):
    """How an energy figure was obtained (``EnergyMeasurement.method``; see docs/energy.md)."""

    COUNTER = "counter"
    """Difference of NVML's total-energy counter (millijoules, Volta and newer)."""
    POWER_INTEGRATION = "power_integration"
    """NVML power readings integrated over time: the GPU has no energy counter, or the
    counter did not move in a window shorter than its update period (power x time)."""
    RAPL = "rapl"
    """Difference of the RAPL package counters of Linux's powercap tree (CPU packages)."""
    UNMEASURED = "unmeasured"
    """No figure at all: no meter, a counter that stood still or went backwards."""


QUANTILES: Final[dict[str, float]] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
"""The statistics that are quantiles, with their level."""

STATISTICS: Final[tuple[str, ...]] = tuple(s.value for s in Statistic)
