"""What one load run measured: its record and the figures computed from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_inferbudget.load.slo import Lateness, Slo, SloSummary, lateness, summarize_slo
from pytest_inferbudget.metrics.stats import quantile
from pytest_inferbudget.records import LoadRequest, LoadRun, Response

LATENESS_TOLERANCE_MS = 10.0
"""p99 lateness beyond this says the client could not keep the schedule."""


@dataclass(slots=True)
class LoadResult:
    """One load run's figures. ``requests`` are the measured ones (warm-up left out)."""

    record: LoadRun
    slo: Slo | None = None
    confidence: float | None = None
    lateness_tolerance_ms: float = LATENESS_TOLERANCE_MS
    responses: dict[int, Response] = field(default_factory=dict)
    """Request index -> its response, for requests that finished (``infer`` traces)."""

    @property
    def requests(self) -> tuple[LoadRequest, ...]:
        return self.record.measured

    @property
    def errors(self) -> int:
        return sum(1 for r in self.requests if not r.ok)

    @property
    def duration_s(self) -> float:
        return self.record.duration_s

    @property
    def achieved_rate_rps(self) -> float | None:
        """Arrivals per second the client actually offered (from its send times)."""
        sent = sorted(r.sent_s for r in self.requests if r.sent_s is not None)
        if len(sent) < 2 or sent[-1] <= sent[0]:
            return None
        return (len(sent) - 1) / (sent[-1] - sent[0])

    @property
    def request_throughput(self) -> float | None:
        """Finished requests per second of the run (vLLM's ``request_throughput``)."""
        done = sum(1 for r in self.requests if r.ok)
        return done / self.duration_s if self.duration_s > 0 else None

    @property
    def output_tokens_per_s(self) -> float | None:
        tokens = sum(r.completion_tokens for r in self.requests if r.ok)
        return tokens / self.duration_s if self.duration_s > 0 else None

    @property
    def saturated(self) -> bool:
        return self.record.saturated

    @property
    def saturation_reason(self) -> str:
        return self.record.saturation.reason

    @property
    def lateness(self) -> Lateness:
        return lateness(self.record, self.lateness_tolerance_ms)

    @property
    def summary(self) -> SloSummary | None:
        """The run against its SLO (``slo=`` or the budget marker's); None without one."""
        if self.slo is None:
            return None
        return summarize_slo([self.record], self.slo, self.confidence)

    @property
    def attainment(self) -> float | None:
        summary = self.summary
        return None if summary is None else summary.attainment

    @property
    def goodput_rps(self) -> float | None:
        summary = self.summary
        return None if summary is None else summary.goodput_rps

    @property
    def good_tokens_per_s(self) -> float | None:
        summary = self.summary
        return None if summary is None else summary.good_tokens_per_s

    def percentile(self, metric: str, q: float) -> float | None:
        """The q-quantile (0..1) of ``ttft_ms``, ``tpot_ms``, ``e2e_ms`` or ``itl_ms``
        over the finished requests (ITL over every gap), as vLLM's bench reports them."""
        if metric == "itl_ms":
            values = [gap for r in self.requests if r.ok for gap in r.itl_ms]
        elif metric in ("ttft_ms", "tpot_ms", "e2e_ms"):
            values = [v for r in self.requests if r.ok and (v := getattr(r, metric)) is not None]
        else:
            raise ValueError(f"metric {metric!r} is not ttft_ms, tpot_ms, itl_ms or e2e_ms")
        return quantile(values, q) if values else None

    def figures(self) -> dict[str, float | int | bool | str | None]:
        """The headline figures, as vLLM's bench names them where it has them."""
        figures: dict[str, float | int | bool | str | None] = {
            "completed": sum(1 for r in self.requests if r.ok),
            "errors": self.errors,
            "duration_s": self.duration_s,
            "achieved_rate_rps": self.achieved_rate_rps,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_tokens_per_s,
            "saturated": self.saturated,
            "lateness_p99_ms": self.lateness.p99_ms,
        }
        for metric in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            figures[f"median_{metric}"] = self.percentile(metric, 0.5)
            figures[f"p99_{metric}"] = self.percentile(metric, 0.99)
        if self.slo is not None:
            figures.update(
                attainment=self.attainment,
                goodput_rps=self.goodput_rps,
                good_tokens_per_s=self.good_tokens_per_s,
            )
        return figures
