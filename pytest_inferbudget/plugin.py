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

from pytest_inferbudget import budget
from pytest_inferbudget.config import SETTINGS, Settings, add_options
from pytest_inferbudget.errors import BudgetSpecError

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
    from pytest_inferbudget.run import RUN, InferBudgetRun

    config.addinivalue_line(
        "markers",
        "budget(**limits): efficiency limits checked against every generation the test "
        f"records through `infer`; keys: {', '.join(budget.BUDGET_KEYS)}; "
        f"modifiers: {', '.join(budget.MODIFIERS)}",
    )
    settings = config.stash[SETTINGS] = Settings.from_config(config)
    run = config.stash[RUN] = InferBudgetRun(config, settings)
    config.pluginmanager.register(run, "inferbudget-run")


def pytest_unconfigure(config: pytest.Config) -> None:
    from pytest_inferbudget.run import RUN

    run = config.stash.get(RUN, None)
    if run is not None:
        del config.stash[RUN]
        config.pluginmanager.unregister(run)


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
                budget.item_budget(item)
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
    from pytest_inferbudget.fixtures import engine_fixture

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


@pytest.fixture
def infer(
    request: pytest.FixtureRequest, inference_engine: Engine, inferbudget_metering: Metering
) -> Recorder:
    """Generate through the session's engine; every generation counts toward the budgets."""
    from pytest_inferbudget.fixtures import make_recorder

    return make_recorder(request, inference_engine, inferbudget_metering)


def __getattr__(name: str) -> Any:
    """``InconclusiveBudgetWarning`` (for ``filterwarnings``) without loading it at start-up."""
    if name == "InconclusiveBudgetWarning":
        from pytest_inferbudget import errors

        return errors.InconclusiveBudgetWarning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
