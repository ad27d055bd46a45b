"""The bodies of the plugin's fixtures, loaded with the first test that asks for one.

PYTEST_DONT_REWRITE: holds no asserts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_inferbudget.budget import item_budget
from pytest_inferbudget.config import SETTINGS
from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.engines.sweep import EngineChoice, engine_id_of
from pytest_inferbudget.errors import InferBudgetError
from pytest_inferbudget.run import RECORDER, RUN

if TYPE_CHECKING:
    from pytest_inferbudget.meters import Meter
    from pytest_inferbudget.recorder import Metering, Recorder

IDLE_POWER = pytest.StashKey[tuple[dict[str, float], str]]()
"""Idle power of every GPU by UUID, read before the engine loaded its model, and a note."""
GPU_SHARING_ENV = "INFERBUDGET_GPU_SHARING"
"""Set to 1 to let xdist workers share GPUs when there are fewer GPUs than workers."""
WORKERS_PER_GPU_ENV = "INFERBUDGET_WORKERS_PER_GPU"
"""Set for each worker: how many workers share its GPUs (engines read it)."""
IN_PROCESS_GPU_ENGINES = ("transformers", "vllm")


def engine_fixture(
    pytestconfig: pytest.Config, choice: EngineChoice | None = None
) -> Iterator[Engine]:
    """Body of the ``inference_engine`` fixture: GPUs for this xdist worker and idle power
    are settled before the engine loads its model (CUDA reads the one, the model warms
    the other). ``choice``: the sweep's engine of this parameter (None: the session's one);
    closed, and its memory given back, before pytest sets up the next."""
    settings = pytestconfig.stash[SETTINGS]
    spec = EngineSpec.parse(choice.spec if choice is not None else settings.engine)
    try:
        _before_load(pytestconfig, spec)
    except InferBudgetError as exc:
        pytest.fail(f"inferbudget: cannot start engine '{spec}': {exc}", pytrace=False)
    engine = _make_engine(pytestconfig, spec, "engine")
    try:
        pytestconfig.stash[RUN].note_engine(engine, choice.id if choice is not None else "")
    except BaseException:
        engine.close()
        raise
    try:
        yield engine
    finally:
        engine.close()
        if choice is not None:
            import gc

            del engine
            gc.collect()  # the next engine of the sweep loads into the memory this frees


def _make_engine(config: pytest.Config, spec: EngineSpec, what: str) -> Engine:
    """Through the make-engine hook (a conftest may answer it); a failure fails the test
    that asked, naming the spec."""
    try:
        engine = config.hook.pytest_inferbudget_make_engine(
            spec=spec, config=config, progress=progress_writer(config)
        )
    except InferBudgetError as exc:
        pytest.fail(f"inferbudget: cannot start {what} '{spec}': {exc}", pytrace=False)
    if engine is None:
        pytest.fail(f"inferbudget: no plugin could build {what} '{spec}'", pytrace=False)
    return engine  # type: ignore[no-any-return]


def _before_load(config: pytest.Config, spec: EngineSpec) -> None:
    """Give this xdist worker its GPUs and read idle power, while no model is loaded. Only
    for in-process engines that may take a GPU; needs NVML (nothing to do without it)."""
    settings = config.stash[SETTINGS]
    if settings.replay_path or spec.name not in IN_PROCESS_GPU_ENGINES:
        return
    if spec.options.get("device") in ("cpu", "mps"):
        return
    from pytest_inferbudget.meters.gpus import assign_worker_gpus, visible_gpus

    inventory = _nvml_inventory()
    if not inventory:
        return
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    workers = int(workerinput.get("workercount", 1))
    if workers > 1:
        from pytest_inferbudget.errors import MeterUnavailableError
        from pytest_inferbudget.meters.base import initialized_torch_cuda

        if initialized_torch_cuda() is not None:
            raise MeterUnavailableError(
                "CUDA was initialised in this xdist worker before the engine fixture, so "
                "CUDA_VISIBLE_DEVICES can no longer give it a GPU of its own: do not touch "
                "CUDA at import or collection time"
            )
        if spec.options.get("device", "").startswith("cuda:"):
            # a GPU the spec pins: every worker runs on it, and says so
            os.environ[WORKERS_PER_GPU_ENV] = str(workers)
            return _read_idle(config)
        visible = visible_gpus(
            inventory, os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("CUDA_DEVICE_ORDER")
        )
        per_worker = int(spec.options.get("tensor_parallel_size", "1") or 1)
        share = os.environ.get(GPU_SHARING_ENV, "").lower() in ("1", "true", "yes")
        worker = int(str(workerinput.get("workerid", "gw0")).removeprefix("gw") or 0)
        assignment = assign_worker_gpus(
            [g.uuid for g in visible], worker, workers, per_worker, share=share
        )
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(assignment.visible)
        os.environ[WORKERS_PER_GPU_ENV] = str(assignment.sharing)
    _read_idle(config)


def _read_idle(config: pytest.Config) -> None:
    """Idle power of every GPU, for the energy meter, while no model is loaded."""
    from pytest_inferbudget.meters.nvml_sampler import idle_power_by_uuid

    if config.stash[SETTINGS].energy in ("auto", "nvml"):
        config.stash[IDLE_POWER] = idle_power_by_uuid()


def _nvml_inventory() -> list[Any]:
    """Every GPU NVML lists, or [] where NVML cannot be used (no driver, no pynvml)."""
    from pytest_inferbudget.errors import MeterError
    from pytest_inferbudget.meters.nvml_device import PynvmlDevice, gpu_of, import_pynvml

    try:
        nvml = import_pynvml()
        devices = PynvmlDevice.open_all(nvml)
    except MeterError:
        return []
    try:
        return [gpu_of(i, d) for i, d in enumerate(devices)]
    except MeterError:
        return []
    finally:
        PynvmlDevice.shutdown(nvml)


def _engine_meter(config: pytest.Config, meter: Meter, choice: str, engine: Engine) -> Meter:
    """Narrow the built-in NVML meter to the engine's GPUs, with idle power read before the
    model loaded. A CPU engine under ``auto`` gets RAPL (or nothing) instead: NVML would
    meter GPUs that do none of its work."""
    from pytest_inferbudget.errors import MeterUnavailableError
    from pytest_inferbudget.meters import NullMeter
    from pytest_inferbudget.meters.nvml import NvmlMeter

    if not isinstance(meter, NvmlMeter):
        return meter
    info = engine.describe()
    devices = list(info.get("cuda_devices") or [])
    device = str(info.get("device") or "")
    if not devices and device.startswith("cuda"):  # an engine that names only its device
        devices = [int(device.partition(":")[2] or 0)]
    if not devices:
        if "device" not in info:  # a server: its GPUs are whatever this machine's are
            return meter
        if choice == "nvml":
            raise MeterUnavailableError(
                f"the engine runs on {info.get('device')}, not a CUDA GPU, so NVML has "
                "nothing of it to meter: use --inferbudget-energy auto, rapl or off"
            )
        meter.close()
        from pytest_inferbudget.meters import select_meter

        try:
            return select_meter("rapl", rapl_root=config.stash[SETTINGS].rapl_root)
        except InferBudgetError as exc:
            return NullMeter(f"the engine runs on the CPU and RAPL cannot measure it: {exc}")
    idle, note = config.stash.get(IDLE_POWER, ({}, "idle power was not read before load"))
    try:
        meter.use_engine(
            devices, list(info.get("gpu_uuids") or []), idle_by_uuid=idle, idle_note=note
        )
    except MeterUnavailableError as exc:
        if choice == "nvml":
            raise
        meter.close()
        return NullMeter(f"NVML cannot meter the engine's GPU: {exc}")
    return meter


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
    try:
        meter = _engine_meter(pytestconfig, meter, choice, inference_engine)
    except InferBudgetError as exc:
        pytest.fail(f"inferbudget: energy meter {choice!r}: {exc}", pytrace=False)
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
    gpus = inference_engine.describe().get("cuda_devices") or []
    memory = None if replaying else MemoryMeter(device=gpus[0] if gpus else None)
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
    run.note_engine(inference_engine, engine_id_of(request.node))
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
    if request.config.stash[SETTINGS].ab is not None:
        recorder.partner = request.getfixturevalue("inferbudget_ab_engine")
    request.node.stash[RECORDER] = recorder
    return recorder


def ab_engine_fixture(pytestconfig: pytest.Config) -> Iterator[Engine | None]:
    """Body of the ``inferbudget_ab_engine`` fixture: the engine ``--inferbudget-ab``
    names, built through the same hook as the session's."""
    text = pytestconfig.stash[SETTINGS].ab
    if text is None:
        yield None
        return
    engine = _make_engine(pytestconfig, EngineSpec.parse(text), "A/B engine")
    pytestconfig.stash[RUN].note_partner(engine)
    try:
        yield engine
    finally:
        engine.close()


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
