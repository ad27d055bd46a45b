"""pytest hooks and fixtures; the work is done by the modules these delegate to.

PYTEST_DONT_REWRITE: pytest rewrites a plugin's modules for assertions; these hold none,
and skipping the pass shortens every start-up.

pytest imports this module at every start-up, ``pytest --co`` included, so it holds only
hook and fixture functions: their bodies import :mod:`pytest_inferbudget.session` (and
what it needs) when a test first uses them. Heavy libraries are never imported here:
engines load them when a test first asks for the ``inference_engine`` fixture.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_inferbudget import budget
from pytest_inferbudget.config import (
    ENGINE_ERROR_KEY,
    RECORD,
    RECORDER,
    REPORT_KEY,
    REPORTER,
    SETTINGS,
    STARTED,
    Settings,
    add_options,
    item_budget,
)
from pytest_inferbudget.errors import BudgetSpecError, EngineError

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine, EngineSpec, Progress
    from pytest_inferbudget.meters import Meter
    from pytest_inferbudget.recorder import Metering, Recorder


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_inferbudget import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "budget(**limits): efficiency limits checked against every generation the test "
        f"records through `infer`; keys: {', '.join(budget.BUDGET_KEYS)}; "
        f"modifiers: {', '.join(budget.MODIFIERS)}",
    )
    config.stash[SETTINGS] = Settings.from_config(config)
    config.stash[STARTED] = time.time()
    config.pluginmanager.register(_RunHooks(config), "inferbudget-run")


def pytest_unconfigure(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("inferbudget-run")
    if reporter is not None:
        config.pluginmanager.unregister(reporter)


def pytest_report_header(config: pytest.Config) -> str:
    return f"inferbudget: engine {config.stash[SETTINGS].engine}"


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Any:
    """Check budget markers while collecting, so a typo fails before any model loads."""
    result = yield
    for item in result if isinstance(result, list) else [result]:
        if isinstance(item, pytest.Function):
            try:
                item_budget(item)
            except BudgetSpecError as exc:
                raise pytest.Collector.CollectError(str(exc)) from exc
    return result


@pytest.hookimpl(trylast=True)
def pytest_inferbudget_make_engine(
    spec: EngineSpec, config: pytest.Config, progress: Progress
) -> Engine:
    from pytest_inferbudget.engines import create_engine

    return create_engine(spec, progress)


@pytest.fixture(scope="session")
def inference_engine(pytestconfig: pytest.Config) -> Iterator[Engine]:
    """The session's engine, from --inferbudget-engine or the ini key; loaded once."""
    from pytest_inferbudget.session import engine_fixture

    yield from engine_fixture(pytestconfig)


@pytest.hookimpl(trylast=True)
def pytest_inferbudget_make_meter(choice: str, config: pytest.Config) -> Meter:
    from pytest_inferbudget.meters import select_meter

    return select_meter(choice, rapl_root=config.stash[SETTINGS].rapl_root)


@pytest.fixture(scope="session")
def inferbudget_metering(
    pytestconfig: pytest.Config, inference_engine: Engine
) -> Iterator[Metering]:
    """The energy meter (--inferbudget-energy), the memory meter, and the idealized and
    roofline predictions (--inferbudget-profile, --inferbudget-accelerator) of every call."""
    from pytest_inferbudget.session import metering_fixture

    yield from metering_fixture(pytestconfig, inference_engine)


@pytest.fixture(scope="session")
def vllm_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real vLLM OpenAI-compatible server on a free 127.0.0.1 port; its base URL
    (``http://127.0.0.1:PORT/v1``), for ``openai:URL`` engines. Stopped, with its whole
    process group, when the session ends."""
    from pytest_inferbudget.session import vllm_server_fixture

    yield from vllm_server_fixture(pytestconfig, tmp_path_factory)


@pytest.fixture
def infer(
    request: pytest.FixtureRequest, inference_engine: Engine, inferbudget_metering: Metering
) -> Recorder:
    """Generate through the session's engine; every generation counts toward the budgets."""
    from pytest_inferbudget.session import make_recorder

    return make_recorder(request, inference_engine, inferbudget_metering)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Judge the budgets after the test body; the body's own failure always wins."""
    spec = item_budget(item)
    if not spec and RECORDER not in item.stash:  # nothing to judge or record
        return (yield)
    from pytest_inferbudget.session import judge, record_test

    try:
        result = yield
    except BaseException:
        record_test(item, spec)
        raise
    judge(item, spec)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    engine_fault = call.excinfo is not None and call.excinfo.errisinstance(EngineError)
    if call.when == "call" and (engine_fault or RECORD in item.stash):
        from pytest_inferbudget.session import annotate_report

        annotate_report(item, call, report)
    return report


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    if report.when == "call" and report.failed and getattr(report, ENGINE_ERROR_KEY, False):
        return "error", "E", "ERROR"
    return None


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if REPORTER in config.stash or config.stash[SETTINGS].writes_outputs:
        from pytest_inferbudget.session import run_reporter

        run_reporter(config).finish(session)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    reporter = config.stash.get(REPORTER, None)
    if reporter is not None:
        reporter.summary(terminalreporter)


class _RunHooks:
    """Hooks whose arguments do not reach the config, registered per run (so nested
    pytester runs stay apart); the run's reporter loads with the first record."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, REPORT_KEY, None)
        if report.when == "call" and data is not None:
            from pytest_inferbudget.session import run_reporter

            run_reporter(self.config).add_test(data)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        if node.workeroutput.get(REPORT_KEY + "_engine"):
            from pytest_inferbudget.session import run_reporter

            run_reporter(self.config).worker_done(node)


def __getattr__(name: str) -> Any:
    """``InconclusiveBudgetWarning`` (for ``filterwarnings``) without loading it at start-up."""
    if name == "InconclusiveBudgetWarning":
        from pytest_inferbudget import session

        return session.InconclusiveBudgetWarning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
