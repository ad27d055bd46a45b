"""The NVML meter on the engine's GPUs: mapping, MIG, idle before load, resolution, sharing.

NVML is replaced at its lowest layer by the recorded devices of ``nvml_doubles`` (test
doubles that stand in for NVML, which no machine here has), and ``torch.cuda`` by
:class:`CudaDouble` (a stand-in for CUDA, which no machine here has either); the meter,
the mapping and the arithmetic above them are the package's real code.
"""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

import pytest

from pytest_inferbudget.meters import EnergyMeasurement, MemoryMeter, MeterUnavailableError
from pytest_inferbudget.meters.nvml import NvmlMeter
from pytest_inferbudget.meters.nvml_math import counter_error_j, update_period_s
from pytest_inferbudget.meters.nvml_sampler import idle_power_by_uuid
from pytest_inferbudget.records import Request, Response, Trace
from pytest_inferbudget.records.energy import MAX_RELATIVE_ERROR
from pytest_inferbudget.verdicts import samples_of
from pytest_inferbudget.vocabulary import EnergyMethod
from tests.unit.meters.nvml_doubles import RecordedNvmlDevice, TimedCounterDevice


def node(bound: bool = True) -> list[RecordedNvmlDevice]:
    """Three GPUs whose counters each move by a different amount in the window. Readings:
    a probe when the meter opens, another when it is bound to the engine, then the
    window's two ends."""
    reads_before = 3 if bound else 2
    return [
        RecordedNvmlDevice(
            energy_mj=[0] * reads_before + [1_000 * (i + 1)],
            label=f"nvml:{i} Recorded H100",
            uuid=f"GPU-{i}{i}{i}{i}0000-0000",
            pci_bus_id=f"00000000:{0x10 * (i + 1):02X}:00.0",
            pids=[os.getpid()],
        )
        for i in range(3)
    ]


def bound(*devices: RecordedNvmlDevice, **options: object) -> NvmlMeter:
    meter = NvmlMeter(devices=devices, counter_update_period_s=0.05, **options)  # type: ignore[arg-type]
    ok, reason = meter.available()
    assert ok, reason
    return meter


def window(meter: NvmlMeter, pause_s: float = 0.0) -> EnergyMeasurement:
    meter.begin_window("w")
    if pause_s:
        time.sleep(pause_s)
    return meter.end_window("w")


# --- which GPUs --------------------------------------------------------------------------


def test_the_engines_gpu_is_metered_not_every_gpu() -> None:
    meter = bound(*node())
    meter.use_engine([1])  # cuda:1 of the three, in bus order: the second
    result = window(meter)
    assert result.devices == ("nvml:1 Recorded H100",)
    assert result.gross_energy_j == pytest.approx(2.0)  # its counter's move, not all three's


def test_the_engines_gpu_is_found_by_uuid_when_the_engine_knows_it() -> None:
    meter = bound(*node())
    meter.use_engine([0], ["22220000-0000"])  # torch-style UUID wins over the ordinal
    assert window(meter).devices == ("nvml:2 Recorded H100",)


def test_a_mig_gpu_is_refused_by_its_mode() -> None:
    gpus = node()
    gpus[0] = RecordedNvmlDevice(energy_mj=[0], uuid="GPU-mig", mig=True, label="nvml:0 MIG")
    meter = bound(*gpus)
    with pytest.raises(MeterUnavailableError, match="MIG mode"):
        meter.use_engine([], ["GPU-mig"])


def test_an_engine_on_no_cuda_device_is_refused() -> None:
    with pytest.raises(MeterUnavailableError, match="no CUDA device"):
        bound(*node()).use_engine([])


# --- idle power before load -------------------------------------------------------------------


def test_idle_read_before_load_is_subtracted_for_the_engines_gpu_only() -> None:
    gpus = node()
    idle, note = idle_power_by_uuid(0.0, devices=gpus)  # the recorded 100 W of each
    assert note.startswith("idle power from NVML's default power reading")  # no instant field
    idle[gpus[2].uuid().removeprefix("GPU-").lower()] = 60.0
    meter = bound(*gpus)
    meter.use_engine([2], idle_by_uuid=idle, idle_note=note)
    result = window(meter, 0.01)
    assert meter.idle_power_w == (60.0,)
    assert result.idle_energy_j == pytest.approx(60.0 * result.window_s)
    assert result.net_energy_j == pytest.approx(3.0 - 60.0 * result.window_s)


def test_idle_prefers_the_instant_reading_over_the_one_second_average() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[0], power_mw=[95_000], instant_power_mw=[61_000])
    idle, note = idle_power_by_uuid(0.0, devices=[gpu])
    assert list(idle.values()) == [61.0]
    assert note == "" and gpu.power_reads == 0


def test_without_idle_read_before_load_net_is_unmeasured_not_low() -> None:
    meter = bound(*node())
    meter.use_engine([0], idle_by_uuid={})
    result = window(meter)
    assert result.gross_energy_j is not None
    assert result.net_energy_j is None and result.idle_energy_j is None
    assert "idle power unknown" in result.note


# --- resolution: the update period and the error bound ---------------------------------------


def test_update_period_from_a_recorded_poll() -> None:
    # counter polled every 5 ms, moving every 20 ms (the first change is mid-poll)
    times = [i * 5_000_000 for i in range(20)]
    values = [(i + 2) // 4 for i in range(20)]
    assert update_period_s(times, values) == pytest.approx(0.020)
    assert update_period_s(times[:5], values[:5]) is None  # too few changes to tell


def test_update_period_is_measured_on_the_device() -> None:
    gpu = TimedCounterDevice(0.02)
    meter = NvmlMeter(devices=[gpu], period_probe_s=1.0)
    ok, reason = meter.available()
    assert ok, reason
    period = meter.counter_update_period_s
    assert period is not None and 0.015 <= period <= 0.03
    assert "updates every" in reason


def test_a_counter_window_carries_its_error_bound() -> None:
    result = window(bound(*node(bound=False)))  # three GPUs, 100 W at both ends, 50 ms period
    assert result.method == "counter"
    assert result.error_j == pytest.approx(3 * 100.0 * 0.05)
    assert counter_error_j([100_000], [250_000], 1.0, 0.05, [False]) == pytest.approx(12.5)
    assert counter_error_j([100_000], [100_000], 0.01, 0.05, [True]) == pytest.approx(1.0)
    assert counter_error_j([None], [100_000], 1.0, 0.05, [False]) is None


def test_the_bound_survives_json_and_scales_with_a_share() -> None:
    whole = window(bound(*node(bound=False)))
    assert EnergyMeasurement.from_dict(whole.to_dict()) == whole
    half = whole.portion(0.5)
    assert whole.error_j is not None and half.error_j == pytest.approx(whole.error_j / 2)
    old = {k: v for k, v in whole.to_dict().items() if k != "error_j"}  # saved before
    assert EnergyMeasurement.from_dict(old).error_j is None


def energy_trace(gross_j: float, error_j: float | None) -> Trace:
    energy = EnergyMeasurement(gross_j, None, None, 0.2, EnergyMethod.COUNTER, error_j=error_j)
    return Trace((Response(Request("q"), (), "test:engine", energy=energy),))


def test_energy_budgets_take_a_figure_only_within_its_bound() -> None:
    within = energy_trace(10.0, 10.0 * MAX_RELATIVE_ERROR)
    beyond = energy_trace(10.0, 10.0 * MAX_RELATIVE_ERROR * 1.01)
    unstated = energy_trace(10.0, None)  # a meter that states no bound (RAPL, a plugin)
    assert samples_of("joules_per_request", [within, beyond, unstated]) == [10.0, 10.0]
    assert beyond.bounded_energy() is None and beyond.energy() == 10.0


# --- sharing ------------------------------------------------------------------------------------


def shared_after_bind(pids: list[int] | None) -> EnergyMeasurement:
    gpu = RecordedNvmlDevice(energy_mj=[0, 0, 0, 1_000], pids=pids, uuid="GPU-1")
    meter = bound(gpu)
    meter.use_engine([0])
    return window(meter)


def test_sharing_is_unknown_when_nvml_shows_none_of_this_process_tree() -> None:
    # the engine uses the GPU, yet NVML lists none of ours: another PID namespace
    for pids in ([], [os.getppid()]):
        result = shared_after_bind(pids)
        assert result.shared is None
        assert "another PID namespace" in result.note


def test_sharing_is_true_only_when_ours_and_anothers_are_both_seen() -> None:
    assert shared_after_bind([os.getpid()]).shared is False
    assert shared_after_bind([os.getpid(), os.getppid()]).shared is True


def test_a_pid_that_does_not_exist_here_makes_sharing_unknown() -> None:
    result = shared_after_bind([os.getpid(), 2**22 + 12345])  # above Linux's pid_max
    assert result.shared is None and "do not exist here" in result.note


# --- synchronising and reading memory on the engine's device -------------------------------------


class CudaDouble:
    """Stands in for ``torch.cuda`` (no CUDA here): records the device of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def is_initialized(self) -> bool:
        return True

    def synchronize(self, device: object = None) -> None:
        self.calls.append(("synchronize", device))

    def reset_peak_memory_stats(self, device: object = None) -> None:
        self.calls.append(("reset_peak_memory_stats", device))

    def max_memory_allocated(self, device: object = None) -> int:
        self.calls.append(("max_memory_allocated", device))
        return 3 * 2**20


def test_windows_synchronise_and_read_memory_on_the_engines_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = CudaDouble()
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    meter = bound(*node())
    meter.use_engine([2])
    window(meter)
    assert cuda.calls == [("synchronize", 2), ("synchronize", 2)]
    cuda.calls.clear()
    memory = MemoryMeter(device=2, reset_rss_peak=False)
    memory.begin_window("w")
    measured = memory.end_window("w")
    assert measured.peak_accelerator_mb == pytest.approx(3.0)
    assert {device for _, device in cuda.calls} == {2}
