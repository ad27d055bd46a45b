"""pytest hooks and fixtures; the work is done by the modules these delegate to.

PYTEST_DONT_REWRITE: pytest rewrites a plugin's modules for assertions; these hold none,
and skipping the pass shortens every start-up.

pytest imports this module at every start-up, ``pytest --co`` included, so it holds only
hook and fixture functions: the per-run object (:mod:`pytest_inferbudget.run`) carries
the run's state and its own hooks; fixture bodies (:mod:`pytest_inferbudget.fixtures`)
load when a test first asks for one. Heavy libraries are never imported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_inferbudget.config import SETTINGS, Settings, add_options

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine, EngineSpec, Progress
    from pytest_inferbudget.load.tester import LoadTester
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
        "records through `infer` (keys and modifiers: pytest_inferbudget.budget.KEYS and "
        "MODIFIERS, docs/budgets.md)",
    )
    config.stash[SETTINGS] = Settings.from_config(config)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    """Register the per-run object when tests are about to run: ``pytest --co`` never
    loads it. On an xdist controller this wraps the loop that collects the workers'."""
    config = session.config
    if config.option.collectonly:  # pytest calls the loop even for --co, to do nothing
        return (yield)
    from pytest_inferbudget.run import RUN, InferBudgetRun

    if RUN not in config.stash:
        run = config.stash[RUN] = InferBudgetRun(config, config.stash[SETTINGS])
        config.pluginmanager.register(run, "inferbudget-run")
        run.check_baseline()
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    import sys

    run_module = sys.modules.get("pytest_inferbudget.run")
    if run_module is None:  # no test ran: the run object was never made
        return
    run = config.stash.get(run_module.RUN, None)
    if run is not None:
        del config.stash[run_module.RUN]
        config.pluginmanager.unregister(run)


def pytest_report_header(config: pytest.Config) -> str:
    settings = config.stash[SETTINGS]
    if settings.sweep:
        named = ", ".join(f"{c.id}={c.spec}" for c in settings.engines)
        return f"inferbudget: engine sweep over {len(settings.engines)} engines: {named}"
    return f"inferbudget: engine {settings.engine}"


BUDGET_ERRORS: pytest.StashKey[list[str]] = pytest.StashKey()
"""A module's (or class's) budget-marker errors, reported together once it is collected."""


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Any:
    """Check budget markers while collecting, so a typo fails before any model loads;
    every bad marker of a file is kept, to be reported together (not only the first)."""
    result = yield
    for item in result if isinstance(result, list) else [result]:
        if isinstance(item, pytest.Function) and item.get_closest_marker("budget") is not None:
            from pytest_inferbudget.budget import item_budget
            from pytest_inferbudget.errors import BudgetSpecError

            try:
                item_budget(item)
            except BudgetSpecError as exc:
                collector.stash.setdefault(BUDGET_ERRORS, []).append(str(exc))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """A file with bad budget markers fails its collection naming every one of them."""
    report = yield
    errors = collector.stash.get(BUDGET_ERRORS, None)
    if errors and report.outcome == "passed":
        for node in report.result:  # a failed file's classes are never collected: look now
            if isinstance(node, pytest.Class):
                node.collect()
                more: list[str] = node.stash.get(BUDGET_ERRORS, [])
                errors.extend(more)
        report.outcome = "failed"
        report.longrepr = "\n".join(errors)
        report.result = []
    return report


@pytest.hookimpl(trylast=True)
def pytest_inferbudget_make_engine(
    spec: EngineSpec, config: pytest.Config, progress: Progress
) -> Engine:
    from pytest_inferbudget.engines import create_engine

    return create_engine(spec, progress)


@pytest.fixture(scope="session")
def inference_engine(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Iterator[Engine]:
    """The session's engine, from --inferbudget-engine or the ini key; loaded once. In an
    engine sweep, one engine per parameter, each closed before the next loads."""
    from pytest_inferbudget.fixtures import engine_fixture

    yield from engine_fixture(pytestconfig, getattr(request, "param", None))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """An engine sweep: every test that uses the engine (through ``infer``, ``load`` ...)
    runs once per engine. Session-scoped parameters make pytest run the tests engine by
    engine, so each engine is loaded once."""
    settings = metafunc.config.stash[SETTINGS]
    if settings.sweep and "inference_engine" in metafunc.fixturenames:
        metafunc.parametrize(
            "inference_engine",
            list(settings.engines),
            indirect=True,
            scope="session",
            ids=[choice.id for choice in settings.engines],
        )


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
    from pytest_inferbudget.fixtures import metering_fixture

    yield from metering_fixture(pytestconfig, inference_engine)


@pytest.fixture(scope="session")
def vllm_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real vLLM OpenAI-compatible server on a free 127.0.0.1 port; its base URL
    (``http://127.0.0.1:PORT/v1``), for ``openai:URL`` engines. Stopped, with its whole
    process group, when the session ends."""
    from pytest_inferbudget.fixtures import vllm_server_fixture

    yield from vllm_server_fixture(pytestconfig, tmp_path_factory)


@pytest.fixture(scope="session")
def llamacpp_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python) on the default model's
    GGUF, on a free 127.0.0.1 port; its base URL, for ``openai:URL`` engines. Stopped,
    with its whole process group, when the session ends."""
    from pytest_inferbudget.servers import llamacpp_server_fixture

    yield from llamacpp_server_fixture(pytestconfig, tmp_path_factory)


@pytest.fixture(scope="session")
def inferbudget_ab_engine(pytestconfig: pytest.Config) -> Iterator[Engine | None]:
    """The second engine of ``--inferbudget-ab`` (None without it); loaded once, beside
    the session's engine."""
    from pytest_inferbudget.fixtures import ab_engine_fixture

    yield from ab_engine_fixture(pytestconfig)


@pytest.fixture
def infer(
    request: pytest.FixtureRequest, inference_engine: Engine, inferbudget_metering: Metering
) -> Recorder:
    """Generate through the session's engine; every generation counts toward the budgets."""
    from pytest_inferbudget.fixtures import make_recorder

    return make_recorder(request, inference_engine, inferbudget_metering)


@pytest.fixture
def load(request: pytest.FixtureRequest, infer: Recorder, inference_engine: Engine) -> LoadTester:
    """Serve the session's engine under load: ``load.run(prompts, rate=..., duration_s=...)``
    sends requests on a seeded arrival schedule and measures every one; the budget
    marker's ``slo=``, ``attainment=``, ``goodput_rps=`` ... judge it (docs/load.md)."""
    from pytest_inferbudget.load.fixture import make_load_tester

    return make_load_tester(request, infer, inference_engine)


def __getattr__(name: str) -> Any:
    """``InconclusiveBudgetWarning`` (for ``filterwarnings``) without loading it at start-up."""
    if name == "InconclusiveBudgetWarning":
        from pytest_inferbudget import errors

        return errors.InconclusiveBudgetWarning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
