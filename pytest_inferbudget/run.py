"""The per-run plugin object: every test's record, the baseline, the outputs.

PYTEST_DONT_REWRITE: registered at every start-up; holds no asserts.

Shaped like pytest's ``junitxml.LogXML``: ``pytest_configure`` builds one
:class:`InferBudgetRun`, keeps it under :data:`RUN` in the config's stash and registers
it; its hooks are methods, so nested pytester runs stay apart and nothing lives in
module globals. What a hook needs beyond pytest is imported inside it, so start-up pays
for this module only.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_inferbudget.budget import item_budget
from pytest_inferbudget.config import Settings
from pytest_inferbudget.errors import EngineError, InconclusiveBudgetWarning, InferBudgetError

if TYPE_CHECKING:
    from pytest_inferbudget.budget import BudgetSpec
    from pytest_inferbudget.engines import Engine
    from pytest_inferbudget.meters import Meter
    from pytest_inferbudget.recorder import Recorder
    from pytest_inferbudget.records import EngineInfo, MetricChange, RunRecord, TestRecord
    from pytest_inferbudget.report.outputs import RunOutputs

RUN: pytest.StashKey[InferBudgetRun] = pytest.StashKey()
RECORDER: pytest.StashKey[Recorder] = pytest.StashKey()
"""The test's ``infer`` recorder, on its item."""
RECORD: pytest.StashKey[TestRecord] = pytest.StashKey()
"""The test's record, on its item, once judged."""
REPORT_KEY = "inferbudget"
"""Attribute of a call-phase TestReport holding the test's record as builtin types
(it survives xdist's serialisation, so the controller reads one place)."""
ENGINE_ERROR_KEY = "inferbudget_engine_error"
"""Set on a call-phase report whose test failed because the engine did (not a budget)."""


class InferBudgetRun:
    """One pytest session's state and the hooks that use it."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.run_id = os.urandom(16).hex()  # 32 hex digits; uuid would load platform
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        self.engine: EngineInfo = {"spec": settings.engine}
        self.meters: dict[str, Any] = {}
        self.machine = ""
        """``DEVICE: NAME`` of the engine's hardware, matched by ``hardware=`` budgets."""
        self.tests: list[TestRecord] = []
        self.outputs: RunOutputs | None = None
        self.cassette_lines: list[str] = []
        self.baseline: dict[str, Any] | None = None
        """The saved run this one is compared with, once the engine says which key."""
        self.baseline_note = ""
        self.history: list[dict[str, Any]] = []
        """Earlier saved runs on this hardware key: their run-to-run variation."""
        self.history_note = ""
        self.partner: EngineInfo | None = None
        """The ``--inferbudget-ab`` engine, once loaded."""
        self._history: dict[str, dict[str, list[float]]] | None = None
        """Per test and metric, the run-level medians of ``history`` (parsed once)."""
        self.local_servers: set[str] = set()
        """Base URLs of the servers this session started (their CPU is in our tree)."""
        self.baseline_error = ""
        """Why the asked-for baseline could not be loaded: reported with the outputs at the
        end, failing the run, so the tests still run and their records are written."""
        self._engine_noted = False
        self.engines: dict[str, EngineInfo] = {}
        """In an engine sweep: every engine by id, once loaded."""
        self._relative_judged: set[str] = set()
        """Tests (ids without engine) whose ``relative_to_best`` a test item has judged."""
        self._compare = True
        """False once the start-up check found no baseline and was told to warn."""

    # ------------------------------------------------------------------ engine, meters

    def note_engine(self, engine: Engine, engine_id: str = "") -> None:
        """Describe the engine actually used (a conftest may have swapped it in), and
        find the baseline for its hardware key: a missing or broken one fails the run at its
        end (``baseline_error``), after every test has run and been recorded. In an engine
        sweep (``engine_id``) every engine is kept; the first is the run's."""
        if engine_id:
            if engine_id not in self.engines:
                self.engines[engine_id] = {**engine.describe(), "spec": engine.spec}
            if self._engine_noted:
                return
        if self._engine_noted and self.engine.get("spec") == engine.spec:
            return
        from pytest_inferbudget.hardware import Machine

        self.engine = {**engine.describe(), "spec": engine.spec}
        self.machine = Machine.current(self.engine).label
        self._engine_noted = True
        if self.settings.compare is not None and self._compare:
            self._load_baseline()

    def check_baseline(self) -> None:
        """At start-up, before any test runs: a baseline that cannot exist is a usage error
        now (or, with ``--inferbudget-compare-missing=warn``, a note and no comparison),
        not a failure after the whole suite ran."""
        if self.settings.compare is None or hasattr(self.config, "workerinput"):
            return
        from pytest_inferbudget.storage import check_baseline_exists

        try:
            check_baseline_exists(self.settings.storage, self.settings.compare or None)
        except InferBudgetError as exc:
            if not self.settings.compare_missing_ok:
                raise pytest.UsageError(f"inferbudget: cannot compare: {exc}") from exc
            self.baseline_note = f"no baseline to compare with ({exc}); comparison skipped"
            self._compare = False

    def _load_baseline(self) -> None:
        from pytest_inferbudget.report.outputs import find_baseline, find_history

        try:
            self.baseline, self.baseline_note = find_baseline(self.run_identity(), self.settings)
            self.history, self.history_note = find_history(self.run_identity(), self.settings)
        except InferBudgetError as exc:
            if self.settings.compare_missing_ok:
                self.baseline_note = f"no baseline to compare with ({exc}); comparison skipped"
            else:
                self.baseline_error = f"cannot compare: {exc}"

    def note_partner(self, engine: Engine) -> None:
        """The second engine of ``--inferbudget-ab``, as the reports name it."""
        self.partner = {**engine.describe(), "spec": engine.spec}

    def note_meter(self, meter: Meter) -> None:
        available, reason = meter.available()
        self.meters = {"energy": meter.name, "energy_available": available, "energy_note": reason}
        resolution = getattr(meter, "resolution_s", None)  # NVML: the counter's update period
        if available and isinstance(resolution, float):
            self.meters["energy_update_period_s"] = resolution

    def run_identity(self) -> dict[str, Any]:
        """What a saved run's hardware key is computed from."""
        from pytest_inferbudget.hardware import fingerprint

        return {"hardware": fingerprint(), "engine": dict(self.engine)}

    def run_record(self) -> RunRecord:
        from pytest_inferbudget.records import RunRecord

        record = RunRecord(
            self.run_id,
            self.started_at,
            engine=self.engine,
            tests=self.tests,
            meters=self.meters,
        )
        if self.settings.sweep:
            from pytest_inferbudget.compare.engines import engine_sweep

            record.engines = self._sweep_engines()
            record.sweep = engine_sweep(self.tests, record.engines)
        return record

    def _sweep_engines(self) -> dict[str, EngineInfo]:
        """The sweep's engines in order; one never loaded by its spec alone."""
        return {c.id: self.engines.get(c.id, {"spec": c.spec}) for c in self.settings.engines}

    # ------------------------------------------------------------------ per test

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """Judge the budgets after the test body; the body's own failure always wins."""
        spec = item_budget(item)
        if not spec and RECORDER not in item.stash:  # nothing to judge or record
            return (yield)
        try:
            result = yield
        except BaseException:
            self.record_test(item, spec)
            raise
        self.judge(item, spec)
        return result

    def judge(self, item: pytest.Item, spec: BudgetSpec) -> None:
        """After a test body that passed: fail, skip or warn on what its budgets and its
        comparison with the baseline say (``verdicts.decide``)."""
        __tracebackhide__ = True
        record = self.record_test(item, spec)
        if record is None:
            return
        from pytest_inferbudget.report import terminal
        from pytest_inferbudget.verdicts import decide
        from pytest_inferbudget.vocabulary import Outcome

        if spec and not (
            record.traces or record.scores or record.loads or record.capacity or record.texts
        ):
            pytest.fail(_nothing_recorded(item), pytrace=False)
        if self.settings.strict and record.scores:
            from pytest_inferbudget.verdicts import wasted_samples_lint

            lint = wasted_samples_lint(record.nodeid, record.scores)
            if lint:
                pytest.fail(f"inferbudget (strict): {lint}", pytrace=False)
        gate = self._gate(record)
        decision = decide(
            record.budgets,
            strict=self.settings.strict,
            replay=self.settings.replay_path is not None,
        )
        if decision.outcome is Outcome.FAIL or gate:
            failed_budgets = record.budgets and decision.outcome is Outcome.FAIL
            message = terminal.violation_message(record.budgets) if failed_budgets else ""
            pytest.fail("\n".join(m for m in (message, gate) if m), pytrace=False)
        if decision.outcome is Outcome.SKIP:
            by_reason: dict[str, list[str]] = {}
            for b in decision.unmeasured:
                by_reason.setdefault(b.reason, []).append(b.key)
            where = "on replay" if self.settings.replay_path else "on this machine"
            # reported at the test's own location (as skip markers are), not this hook's
            raise pytest.skip.Exception(
                f"inferbudget: unmeasured {where}: "
                + "; ".join(f"{', '.join(keys)}: {why}" for why, keys in by_reason.items())
                + " (--inferbudget-strict fails instead)",
                _use_item_location=True,
            )
        if decision.outcome is Outcome.WARN:
            warnings.warn(
                InconclusiveBudgetWarning(terminal.violation_message(record.budgets)),
                stacklevel=1,
            )

    def _gate(self, record: TestRecord) -> str:
        """The failure text when this test's gated metrics regressed against the baseline
        or, interleaved, the A/B engine against the session's (or, strict, could not be
        judged); "" when the gates pass or do not apply."""
        gates = (self._baseline_gate(record), self._ab_gate(record), self._relative_gate(record))
        return "\n".join(m for m in gates if m)

    def _relative_gate(self, record: TestRecord) -> str:
        """``relative_to_best``, judged by the test's run on the sweep's last engine."""
        if not record.relative_to_best or not self.settings.sweep:
            return ""
        from pytest_inferbudget.compare.engines import relative_gate

        order = [c.id for c in self.settings.engines]
        judged, message = relative_gate(record, self.tests, order)
        self._relative_judged.update(judged)
        return message

    def _ab_gate(self, record: TestRecord) -> str:
        if not record.ab_traces:
            return ""
        from pytest_inferbudget.compare.interleaved import interleaved_test

        compared = interleaved_test(
            record, dict(self.settings.compare_fail), {record.nodeid: record.compare_fail}
        )
        if compared is None:
            return ""
        b = self.partner.get("spec", "B") if self.partner else "B"
        return self._failing(compared.changes, f"inferbudget: {b} (B) regressed against A:")

    def _failing(self, changes: Sequence[MetricChange], header: str) -> str:
        from pytest_inferbudget.report.comparison import gate_failure_lines
        from pytest_inferbudget.vocabulary import Change

        failing = [
            c
            for c in changes
            if c.gated
            and (
                c.verdict is Change.REGRESSION
                or (self.settings.strict and c.verdict is Change.INCONCLUSIVE)
            )
        ]
        return "\n".join([header, *gate_failure_lines(failing)]) if failing else ""

    def _baseline_gate(self, record: TestRecord) -> str:
        if self.baseline is None:
            return ""
        from pytest_inferbudget.compare import compare_test
        from pytest_inferbudget.records import TestRecord as Record

        earlier = next((t for t in self.baseline["tests"] if t["nodeid"] == record.nodeid), None)
        if earlier is None:
            return ""
        if self._history is None:  # the runs are parsed once, when the first test is gated
            from pytest_inferbudget.compare.history import history_of
            from pytest_inferbudget.records import RunRecord

            self._history = history_of([RunRecord.from_dict(r) for r in self.history])
        compared = compare_test(
            Record.from_dict(earlier),
            record,
            gates=dict(self.settings.compare_fail),
            per_test_gates={record.nodeid: record.compare_fail},
            history=self._history.get(record.nodeid),
        )
        header = f"inferbudget: regression against baseline {self.baseline_note}:"
        return self._failing(compared.changes, header)

    def record_test(self, item: pytest.Item, spec: BudgetSpec) -> TestRecord | None:
        recorder = item.stash.get(RECORDER, None)
        if recorder is None and not spec:
            return None
        from pytest_inferbudget.records import TestRecord
        from pytest_inferbudget.verdicts import evaluate

        if recorder is not None:
            recorder.close_energy_window()  # its calls' energy, before anything reads it
        traces = list(recorder.traces) if recorder else []
        scores = list(recorder.scores) if recorder else []
        sequential = recorder is not None and recorder.sampled_sequentially
        loads = list(recorder.loads) if recorder else []
        capacity = list(recorder.capacity) if recorder else []
        texts = list(recorder.texts) if recorder else []
        results = evaluate(
            spec,
            traces,
            scores,
            sequential=sequential,
            machine=self.machine,
            capped_at=recorder.max_samples
            if recorder and sequential and recorder.reached_cap
            else None,
            loads=loads,
            capacity=capacity,
            texts=texts,
        )
        from pytest_inferbudget.engines.sweep import engine_id_of
        from pytest_inferbudget.records.sweep import RelativeLimit

        record = TestRecord(
            item.nodeid,
            traces,
            results,
            scores=scores,
            compare_fail=dict(spec.compare_fail),
            contended=self._shares_the_engine(),
            machine=recorder.machine_load if recorder else None,
            loads=loads,
            capacity=capacity,
            ab_traces=list(recorder.partner_traces) if recorder else [],
            texts=texts,
            engine=engine_id_of(item),  # "" outside an engine sweep
            relative_to_best=[RelativeLimit(k, f, s) for k, f, s in spec.relative_to_best],
        )
        item.stash[RECORD] = record
        for result in results:  # JUnit XML carries each measured value as a property
            statistic = result.stat or "value"
            item.user_properties.append((f"inferbudget:{result.key}:{statistic}", result.measured))
            item.user_properties.append((f"inferbudget:{result.key}:verdict", str(result.verdict)))
        return record

    def _shares_the_engine(self) -> bool:
        """Whether other xdist workers contend with this one: one server, a GPU, or more
        engine threads than CPU cores (:func:`~pytest_inferbudget.hardware.contention`)."""
        from pytest_inferbudget.hardware import contention

        workers = int(getattr(self.config, "workerinput", {}).get("workercount", 1))
        return contention(self.engine, workers, os.cpu_count()).contended

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Mark engine faults as errors; put the test's record on its call-phase report."""
        report = yield
        if call.when != "call":
            return report
        if call.excinfo is not None and call.excinfo.errisinstance(EngineError):
            # An engine or server fault is the infrastructure's, not a budget's: an error
            # whose message (naming the URL or engine) is the whole story.
            setattr(report, ENGINE_ERROR_KEY, True)
            report.longrepr = call.excinfo.getrepr(style="value", chain=False)
        record = item.stash.get(RECORD, None)
        if record is not None:
            xfailed = report.skipped and hasattr(report, "wasxfail")
            record.outcome = "xfailed" if xfailed else report.outcome
            setattr(report, REPORT_KEY, record.to_dict())
        return report

    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, str] | None:
        if report.when == "call" and report.failed and getattr(report, ENGINE_ERROR_KEY, False):
            return "error", "E", "ERROR"
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect every test's record, from this process or from an xdist worker."""
        data = getattr(report, REPORT_KEY, None)
        if report.when == "call" and data is not None:
            from pytest_inferbudget.records import TestRecord

            self.tests.append(TestRecord.from_dict(data))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        engine = node.workeroutput.get(REPORT_KEY + "_engine")
        if engine:
            self.engine = engine
        self.engines.update(node.workeroutput.get(REPORT_KEY + "_engines", {}))

    # ------------------------------------------------------------------ end of run

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):  # xdist worker: the controller writes
            self.config.workeroutput[REPORT_KEY + "_engine"] = dict(self.engine)  # type: ignore[attr-defined]
            self.config.workeroutput[REPORT_KEY + "_engines"] = dict(self.engines)  # type: ignore[attr-defined]
            return
        settings = self.settings
        if settings.record_path is not None:
            from pytest_inferbudget.report.outputs import write_cassette

            self.cassette_lines = write_cassette(settings.record_path, self.run_record())
        if (
            not settings.writes_reports
            and self.baseline is None
            and not self.baseline_error
            and self.partner is None
            and not settings.sweep
        ):
            return
        from pytest_inferbudget.report.outputs import write_outputs

        thresholds = {t.nodeid: t.compare_fail for t in self.tests if t.compare_fail}
        self.outputs = write_outputs(
            self.run_record(),
            settings,
            thresholds,
            self.baseline,
            self.baseline_note,
            self.history,
            self.partner,
        )
        if self.history_note:
            self.outputs.lines.append(self.history_note)
        if self.settings.sweep:  # relative_to_best that no test run could judge
            from pytest_inferbudget.compare.engines import unjudged_failures

            if error := unjudged_failures(self.run_record().sweep, self._relative_judged):
                self.outputs.errors.append(error)
                self.outputs.failed = True
        if self.baseline_error:
            self.outputs.errors.insert(0, self.baseline_error)
            self.outputs.failed = True
        if self.outputs.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines: list[str] = []
        if self.tests:
            from pytest_inferbudget.report import terminal

            record = self.run_record()
            lines = terminal.summary_lines(record)
            if record.sweep is not None:
                from pytest_inferbudget.report.sweep import sweep_lines

                lines += sweep_lines(record.sweep)
        lines += self.cassette_lines
        outputs = self.outputs
        if lines or outputs or self.baseline_note:
            terminalreporter.write_sep("=", "inferbudget")
        if self.baseline_note and (outputs is None or outputs.comparison is None):
            terminalreporter.write_line(f"inferbudget: {self.baseline_note}", yellow=True)
        if self.tests:
            from pytest_inferbudget.report.attention import attention_lines

            compared = [outputs.comparison, outputs.ab_comparison] if outputs else []
            first = attention_lines(self.tests, compared)
            if first:
                terminalreporter.write_line(f"needs attention ({len(first)}):", bold=True)
                for line in first:
                    terminalreporter.write_line(f"  {line}", red=not line.startswith("incon"))
        for line in lines + (outputs.lines if outputs else []):
            terminalreporter.write_line(line)
        for error in outputs.errors if outputs else []:
            terminalreporter.write_line(f"inferbudget: ERROR {error}", red=True)


def _nothing_recorded(item: pytest.Item) -> str:
    if "infer" not in getattr(item, "fixturenames", ()):
        return (
            f"inferbudget: {item.nodeid} has a budget marker but does not use the `infer` "
            "fixture, so nothing it generated was recorded; generate through infer(...)"
        )
    return (
        f"inferbudget: {item.nodeid} has a budget marker but recorded no generation; "
        "a budget needs at least one infer(...) call to judge"
    )
