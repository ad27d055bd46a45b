"""The bodies of the plugin's fixtures, loaded with the first test that asks for one.

PYTEST_DONT_REWRITE: holds no asserts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_inferbudget.budget import item_budget
from pytest_inferbudget.config import SETTINGS
from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.errors import InferBudgetError
from pytest_inferbudget.run import RECORDER, RUN

if TYPE_CHECKING:
    from pytest_inferbudget.recorder import Metering, Recorder


def engine_fixture(pytestconfig: pytest.Config) -> Iterator[Engine]:
    """Body of the ``inference_engine`` fixture."""
    spec = EngineSpec.parse(pytestconfig.stash[SETTINGS].engine)
    try:
        engine = pytestconfig.hook.pytest_inferbudget_make_engine(
            spec=spec, config=pytestconfig, progress=progress_writer(pytestconfig)
        )
    except InferBudgetError as exc:
        pytest.fail(f"inferbudget: cannot start engine '{spec}': {exc}", pytrace=False)
    if engine is None:
        pytest.fail(f"inferbudget: no plugin could build engine '{spec}'", pytrace=False)
    try:
        pytestconfig.stash[RUN].note_engine(engine)
    except BaseException:
        engine.close()
        raise
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
    pytestconfig.stash[RUN].note_meter(meter)
    predictor = None
    if settings.profile_path or settings.accelerator:
        from pytest_inferbudget.perfmodel.predictions import build_predictor

        try:
            predictor = build_predictor(
                dict(inference_engine.describe()), settings.profile_path, settings.accelerator
            )
        except InferBudgetError as exc:
            pytest.fail(f"inferbudget: {exc}", pytrace=False)
    replaying = settings.replay_path is not None  # nothing runs, so no meter watches
    memory = None if replaying else MemoryMeter()
    from pytest_inferbudget.meters.machine import MachineLoadMeter

    metering = Metering(
        energy=None if replaying else meter,
        memory=memory,
        predictor=predictor,
        machine=None if replaying else MachineLoadMeter(),
        cpu_measured=_engine_cpu_is_ours(inference_engine, pytestconfig.stash[RUN].local_servers),
    )
    yield metering
    meter.close()
    if memory is not None:
        memory.close()


def _engine_cpu_is_ours(engine: Engine, local_servers: set[str]) -> bool:
    """An in-process engine works in this process tree; a server does only when this
    session started it (the ``vllm_server`` fixture), else its CPU is out of sight."""
    base_url = engine.describe().get("base_url")
    return base_url is None or any(base_url.startswith(url) for url in local_servers)


def vllm_server_fixture(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Body of the ``vllm_server`` fixture."""
    from pytest_inferbudget.models import resolve_model
    from pytest_inferbudget.servers import DEFAULT_ARGS, VllmServer

    alias = str(pytestconfig.getini("inferbudget_vllm_server_model"))
    args = list(pytestconfig.getini("inferbudget_vllm_server_args")) or list(DEFAULT_ARGS)
    try:
        model = resolve_model(alias, progress_writer(pytestconfig))
        server = VllmServer(model, tmp_path_factory.mktemp("vllm-server") / "server.log")
        server.extra_args = args
        server.served_model_name = alias if "/" not in alias else model.name
        progress_writer(pytestconfig)(f"starting vLLM server: {' '.join(server.command())}")
        base_url = server.start()
        pytestconfig.stash[RUN].local_servers.add(base_url)
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

    run = request.config.stash[RUN]
    run.note_engine(inference_engine)
    spec = item_budget(request.node)
    if spec.confident:
        recorder = Recorder(
            inference_engine,
            metering=inferbudget_metering,
            judge=lambda r: evaluate(
                spec, r.traces, r.scores, sequential=True, machine=run.machine
            ),
            min_samples=spec.min_samples or 1,
            max_samples=spec.max_samples or 200,
        )
    else:
        recorder = Recorder(inference_engine, metering=inferbudget_metering)
    recorder.sandbox = request.config.stash[SETTINGS].sandbox
    request.node.stash[RECORDER] = recorder
    return recorder


def progress_writer(config: pytest.Config) -> Callable[[str], None]:
    """Print progress past pytest's output capture: a first model download takes a while."""
    capture = config.pluginmanager.getplugin("capturemanager")

    def write(line: str) -> None:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                _terminal_line(config, f"inferbudget: {line}")
        else:
            _terminal_line(config, f"inferbudget: {line}")

    return write


def _terminal_line(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line, file=sys.stderr, flush=True)
