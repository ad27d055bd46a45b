"""SLO attainment, goodput and the saturation guard: pure functions of a load run's records.

Definitions (docs/load.md gives the sources):

- A request *meets* an SLO when it finished without error and each term holds:
  ``ttft_ms``, ``tpot_ms`` and ``e2e_ms`` at most their limits, and ``itl_ms`` bounding
  every gap between its output chunks. A one-token answer has no TPOT and meets that term
  (vLLM's goodput counts its TPOT as 0). Errors, timeouts and cancelled requests miss.
- *Attainment* is the share of measured requests meeting the SLO; "p99 TTFT <= X" is
  attainment >= 0.99 of ``{"ttft_ms": X}``. With a confidence level it has exact
  (Clopper-Pearson) one-sided bounds, so a floor is judged on the lower bound.
- *Goodput* is good requests over the run's duration (vLLM's ``calculate_metrics``), and
  good output tokens over it; with ``require_correct`` a request is good only when also
  scored correct.
- *Saturated*: completions fell behind arrivals. Over the second half of the arrival
  window (the first half lets the backlog reach its steady level), the backlog (arrived
  by the schedule, not finished) is read on an even grid and fitted by least squares
  against time; the completion rate is the arrival rate minus that slope. Saturated
  when completion rate / arrival rate < 0.98 (GuideLLM's threshold) and the backlog
  grew by more than
  ``max(2, 2 * sqrt(its mean))`` requests over the half (Poisson noise allows less).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_inferbudget.load.presets import SLO_PRESETS, SLO_TERMS
from pytest_inferbudget.load.schedule import LoadSpecError
from pytest_inferbudget.metrics.confidence import log_binomial_pmf
from pytest_inferbudget.metrics.stats import quantile
from pytest_inferbudget.records import LoadRequest, LoadRun, Saturation

SATURATION_RATIO = 0.98
"""GuideLLM's over-saturation threshold on completion rate / arrival rate."""
SATURATION_GRID = 20
"""Intervals of the even grid the backlog is read on."""
MIN_SATURATION_ARRIVALS = 8
"""Fewer arrivals in the judged half than this cannot show a trend: not judged."""


@dataclass(frozen=True, slots=True)
class Slo:
    """Per-request latency objectives in ms; a term left None is not checked."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None
    require_correct: bool = False
    """Good only when the request was also scored correct (``slo_requires_correct``)."""

    @classmethod
    def parse(cls, value: object, *, require_correct: bool = False) -> Slo:
        """From ``{"ttft_ms": 500, ...}``, a preset name, or term pairs."""
        if isinstance(value, Slo):
            return value
        if isinstance(value, str):
            if value not in SLO_PRESETS:
                raise LoadSpecError(
                    f"slo={value!r} is not a preset; presets: {', '.join(SLO_PRESETS)}"
                )
            value = dict(SLO_PRESETS[value].terms)
        items = value.items() if isinstance(value, Mapping) else value
        terms: dict[str, float] = {}
        for item in items if isinstance(items, Iterable) else ():
            name, limit = item
            if name not in SLO_TERMS:
                raise LoadSpecError(
                    f"slo term {name!r} is not one of {', '.join(SLO_TERMS)} (all in ms)"
                )
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
                raise LoadSpecError(f"slo term {name}={limit!r} must be a number of ms > 0")
            terms[name] = float(limit)
        if not terms:
            raise LoadSpecError(
                f"slo={value!r} holds no term; give a dict such as {{'ttft_ms': 500}} or "
                f"a preset name ({', '.join(SLO_PRESETS)})"
            )
        return cls(**terms, require_correct=require_correct)

    @property
    def terms(self) -> tuple[tuple[str, float], ...]:
        return tuple(
            (name, value) for name in SLO_TERMS if (value := getattr(self, name)) is not None
        )

    def describe(self) -> str:
        text = ", ".join(f"{name} <= {value:g}" for name, value in self.terms)
        return text + (", and correct" if self.require_correct else "")


def meets(request: LoadRequest, slo: Slo) -> bool:
    """Whether one request finished, met every term, and (if asked) was correct."""
    if not request.ok:
        return False
    if slo.require_correct and request.correct is not True:
        return False
    checks = (
        (slo.ttft_ms, request.ttft_ms),
        (slo.e2e_ms, request.e2e_ms),
        (slo.itl_ms, request.max_itl_ms if request.itl_ms else 0.0),
        (slo.tpot_ms, request.tpot_ms if request.completion_tokens > 1 else 0.0),
    )
    for limit, value in checks:
        if limit is not None and (value is None or value > limit):
            return False
    return True


def binomial_bounds(good: int, total: int, confidence: float) -> tuple[float, float]:
    """Exact one-sided Clopper-Pearson bounds on a success probability, each at
    ``confidence``: the lower bound is the p at which ``P(X >= good) = 1 - confidence``."""
    if total < 1 or not 0 <= good <= total:
        raise ValueError(f"need 0 <= good <= total, total >= 1; got {good}/{total}")
    alpha = 1.0 - confidence
    lower = 0.0 if good == 0 else _solve(lambda p: _upper_tail(good, total, p) - alpha)
    upper = 1.0 if good == total else _solve(lambda p: alpha - _lower_tail(good, total, p))
    return lower, upper


def _lower_tail(k: int, n: int, p: float) -> float:
    """P(X <= k), X ~ Binomial(n, p), 0 < p < 1."""
    return math.fsum(math.exp(log_binomial_pmf(n, p, i)) for i in range(k + 1))


def _upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k)."""
    return math.fsum(math.exp(log_binomial_pmf(n, p, i)) for i in range(k, n + 1))


def _solve(f: Callable[[float], float]) -> float:
    """The root in (0, 1) of an increasing function of p, by bisection to 1e-12."""
    lo, hi = 1e-15, 1.0 - 1e-15
    for _ in range(200):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


@dataclass(frozen=True, slots=True)
class SloSummary:
    """A run (or several, pooled) judged against one SLO."""

    slo: Slo
    total: int
    good: int
    errors: int
    duration_s: float
    good_tokens: int
    confidence: float | None = None
    lower: float | None = None
    upper: float | None = None

    @property
    def attainment(self) -> float | None:
        return self.good / self.total if self.total else None

    @property
    def goodput_rps(self) -> float | None:
        return self.good / self.duration_s if self.duration_s > 0 else None

    @property
    def good_tokens_per_s(self) -> float | None:
        return self.good_tokens / self.duration_s if self.duration_s > 0 else None


def summarize_slo(runs: Sequence[LoadRun], slo: Slo, confidence: float | None = None) -> SloSummary:
    """Attainment and goodput of the runs' measured requests, pooled."""
    requests = [r for run in runs for r in run.measured]
    good = [r for r in requests if meets(r, slo)]
    lower = upper = None
    if confidence is not None and requests:
        lower, upper = binomial_bounds(len(good), len(requests), confidence)
    return SloSummary(
        slo=slo,
        total=len(requests),
        good=len(good),
        errors=sum(1 for r in requests if not r.ok),
        duration_s=math.fsum(run.duration_s for run in runs),
        good_tokens=sum(r.completion_tokens for r in good),
        confidence=confidence,
        lower=lower,
        upper=upper,
    )


def run_duration(requests: Sequence[LoadRequest]) -> float:
    """First measured request's scheduled time to the last one's end (or, for one that
    never ended, its failure), as ``vllm bench serve`` times its benchmark."""
    measured = [r for r in requests if not r.warmup]
    if not measured:
        return 0.0
    start = min(r.scheduled_s for r in measured)
    ends = [r.done_s for r in measured if r.done_s is not None]
    return max(ends, default=start) - start


def saturation(requests: Sequence[LoadRequest], open_loop: bool = True) -> Saturation:
    """Whether completions kept up with arrivals; see the module's docstring. Arrivals are
    the scheduled times (the load offered; in process a request due mid-step arrived
    then), and the backlog is read on an even grid over the second half of the window."""
    if not open_loop:
        return Saturation(False, "closed loop: arrivals wait for completions, no backlog can grow")
    arrivals = sorted(r.scheduled_s for r in requests)
    if len(arrivals) < 2 * MIN_SATURATION_ARRIVALS:
        return Saturation(False, f"too few arrivals ({len(arrivals)}) to judge saturation")
    first, last = arrivals[0], arrivals[-1]
    middle = (first + last) / 2
    span = last - middle
    late_half = [t for t in arrivals if t >= middle]
    if len(late_half) < MIN_SATURATION_ARRIVALS or span <= 0:
        return Saturation(False, "too few arrivals in the second half of the run to judge it")
    ends = sorted(r.done_s if r.done_s is not None else math.inf for r in requests)
    grid = [middle + span * i / SATURATION_GRID for i in range(SATURATION_GRID + 1)]
    backlog = [float(_count_le(arrivals, t) - _count_le(ends, t)) for t in grid]
    slope = _slope(grid, backlog)
    arrival_rate = len(late_half) / span
    ratio = max(0.0, (arrival_rate - slope) / arrival_rate)
    growth = slope * span
    mean_backlog = math.fsum(backlog) / len(backlog)
    needed = max(2.0, 2.0 * math.sqrt(max(mean_backlog, 0.0)))
    saturated = ratio < SATURATION_RATIO and growth > needed
    if saturated:
        reason = (
            f"over-saturated: completions kept up with {ratio:.0%} of arrivals "
            f"({arrival_rate:.3g} req/s) and the backlog grew by {growth:.1f} requests over "
            f"the second half of the run (GuideLLM's rule: completion/arrival < "
            f"{SATURATION_RATIO:g} and a growing backlog); its latencies measure the queue"
        )
    else:
        reason = f"kept up: completion/arrival {ratio:.3f}, backlog growth {growth:.1f} requests"
    return Saturation(saturated, reason, ratio, growth)


def _count_le(values: Sequence[float], t: float) -> int:
    return bisect.bisect_right(values, t)


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    mx = math.fsum(xs) / len(xs)
    my = math.fsum(ys) / len(ys)
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


@dataclass(frozen=True, slots=True)
class Lateness:
    """How well the client kept the schedule."""

    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    unsent: int
    kept: bool
    note: str


def lateness(run: LoadRun, tolerance_ms: float) -> Lateness:
    """The measured requests' lateness; ``kept`` when its p99 is within ``tolerance_ms``
    and none went unsent. In process (clock ``scheduled``) a late request's wait is in its
    latency, so the figures stay honest; over HTTP they would not: the note says so."""
    values = [r.lateness_ms for r in run.measured if r.lateness_ms is not None]
    unsent = sum(1 for r in run.measured if r.sent_s is None and r.error is None)
    if not values:
        return Lateness(None, None, None, unsent, False, "no request was sent")
    p50, p99 = quantile(values, 0.5), quantile(values, 0.99)
    kept = p99 <= tolerance_ms and unsent == 0
    if kept:
        note = f"the client kept the schedule: p99 lateness {p99:.1f} ms"
    elif run.clock == "scheduled":
        note = (
            f"requests were added up to {max(values):.0f} ms late (p99 {p99:.1f} ms): they "
            "waited for the engine's step, as at a server; their latency clock starts at the "
            "scheduled time, so the wait is counted"
        )
    else:
        note = (
            f"the client could not keep the schedule: p99 lateness {p99:.1f} ms over the "
            f"{tolerance_ms:g} ms tolerance; the load offered was lower than asked"
        )
    return Lateness(p50, p99, max(values), unsent, kept, note)
