"""The capacity search: the highest Poisson rate at which an SLO's attainment holds.

Bracketing then bisection, as MLPerf Inference's server scenario and GuideLLM's goodput
profile search: probe ``start_rate``; double while probes pass (up to ``max_rate``) or
halve while they fail; then bisect between the highest passing and the lowest failing
rate until they are within ``precision`` (relative) or ``max_probes`` runs were made. A
saturated probe never passes; with a confidence level a probe passes on its lower bound,
and one whose interval straddles the target is indeterminate (GuideLLM's word), which
does not pass. Every probe is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_inferbudget.load.schedule import LoadSpecError
from pytest_inferbudget.load.slo import Slo, summarize_slo
from pytest_inferbudget.records import CapacityProbe, CapacitySearch

if TYPE_CHECKING:
    from pytest_inferbudget.load.result import LoadResult


@dataclass(frozen=True, slots=True)
class SearchSettings:
    slo: Slo
    attainment: float
    confidence: float | None = None
    start_rate: float = 1.0
    max_rate: float = 1000.0
    precision: float = 0.1
    max_probes: int = 10

    def check(self) -> None:
        if not 0 < self.attainment <= 1:
            raise LoadSpecError(f"attainment must be in (0, 1], got {self.attainment!r}")
        if (
            not 0 < self.start_rate <= self.max_rate
            or not 0 < self.precision < 1
            or self.max_probes < 2
        ):
            raise LoadSpecError(
                "find_max_rate needs 0 < start_rate <= max_rate, 0 < precision < 1 and "
                f"max_probes >= 2; got start_rate={self.start_rate!r}, max_rate="
                f"{self.max_rate!r}, precision={self.precision!r}, max_probes={self.max_probes!r}"
            )


@dataclass(frozen=True, slots=True)
class CapacityResult:
    """``load.find_max_rate``: the search's record and every probe's result, in order."""

    search: CapacitySearch
    probes: tuple[LoadResult, ...]

    @property
    def max_rate_rps(self) -> float | None:
        return self.search.max_rate_rps


def find_max_rate(
    run_at: Callable[[float], LoadResult], settings: SearchSettings, first_run: int = 0
) -> CapacityResult:
    """Search with ``run_at(rate)`` making one probe run; ``first_run`` is the index the
    first probe's run will have among the test's load runs."""
    settings.check()
    probes: list[CapacityProbe] = []
    results: list[LoadResult] = []

    def probe(rate: float) -> bool:
        result = run_at(rate)
        result.confidence = settings.confidence
        summary = summarize_slo([result.record], settings.slo, settings.confidence)
        share = summary.attainment or 0.0
        passed: bool | None
        if settings.confidence is None:
            passed = share >= settings.attainment
        elif summary.lower is not None and summary.lower >= settings.attainment:
            passed = True
        elif summary.upper is not None and summary.upper < settings.attainment:
            passed = False
        else:
            passed = None
        if result.saturated:
            passed = False
        index = first_run + len(probes)
        probes.append(
            CapacityProbe(
                rate, share, summary.lower, summary.upper, passed, result.saturated, index
            )
        )
        results.append(result)
        return passed is True

    low: float | None = None
    high: float | None = None
    rate = settings.start_rate
    while len(probes) < settings.max_probes:
        if probe(rate):
            low = rate
            if high is not None or rate >= settings.max_rate:
                break
            rate = min(rate * 2, settings.max_rate)
        else:
            high = rate
            if low is not None:
                break
            rate /= 2
    while low is not None and high is not None and len(probes) < settings.max_probes:
        if (high - low) / low <= settings.precision:
            break
        middle = (low + high) / 2
        if probe(middle):
            low = middle
        else:
            high = middle
    note = _note(low, high, settings, len(probes))
    search = CapacitySearch(settings.slo.terms, settings.attainment, tuple(probes), low, note)
    return CapacityResult(search, tuple(results))


def _note(low: float | None, high: float | None, settings: SearchSettings, used: int) -> str:
    if low is None:
        return f"no probe down to {high:.3g} req/s held the attainment" if high else ""
    if high is None:
        return f"every probe passed up to {low:.3g} req/s (max_rate): capacity is at least that"
    gap = (high - low) / low
    if gap <= settings.precision:
        return f"bracketed within {gap:.0%} ({low:.3g}..{high:.3g} req/s) in {used} probes"
    return (
        f"stopped after {settings.max_probes} probes with the capacity between {low:.3g} and "
        f"{high:.3g} req/s; raise max_probes for a tighter bracket"
    )
