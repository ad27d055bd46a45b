"""What a run concluded: budget verdicts per test, and the run as saved and reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_inferbudget.records.codec import decode_float, encode_float
from pytest_inferbudget.records.comparison import Comparison
from pytest_inferbudget.records.engine import EngineInfo
from pytest_inferbudget.records.information import TextMeasurement
from pytest_inferbudget.records.load import CapacitySearch, LoadRun
from pytest_inferbudget.records.machine import MachineLoad
from pytest_inferbudget.records.requests import Response, Score, Trace
from pytest_inferbudget.records.sweep import EngineSweep, RelativeLimit
from pytest_inferbudget.vocabulary import Direction, Verdict


@dataclass(slots=True)
class Judgement:
    """One limit judged, before it becomes a :class:`BudgetResult`: what every judge
    (cost samples, scores, load runs, paired strategies) returns to ``verdicts``."""

    measured: float | None
    samples: int
    verdict: Verdict
    reason: str = ""
    ci: tuple[float | None, float | None] = (None, None)
    ci_confidence: float | None = None
    per_problem: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BudgetResult:
    """One budget checked against a test's records."""

    key: str
    limit: float
    stat: str
    unit: str
    measured: float | None
    samples: int
    verdict: Verdict
    reason: str = ""
    direction: Direction = Direction.AT_MOST
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    """Level of the interval ``[ci_low, ci_high]``; None when none was computed."""
    per_problem: dict[str, float] = field(default_factory=dict)
    """Accuracy keys averaged over problems (pass@k, maj@k, eff@k): each problem's value,
    so a later run can be compared problem by problem. Empty for other keys."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "limit": self.limit,
            "stat": self.stat,
            "unit": self.unit,
            "measured": encode_float(self.measured),
            "samples": self.samples,
            "verdict": str(self.verdict),
            "reason": self.reason,
            "direction": str(self.direction),
            "ci_low": encode_float(self.ci_low),
            "ci_high": encode_float(self.ci_high),
            "confidence": self.confidence,
            **({"per_problem": self.per_problem} if self.per_problem else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BudgetResult:
        return cls(
            key=data["key"],
            limit=data["limit"],
            stat=data["stat"],
            unit=data["unit"],
            measured=decode_float(data["measured"]),
            samples=data["samples"],
            verdict=Verdict(data["verdict"]),
            reason=data["reason"],
            direction=Direction(data["direction"]),
            ci_low=decode_float(data["ci_low"]),
            ci_high=decode_float(data["ci_high"]),
            confidence=data["confidence"],
            per_problem=dict(data.get("per_problem", {})),
        )


@dataclass(slots=True)
class TestRecord:
    """Everything one test recorded, and its budgets' verdicts."""

    __test__ = False  # not a pytest test class

    nodeid: str
    traces: list[Trace] = field(default_factory=list)
    budgets: list[BudgetResult] = field(default_factory=list)
    outcome: str = ""
    """The pytest outcome of the test's call phase: passed, failed, skipped or xfailed."""
    scores: list[Score] = field(default_factory=list)
    compare_fail: dict[str, float] = field(default_factory=dict)
    """This test's own regression thresholds (budget marker ``compare_fail``)."""
    contended: bool = False
    """Run by one of several xdist workers sharing one GPU: its timings and energy
    include the other workers' load."""
    machine: MachineLoad | None = None
    """How busy the machine was during the test's engine calls (None: not measured)."""
    loads: list[LoadRun] = field(default_factory=list)
    """Every ``load.run`` of the test (and every capacity-search probe), request by request."""
    capacity: list[CapacitySearch] = field(default_factory=list)
    """Every ``load.find_max_rate`` of the test."""
    ab_traces: list[Trace] = field(default_factory=list)
    """Under ``--inferbudget-ab``: the second engine's trace of each of ``traces`` (the
    same requests, served in randomized alternation), in the same order."""
    texts: list[TextMeasurement] = field(default_factory=list)
    """Every ``infer.measure_text`` of the test (information capacity, bits per byte)."""
    engine: str = ""
    """In an engine sweep (several ``--inferbudget-engine``): the id of the engine that ran
    this test; "" when the session had one engine."""
    relative_to_best: list[RelativeLimit] = field(default_factory=list)
    """The marker's ``relative_to_best`` limits, judged across the sweep's engines."""

    @property
    def responses(self) -> list[Response]:
        return [r for t in self.traces for r in t.responses]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "budgets": [b.to_dict() for b in self.budgets],
            "traces": [t.to_dict() for t in self.traces],
            "scores": [s.to_dict() for s in self.scores],
            "compare_fail": self.compare_fail,
            "contended": self.contended,
            "machine": None if self.machine is None else self.machine.to_dict(),
            **({"loads": [run.to_dict() for run in self.loads]} if self.loads else {}),
            **({"capacity": [c.to_dict() for c in self.capacity]} if self.capacity else {}),
            **({"ab_traces": [t.to_dict() for t in self.ab_traces]} if self.ab_traces else {}),
            **({"texts": [t.to_dict() for t in self.texts]} if self.texts else {}),
            **({"engine": self.engine} if self.engine else {}),
            **(
                {"relative_to_best": [r.to_dict() for r in self.relative_to_best]}
                if self.relative_to_best
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestRecord:
        return cls(
            nodeid=data["nodeid"],
            outcome=data["outcome"],
            budgets=[BudgetResult.from_dict(b) for b in data["budgets"]],
            traces=[Trace.from_dict(t) for t in data["traces"]],
            scores=[Score.from_dict(s) for s in data["scores"]],
            compare_fail=data.get("compare_fail", {}),
            contended=data.get("contended", False),
            machine=MachineLoad.from_dict(data.get("machine")),
            loads=[LoadRun.from_dict(run) for run in data.get("loads", [])],
            capacity=[CapacitySearch.from_dict(c) for c in data.get("capacity", [])],
            ab_traces=[Trace.from_dict(t) for t in data.get("ab_traces", [])],
            texts=[TextMeasurement.from_dict(t) for t in data.get("texts", [])],
            engine=data.get("engine", ""),
            relative_to_best=[RelativeLimit.from_dict(r) for r in data.get("relative_to_best", [])],
        )


SCHEMA_VERSION = 1
"""Version of the JSON report layout; bumped on any incompatible change."""


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """The git commit a run tested."""

    id: str
    branch: str | None
    """None on a detached HEAD."""
    time: str | None
    """Commit time, ISO 8601."""
    dirty: bool
    """The work tree had uncommitted changes to tracked files."""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "branch": self.branch, "time": self.time, "dirty": self.dirty}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommitInfo:
        return cls(data["id"], data.get("branch"), data.get("time"), bool(data.get("dirty")))


@dataclass(slots=True)
class RunRecord:
    """One pytest session: where it ran and every test's record."""

    run_id: str
    started_at: str
    """ISO 8601, UTC."""
    finished_at: str = ""
    engine: EngineInfo = field(default_factory=lambda: EngineInfo())
    hardware: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    tests: list[TestRecord] = field(default_factory=list)
    meters: dict[str, Any] = field(default_factory=dict)
    """Which energy meter ran and why (``{"energy": "off", "energy_note": ...}``)."""
    commit: CommitInfo | None = None
    """The git commit tested; None outside a git work tree, or before the run finished."""
    comparison: Comparison | None = None
    """This run against its baseline, when it was compared."""
    ab_comparison: Comparison | None = None
    """Under ``--inferbudget-ab``: the second engine against the session's, test by test,
    on the same requests served in alternation."""
    engines: dict[str, EngineInfo] = field(default_factory=dict)
    """In an engine sweep: every engine by id (``engine`` is then the first one)."""
    sweep: EngineSweep | None = None
    """In an engine sweep: the engines compared per test and in total."""

    @property
    def machine(self) -> MachineLoad | None:
        """How busy the machine was over every engine call of the run (from its tests')."""
        return MachineLoad.combine(t.machine for t in self.tests if t.machine is not None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report. ``commit`` appears once the run is finished (saved runs and
        reports); ``comparison`` only when the run was compared."""
        verdicts = [b.verdict for t in self.tests for b in t.budgets]
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "engine": self.engine,
            "hardware": self.hardware,
            "libraries": self.libraries,
            "meters": self.meters,
            "machine": None if self.machine is None else self.machine.to_dict(),
            "summary": {
                "tests": len(self.tests),
                "budgets": len(verdicts),
                **{v.value: verdicts.count(v) for v in Verdict},
            },
            "tests": [t.to_dict() for t in self.tests],
        }
        if self.finished_at:
            data["commit"] = None if self.commit is None else self.commit.to_dict()
        if self.comparison is not None:
            data["comparison"] = self.comparison.to_dict()
        if self.ab_comparison is not None:
            data["ab_comparison"] = self.ab_comparison.to_dict()
        if self.engines:
            data["engines"] = dict(self.engines)
        if self.sweep is not None:
            data["sweep"] = self.sweep.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"report schema_version {version!r} is not {SCHEMA_VERSION}, the version this "
                f"pytest-inferbudget reads"
                + (
                    "; upgrade pytest-inferbudget"
                    if isinstance(version, int) and version > SCHEMA_VERSION
                    else ""
                )
            )
        return cls(
            run_id=data["run_id"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            engine=data["engine"],
            hardware=data["hardware"],
            libraries=data["libraries"],
            tests=[TestRecord.from_dict(t) for t in data["tests"]],
            meters=data.get("meters", {}),
            commit=CommitInfo.from_dict(data["commit"]) if data.get("commit") else None,
            comparison=(
                Comparison.from_dict(data["comparison"]) if data.get("comparison") else None
            ),
            ab_comparison=(
                Comparison.from_dict(data["ab_comparison"]) if data.get("ab_comparison") else None
            ),
            engines=dict(data.get("engines", {})),
            sweep=EngineSweep.from_dict(data["sweep"]) if data.get("sweep") else None,
        )
