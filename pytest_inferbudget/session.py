"""What the plugin's hooks and fixtures do, loaded with the first test that needs it.

PYTEST_DONT_REWRITE: this package raises named errors and holds no asserts to rewrite.

:mod:`pytest_inferbudget.plugin` is what pytest imports at start-up (``pytest --co``
included), so it holds only the hook and fixture functions; their work lives here and is
imported when a test first asks for an engine, records a generation or carries a budget.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_inferbudget import budget
from pytest_inferbudget.config import (
    BUDGET,
    ENGINE_ERROR_KEY,
    RECORD,
    RECORDER,
    REPORT_KEY,
    REPORTER,
    SETTINGS,
    STARTED,
    item_budget,
)
from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.errors import EngineError, InferBudgetError

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_inferbudget.meters import Meter
    from pytest_inferbudget.recorder import Metering, Recorder
    from pytest_inferbudget.records import RunRecord, TestRecord
    from pytest_inferbudget.report.outputs import RunOutputs

__all__ = ["BUDGET", "InconclusiveBudgetWarning", "RunReporter"]


class InconclusiveBudgetWarning(UserWarning):
    """A confident budget could not be settled within its samples (strict mode fails it)."""


def run_reporter(config: pytest.Config) -> RunReporter:
    """The run's reporter, made on first use (start-up pays nothing for it)."""
    reporter = config.stash.get(REPORTER, None)
    if reporter is None:
        reporter = config.stash[REPORTER] = RunReporter(config)
    return reporter


def engine_fixture(pytestconfig: pytest.Config) -> Iterator[Engine]:
    """Body of the ``inference_engine`` fixture."""
    spec = EngineSpec.parse(pytestconfig.stash[SETTINGS].engine)
    try:
        engine = pytestconfig.hook.pytest_inferbudget_make_engine(
            spec=spec, config=pytestconfig, progress=_progress_writer(pytestconfig)
        )
    except InferBudgetError as exc:
        pytest.fail(f"inferbudget: cannot start engine '{spec}': {exc}", pytrace=False)
    if engine is None:
        pytest.fail(f"inferbudget: no plugin could build engine '{spec}'", pytrace=False)
    yield engine
    engine.close()


def metering_fixture(pytestconfig: pytest.Config, inference_engine: Engine) -> Iterator[Metering]:
    """Body of the ``inferbudget_metering`` fixture."""
    from pytest_inferbudget.meters import MemoryMeter
    from pytest_inferbudget.recorder import Metering

    settings = pytestconfig.stash[SETTINGS]
    choice = "off" if settings.replay_path else settings.energy
    try:
        meter = pytestconfig.hook.pytest_inferbudget_make_meter(choice=choice, config=pytestconfig)
    except InferBudgetError as exc:
        pytest.fail(f"inferbudget: energy meter {choice!r}: {exc}", pytrace=False)
    if meter is None:
        pytest.fail(f"inferbudget: no plugin could build energy meter {choice!r}", pytrace=False)
    run_reporter(pytestconfig).note_meter(meter)
    predictor = None
    if settings.profile_path or settings.accelerator:
        from pytest_inferbudget.meters.predictions import build_predictor

        try:
            predictor = build_predictor(
                inference_engine.describe(), settings.profile_path, settings.accelerator
            )
        except InferBudgetError as exc:
            pytest.fail(f"inferbudget: {exc}", pytrace=False)
    replaying = settings.replay_path is not None  # nothing runs, so no meter watches
    memory = None if replaying else MemoryMeter()
    metering = Metering(energy=None if replaying else meter, memory=memory, predictor=predictor)
    yield metering
    meter.close()
    if memory is not None:
        memory.close()


def vllm_server_fixture(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Body of the ``vllm_server`` fixture."""
    from pytest_inferbudget.models import resolve_model
    from pytest_inferbudget.servers import DEFAULT_ARGS, VllmServer

    alias = str(pytestconfig.getini("inferbudget_vllm_server_model"))
    args = list(pytestconfig.getini("inferbudget_vllm_server_args")) or list(DEFAULT_ARGS)
    try:
        model = resolve_model(alias, _progress_writer(pytestconfig))
        server = VllmServer(model, tmp_path_factory.mktemp("vllm-server") / "server.log")
        server.extra_args = args
        server.served_model_name = alias if "/" not in alias else model.name
        _progress_writer(pytestconfig)(f"starting vLLM server: {' '.join(server.command())}")
        base_url = server.start()
    except InferBudgetError as exc:
        pytest.fail(f"inferbudget: vllm_server: {exc}", pytrace=False)
    try:
        yield base_url
    finally:
        server.stop()


def make_recorder(
    request: pytest.FixtureRequest, inference_engine: Engine, inferbudget_metering: Metering
) -> Recorder:
    """Body of the ``infer`` fixture."""
    from pytest_inferbudget.recorder import Recorder
    from pytest_inferbudget.verdicts import evaluate

    reporter = run_reporter(request.config)
    reporter.note_engine(inference_engine)
    spec = item_budget(request.node)
    if spec.confident:
        recorder = Recorder(
            inference_engine,
            metering=inferbudget_metering,
            judge=lambda r: evaluate(
                spec, r.traces, r.scores, sequential=True, machine=reporter.machine
            ),
            min_samples=spec.min_samples or 1,
            max_samples=spec.max_samples or 200,
        )
    else:
        recorder = Recorder(inference_engine, metering=inferbudget_metering)
    request.node.stash[RECORDER] = recorder
    return recorder


def judge(item: pytest.Item, spec: budget.BudgetSpec) -> None:
    """After a test body that passed: fail, skip or warn on what its budgets say."""
    record = record_test(item, spec)
    from pytest_inferbudget.report import terminal  # with the first test, not at start-up

    if spec and record is not None:
        if not record.traces and not record.scores:
            pytest.fail(_nothing_recorded(item), pytrace=False)
        settings = item.config.stash[SETTINGS]
        strict = settings.strict
        # What the machine lacks (a meter) or a replay cannot carry (time, energy) is
        # unmeasured, not violated: skipped and named, or failed in strict mode.
        hardware_unmeasured = [
            b
            for b in record.budgets
            if b.verdict == "unmeasured"
            and (budget.needs_hardware(b.key) or settings.replay_path is not None)
        ]
        failing = [
            b
            for b in record.budgets
            if b.verdict == "fail"
            or (b.verdict == "unmeasured" and (strict or b not in hardware_unmeasured))
            or (b.verdict == "inconclusive" and strict)
        ]
        if failing:
            pytest.fail(terminal.violation_message(record.budgets), pytrace=False)
        if hardware_unmeasured:
            by_reason: dict[str, list[str]] = {}
            for b in hardware_unmeasured:
                by_reason.setdefault(b.reason, []).append(b.key)
            where = "on replay" if settings.replay_path else "on this machine"
            # reported at the test's own location (as skip markers are), not this hook's
            raise pytest.skip.Exception(
                f"inferbudget: unmeasured {where}: "
                + "; ".join(f"{', '.join(keys)}: {why}" for why, keys in by_reason.items())
                + " (--inferbudget-strict fails instead)",
                _use_item_location=True,
            )
        if any(b.verdict == "inconclusive" for b in record.budgets):
            warnings.warn(
                InconclusiveBudgetWarning(terminal.violation_message(record.budgets)),
                stacklevel=1,
            )


def shares_the_engine(config: pytest.Config, engine: dict[str, Any]) -> bool:
    """Whether other xdist workers run on the same hardware at once: each worker loads
    its own engine, so on one GPU (or against one server) their requests contend."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    shared = str(engine.get("device", "")).startswith("cuda") or engine.get("engine") == "openai"
    return workers > 1 and shared


def record_test(item: pytest.Item, spec: budget.BudgetSpec) -> TestRecord | None:
    recorder = item.stash.get(RECORDER, None)
    if recorder is None and not spec:
        return None
    from pytest_inferbudget.records import TestRecord
    from pytest_inferbudget.verdicts import evaluate

    traces = list(recorder.traces) if recorder else []
    scores = list(recorder.scores) if recorder else []
    sequential = recorder is not None and recorder.sampled_sequentially
    reporter = run_reporter(item.config)
    results = evaluate(spec, traces, scores, sequential=sequential, machine=reporter.machine)
    record = TestRecord(
        item.nodeid,
        traces,
        results,
        scores=scores,
        compare_fail=dict(spec.compare_fail),
        contended=shares_the_engine(item.config, reporter.engine),
    )
    item.stash[RECORD] = record
    for result in results:  # JUnit XML carries each measured value as a property
        statistic = result.stat or "value"
        item.user_properties.append((f"inferbudget:{result.key}:{statistic}", result.measured))
        item.user_properties.append((f"inferbudget:{result.key}:verdict", result.verdict))
    return record


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


def annotate_report(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> None:
    """Mark engine faults as errors, and put the test's record on its call-phase report."""
    if call.when == "call" and call.excinfo is not None and call.excinfo.errisinstance(EngineError):
        # An engine or server fault is the infrastructure's, not a budget's: an error
        # whose message (naming the URL or engine) is the whole story.
        setattr(report, ENGINE_ERROR_KEY, True)
        report.longrepr = call.excinfo.getrepr(style="value", chain=False)
    record = item.stash.get(RECORD, None)
    if call.when == "call" and record is not None:
        xfailed = report.skipped and hasattr(report, "wasxfail")
        record.outcome = "xfailed" if xfailed else report.outcome
        setattr(report, REPORT_KEY, record.to_dict())  # survives xdist's serialisation


class RunReporter:
    """Collects every test's record from the reports (local or from xdist workers) and
    writes the run's outputs; kept in the config's stash so nested pytester runs stay apart."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = config.stash[SETTINGS]
        self.run_id = os.urandom(16).hex()  # 32 hex digits; uuid would load platform
        self.started_at = time.strftime(
            "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(config.stash.get(STARTED, None))
        )
        self.engine: dict[str, Any] = {"spec": self.settings.engine}
        self.meters: dict[str, Any] = {}
        self.machine = ""
        """``DEVICE: NAME`` of the engine's hardware, matched by ``hardware=`` budgets."""
        self.tests: list[TestRecord] = []
        self.outputs: RunOutputs | None = None
        self.cassette_lines: list[str] = []

    def note_engine(self, engine: Engine) -> None:
        """Describe the engine actually used, which a conftest may have swapped in."""
        if self.engine.get("spec") != engine.spec or len(self.engine) == 1:
            from pytest_inferbudget.hardware import machine_label

            self.engine = {"spec": engine.spec, **engine.describe()}
            self.machine = machine_label(self.engine)

    def note_meter(self, meter: Meter) -> None:
        available, reason = meter.available()
        self.meters = {"energy": meter.name, "energy_available": available, "energy_note": reason}

    def run_record(self) -> RunRecord:
        from pytest_inferbudget.records import RunRecord

        return RunRecord(
            self.run_id, self.started_at, engine=self.engine, tests=self.tests, meters=self.meters
        )

    def add_test(self, data: dict[str, Any]) -> None:
        """A call-phase report's record (as builtin types: it may come from a worker)."""
        from pytest_inferbudget.records import TestRecord

        self.tests.append(TestRecord.from_dict(data))

    def worker_done(self, node: Any) -> None:
        engine = node.workeroutput.get(REPORT_KEY + "_engine")
        if engine:
            self.engine = engine

    def finish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):  # xdist worker: the controller writes reports
            self.config.workeroutput[REPORT_KEY + "_engine"] = self.engine  # type: ignore[attr-defined]
            return
        settings = self.settings
        if settings.record_path is not None:
            self.cassette_lines = _write_cassette(settings.record_path, self.run_record())
        wanted = (settings.json_path, settings.markdown_path, settings.html_path, settings.save)
        if not any(wanted) and settings.compare is None:
            return
        from pytest_inferbudget.report.outputs import write_outputs

        thresholds = {t.nodeid: t.compare_fail for t in self.tests if t.compare_fail}
        self.outputs = write_outputs(self.run_record(), settings, thresholds)
        if self.outputs.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        lines: list[str] = []
        if self.tests:
            from pytest_inferbudget.report import terminal

            lines = terminal.summary_lines(self.run_record())
        lines += self.cassette_lines
        outputs = self.outputs
        if lines or outputs:
            terminalreporter.write_sep("=", "inferbudget")
        for line in lines + (outputs.lines if outputs else []):
            terminalreporter.write_line(line)
        for error in outputs.errors if outputs else []:
            terminalreporter.write_line(f"inferbudget: ERROR {error}", red=True)


def _write_cassette(path: Path, run: RunRecord) -> list[str]:
    """Every response the run's tests recorded, for --inferbudget-replay."""
    from pytest_inferbudget.engines.replay import build_cassette
    from pytest_inferbudget.storage import write_json_atomic

    responses = [r for test in run.tests for trace in test.traces for r in trace.responses]
    try:
        write_json_atomic(path, build_cassette(responses, run.engine))
    except InferBudgetError as exc:
        return [f"inferbudget: ERROR cassette not written: {exc}"]
    return [f"cassette of {len(responses)} request(s) written to {path}"]


def _progress_writer(config: pytest.Config) -> Callable[[str], None]:
    """Print progress past pytest's output capture: a first model download takes a while."""
    capture = config.pluginmanager.getplugin("capturemanager")

    def write(line: str) -> None:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                _terminal_line(config, f"inferbudget: {line}")
        else:
            _terminal_line(config, f"inferbudget: {line}")

    return write


def _terminal_line(config: pytest.Config, line: str, *, red: bool = False) -> None:
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line, red=red)
    else:
        print(line, file=sys.stderr, flush=True)
