"""The engine fixture's GPU work before the model loads, and the meter bound to the engine.

No GPU here: NVML's listing is replaced at its lowest layer (``fixtures._nvml_inventory``,
the list NVML would return) and the recorded devices of ``nvml_doubles`` stand in for the
boards; an engine is represented only by the description a CUDA engine gives of itself
(:class:`CudaEngineDescription`, a stand-in for an engine on a GPU nobody here has). The
fixture code between them is the package's real code.
"""

from __future__ import annotations

import os
from typing import Any, cast

import pytest

from pytest_inferbudget import fixtures
from pytest_inferbudget.config import SETTINGS, Settings
from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.errors import InferBudgetError, MeterUnavailableError
from pytest_inferbudget.meters import NullMeter
from pytest_inferbudget.meters.gpus import NvmlGpu
from pytest_inferbudget.meters.nvml import NvmlMeter
from tests.unit.meters.nvml_doubles import RecordedNvmlDevice

GPUS = [
    NvmlGpu(i, f"GPU-{i}{i}{i}{i}0000-0000", f"00000000:{0x10 * (i + 1):02X}:00.0", "H100")
    for i in range(2)
]


class CudaEngineDescription:
    """Stands in for an engine on a CUDA GPU: only its description (no GPU here)."""

    spec = "transformers:m"

    def __init__(self, **info: Any) -> None:
        self.info = info

    def describe(self) -> dict[str, Any]:
        return self.info


@pytest.fixture
def config(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Config:
    names = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
    for name in (*names, fixtures.GPU_SHARING_ENV, fixtures.WORKERS_PER_GPU_ENV):
        monkeypatch.setenv(name, "")  # records the value to restore, set or not
        monkeypatch.delenv(name)  # the fixture under test sets some of them itself
    monkeypatch.setattr(fixtures, "_nvml_inventory", lambda: list(GPUS))
    parsed = pytester.parseconfig()
    parsed.stash[SETTINGS] = Settings(engine="transformers:m", json_path=None)
    return parsed


def as_worker(config: pytest.Config, worker: int, workers: int) -> None:
    config.workerinput = {"workerid": f"gw{worker}", "workercount": workers}  # type: ignore[attr-defined]


def test_each_xdist_worker_gets_a_gpu_of_its_own(config: pytest.Config) -> None:
    as_worker(config, 1, 2)
    fixtures._before_load(config, EngineSpec.parse("transformers:m"))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == GPUS[1].uuid
    assert os.environ[fixtures.WORKERS_PER_GPU_ENV] == "1"
    idle, note = config.stash[fixtures.IDLE_POWER]  # read before load (no NVML here: why)
    assert idle == {} and "idle power not read before the model loaded" in note


def test_too_few_gpus_for_the_workers_is_a_clear_error_or_a_shared_mode(
    config: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_worker(config, 2, 3)
    with pytest.raises(InferBudgetError, match="3 xdist workers need 3 GPU"):
        fixtures._before_load(config, EngineSpec.parse("transformers:m"))
    monkeypatch.setenv(fixtures.GPU_SHARING_ENV, "1")
    fixtures._before_load(config, EngineSpec.parse("vllm:m"))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == GPUS[0].uuid  # round robin
    assert os.environ[fixtures.WORKERS_PER_GPU_ENV] == "2"  # vLLM then takes 0.45 each


def test_a_gpu_the_spec_pins_is_shared_by_every_worker_and_says_so(
    config: pytest.Config,
) -> None:
    as_worker(config, 1, 3)
    fixtures._before_load(config, EngineSpec.parse("transformers:m?device=cuda:1"))
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # the user's choice stands
    assert os.environ[fixtures.WORKERS_PER_GPU_ENV] == "3"  # and the tests are contended


def test_cpu_engines_and_servers_are_left_alone(config: pytest.Config) -> None:
    as_worker(config, 1, 2)
    for spec in ("transformers:m?device=cpu", "openai:m"):
        fixtures._before_load(config, EngineSpec.parse(spec))
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
        assert fixtures.IDLE_POWER not in config.stash


def recorded_gpus() -> list[RecordedNvmlDevice]:
    return [
        RecordedNvmlDevice(
            energy_mj=[0, 0, 0, 5_000 * (i + 1)],
            uuid=g.uuid,
            pci_bus_id=g.pci_bus_id,
            label=f"nvml:{i} H100",
            mig=i == 0,
        )
        for i, g in enumerate(GPUS)
    ]


def meter_for(config: pytest.Config, choice: str, **info: Any) -> Any:
    meter = NvmlMeter(devices=recorded_gpus(), counter_update_period_s=0.05)
    engine = cast(Engine, CudaEngineDescription(**info))
    return fixtures._engine_meter(config, meter, choice, engine)


def test_the_meter_is_narrowed_to_the_engines_gpu_with_idle_read_before_load(
    config: pytest.Config,
) -> None:
    config.stash[fixtures.IDLE_POWER] = ({GPUS[1].uuid[4:].lower(): 70.0}, "")
    meter = meter_for(config, "auto", device="cuda:1", cuda_devices=[1])
    assert isinstance(meter, NvmlMeter)
    assert meter.devices == ("nvml:1 H100",) and meter.idle_power_w == (70.0,)
    meter.begin_window("w")
    assert meter.end_window("w").gross_energy_j == pytest.approx(10.0)


def test_an_engine_that_names_only_its_cuda_device_is_metered_on_it(
    config: pytest.Config,
) -> None:
    meter = meter_for(config, "auto", device="cuda:1")
    assert isinstance(meter, NvmlMeter) and meter.devices == ("nvml:1 H100",)


def test_a_mig_gpu_leaves_auto_unmeasured_and_fails_an_explicit_nvml(
    config: pytest.Config,
) -> None:
    meter = meter_for(config, "auto", device="cuda:0", cuda_devices=[0])
    assert isinstance(meter, NullMeter)
    assert "MIG mode" in meter.available()[1]
    with pytest.raises(MeterUnavailableError, match="MIG mode"):
        meter_for(config, "nvml", device="cuda:0", cuda_devices=[0])


def test_a_cpu_engine_is_not_metered_through_nvml(config: pytest.Config) -> None:
    meter = meter_for(config, "auto", device="cpu")
    assert not isinstance(meter, NvmlMeter)  # RAPL where it works, else nothing
    with pytest.raises(MeterUnavailableError, match="not a CUDA GPU"):
        meter_for(config, "nvml", device="cpu")
