"""A run compared with its baseline, as data: per test, per metric, the change and its
verdict. Built by :mod:`pytest_inferbudget.compare`, shown by ``report``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, final

from pytest_inferbudget.records.codec import decode_float, encode_float
from pytest_inferbudget.vocabulary import Change

Method = Literal["mann-whitney", "exact", "point", "equal", "paired", "load-aware", "history"]


@final
@dataclass(frozen=True, slots=True)
class MetricChange:
    """One metric of one test, baseline against candidate."""

    nodeid: str
    metric: str
    unit: str
    baseline_median: float
    candidate_median: float
    relative_change: float
    """``(candidate - baseline) / baseline`` of the medians (of the totals, for an exact
    token comparison); ``inf`` when the baseline is 0 and the candidate is not."""
    p_value: float | None
    """Two-sided Mann-Whitney p-value; None for an exact comparison."""
    p_adjusted: float | None
    """Holm-adjusted across the metrics of this test; None for an exact comparison."""
    n_baseline: int
    n_candidate: int
    threshold: float
    verdict: Change
    ci_low: float | None = None
    ci_high: float | None = None
    """Bootstrap interval of the relative change of the median at level ``1 - alpha``."""
    detail: str = ""
    method: Method = "mann-whitney"
    """What judged it: Mann-Whitney U with Holm's correction, greedy token counts request
    by request (``exact``), the point change of a deterministic quantity too small a
    sample could never make significant (``point``), identical samples (``equal``), or a
    paired comparison (``paired``), a timing judged under different machine load
    (``load-aware``), or one within the run-to-run variation of saved runs (``history``)."""
    gated: bool = False
    """Its threshold was named (--inferbudget-compare-fail or ``compare_fail=``): a
    regression fails the run, and so does an inconclusive change under strict."""
    history_runs: int = 0
    """On how many saved runs its run-to-run variation was estimated (``history``); 0
    when it was judged without history."""

    @property
    def exact(self) -> bool:
        """Compared request by request (greedy token counts), not by a test."""
        return self.method == "exact"

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "metric": self.metric,
            "unit": self.unit,
            "baseline_median": self.baseline_median,
            "candidate_median": self.candidate_median,
            "relative_change": encode_float(self.relative_change),
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "threshold": self.threshold,
            "verdict": str(self.verdict),
            "ci_low": encode_float(self.ci_low),
            "ci_high": encode_float(self.ci_high),
            "detail": self.detail,
            "method": self.method,
            "gated": self.gated,
            "history_runs": self.history_runs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricChange:
        return cls(
            nodeid=data["nodeid"],
            metric=data["metric"],
            unit=data["unit"],
            baseline_median=data["baseline_median"],
            candidate_median=data["candidate_median"],
            relative_change=float(data["relative_change"]),
            p_value=data["p_value"],
            p_adjusted=data["p_adjusted"],
            n_baseline=data["n_baseline"],
            n_candidate=data["n_candidate"],
            threshold=data["threshold"],
            verdict=Change(data["verdict"]),
            ci_low=decode_float(data["ci_low"]),
            ci_high=decode_float(data["ci_high"]),
            detail=data["detail"],
            method=data.get("method", "exact" if data["p_value"] is None else "mann-whitney"),
            gated=bool(data.get("gated", False)),
            history_runs=int(data.get("history_runs", 0)),
        )


@final
@dataclass(frozen=True, slots=True)
class TestComparison:
    """Every compared metric of one test present in both runs."""

    __test__ = False  # not a pytest test class

    nodeid: str
    changes: tuple[MetricChange, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "changes": [c.to_dict() for c in self.changes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestComparison:
        return cls(data["nodeid"], tuple(MetricChange.from_dict(c) for c in data["changes"]))


@final
@dataclass(frozen=True, slots=True)
class Comparison:
    """A candidate run against a baseline run."""

    baseline_run_id: str
    candidate_run_id: str
    alpha: float
    tests: tuple[TestComparison, ...]
    added: tuple[str, ...] = ()
    """Tests only the candidate has."""
    removed: tuple[str, ...] = ()
    """Tests only the baseline has."""
    hardware_mismatch: str = ""
    """What differs between the runs' hardware or engine, when that was allowed; else ""."""
    baseline_label: str = ""
    """Which saved run was the baseline: its name, commit and date."""

    @property
    def gate_failures(self) -> tuple[MetricChange, ...]:
        """Gated regressions: what fails the run."""
        return tuple(c for c in self.regressions if c.gated)

    @property
    def changes(self) -> tuple[MetricChange, ...]:
        return tuple(c for t in self.tests for c in t.changes)

    @property
    def regressions(self) -> tuple[MetricChange, ...]:
        return tuple(c for c in self.changes if c.verdict is Change.REGRESSION)

    @property
    def improvements(self) -> tuple[MetricChange, ...]:
        return tuple(c for c in self.changes if c.verdict is Change.IMPROVEMENT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline_run_id": self.baseline_run_id,
            "candidate_run_id": self.candidate_run_id,
            "alpha": self.alpha,
            "hardware_mismatch": self.hardware_mismatch,
            "baseline_label": self.baseline_label,
            "summary": {
                "tests": len(self.tests),
                "added": len(self.added),
                "removed": len(self.removed),
                **{v.value: sum(c.verdict is v for c in self.changes) for v in Change},
            },
            "tests": [t.to_dict() for t in self.tests],
            "added": list(self.added),
            "removed": list(self.removed),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        return cls(
            baseline_run_id=data["baseline_run_id"],
            candidate_run_id=data["candidate_run_id"],
            alpha=data["alpha"],
            tests=tuple(TestComparison.from_dict(t) for t in data["tests"]),
            added=tuple(data["added"]),
            removed=tuple(data["removed"]),
            hardware_mismatch=data["hardware_mismatch"],
            baseline_label=data.get("baseline_label", ""),
        )
