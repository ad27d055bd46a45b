"""Energy and memory meters.

No machine here has NVML or RAPL, so:

* NVML is replaced at its lowest layer only, by :class:`RecordedNvmlDevice` (a test
  double that stands in for NVML, replaying a recorded counter sequence) or, for the
  error mapping of the real adapter, by :class:`StandInPynvml` (a stand-in for the
  pynvml binding raising NVML's real return codes). Everything above -- counter
  differences, fallbacks, idle subtraction, the sharing check -- is the real code.
* RAPL reads a real powercap-shaped directory tree that each test writes.
* Memory is measured for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_inferbudget.errors import InferBudgetError
from pytest_inferbudget.meters import (
    EnergyMeasurement,
    MemoryMeasurement,
    MemoryMeter,
    Meter,
    MeterChoiceError,
    MeterError,
    MeterNotSupportedError,
    MeterUnavailableError,
    NullMeter,
    NvmlDevice,
    NvmlMeter,
    RaplMeter,
    select_meter,
)
from pytest_inferbudget.meters.nvml import counter_energy_j, trapezoid_j
from pytest_inferbudget.meters.nvml_device import (
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    PynvmlDevice,
)
from pytest_inferbudget.vocabulary import EnergyMethod
from tests.unit.meters.nvml_doubles import RecordedNvmlDevice, StandInNVMLError, StandInPynvml

MIB = 2**20


def recorded_meter(*devices: NvmlDevice, **options: Any) -> NvmlMeter:
    options.setdefault("idle_sample_s", 0)
    options.setdefault("counter_update_period_s", 0.1)
    meter = NvmlMeter(devices=devices, **options)
    ok, reason = meter.available()
    assert ok, reason
    return meter


def measure(meter: Meter, pause_s: float = 0.0) -> EnergyMeasurement:
    meter.begin_window("w")
    if pause_s:
        time.sleep(pause_s)
    return meter.end_window("w")


# --- NVML: counter arithmetic ---------------------------------------------------------


def test_counter_difference_is_the_window_energy() -> None:
    # readings: probe at open, window begin, window end
    gpu = RecordedNvmlDevice(energy_mj=[1_000, 5_000, 65_000], pids=[os.getpid()])
    meter = recorded_meter(gpu, counter_update_period_s=1e-6)
    result = measure(meter)
    assert gpu.energy_reads == 3
    assert result.method == "counter"
    assert result.gross_energy_j == pytest.approx(60.0)
    assert result.idle_energy_j is None and result.net_energy_j is None
    assert result.devices == ("nvml:0 Recorded GPU",)
    assert result.shared is False
    # no idle figure read before the model loaded: net is unmeasured, and says why
    assert result.note == (
        "idle power unknown (not read before the model loaded), so net energy is unmeasured"
    )
    meter.close()


def test_counter_of_several_gpus_is_summed() -> None:
    gpus = [
        RecordedNvmlDevice(energy_mj=[0, 1_000, 3_000], label="nvml:0 A"),
        RecordedNvmlDevice(energy_mj=[0, 10_000, 10_500], label="nvml:1 B"),
    ]
    result = measure(recorded_meter(*gpus, counter_update_period_s=1e-6))
    assert result.gross_energy_j == pytest.approx(2.5)
    assert result.devices == ("nvml:0 A", "nvml:1 B")


def test_window_shorter_than_the_update_period_is_labelled_even_when_the_counter_moved() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[0, 1_000, 1_100])
    result = measure(recorded_meter(gpu, counter_update_period_s=3600.0))
    assert result.method == "counter"
    assert result.gross_energy_j == pytest.approx(0.1)
    assert "shorter than the counter's update period" in result.note


def test_counter_that_did_not_move_falls_back_to_power_times_time() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[7_000, 7_000, 7_000], power_mw=[150_000, 250_000])
    result = measure(recorded_meter(gpu), pause_s=0.02)
    assert gpu.power_reads == 2  # one power reading at each end of the window
    assert result.method == "power_integration"
    assert result.gross_energy_j is not None and result.gross_energy_j > 0
    assert result.gross_energy_j == pytest.approx(200.0 * result.window_s)
    assert "did not move" in result.note and "power x time" in result.note


def test_counter_that_did_not_move_without_power_is_unmeasured_not_zero() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[7_000], power_mw=None)
    result = measure(recorded_meter(gpu))
    assert result.method == "unmeasured"
    assert result.gross_energy_j is None and result.net_energy_j is None
    assert "not 0 J" in result.note


def test_counter_that_went_backwards_is_unmeasured() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[9_000, 9_000, 10])
    result = measure(recorded_meter(gpu))
    assert result.method == "unmeasured"
    assert "went backwards" in result.note


def test_counter_energy_arithmetic_with_one_gpu_falling_back() -> None:
    joules, method, notes = counter_energy_j(
        ["a", "b"], [0, 500], [2_000, 500], [None, 100_000], [None, 300_000], 0.5, 0.1
    )
    assert joules == pytest.approx(2.0 + 200.0 * 0.5)
    assert method == "power_integration"
    assert "on b" in notes[0]


# --- NVML: idle power -----------------------------------------------------------------


def test_idle_power_given_is_subtracted() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[0, 0, 30_000])
    result = measure(
        recorded_meter(gpu, idle_power_w=[50.0], counter_update_period_s=1e-6), pause_s=0.01
    )
    assert result.gross_energy_j == pytest.approx(30.0)
    assert result.idle_energy_j == pytest.approx(50.0 * result.window_s)
    assert result.net_energy_j == pytest.approx(30.0 - 50.0 * result.window_s)


def test_idle_power_is_sampled_when_the_meter_opens() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[0, 0, 100_000], power_mw=[40_000, 60_000, 50_000])
    meter = NvmlMeter(
        devices=[gpu],
        idle_sample_s=0.03,
        power_sample_interval_s=0.005,
        counter_update_period_s=0.1,
    )
    ok, description = meter.available()
    assert ok and "idle power" in description
    reads = gpu.power_reads
    assert reads >= 3  # sampled repeatedly over 30 ms
    idle = meter.idle_power_w
    assert idle is not None
    expected = (40_000 + 60_000 + 50_000 * (reads - 2)) / reads / 1000
    assert idle[0] == pytest.approx(expected)
    result = measure(meter)
    assert result.idle_energy_j == pytest.approx(expected * result.window_s)
    assert result.gross_energy_j is not None and result.idle_energy_j is not None
    assert result.net_energy_j == pytest.approx(result.gross_energy_j - result.idle_energy_j)


def test_negative_net_energy_is_reported_and_flagged() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[0, 0, 1])
    result = measure(recorded_meter(gpu, idle_power_w=[1e6], counter_update_period_s=1e-6))
    assert result.net_energy_j is not None and result.net_energy_j < 0
    assert "net energy is negative" in result.note


def test_idle_power_per_device_count_is_checked() -> None:
    meter = NvmlMeter(devices=[RecordedNvmlDevice(energy_mj=[0])], idle_power_w=[1.0, 2.0])
    ok, reason = meter.available()
    assert not ok and "idle_power_w has 2 values for 1 devices" in reason


# --- NVML: no counter, power integration ------------------------------------------------


def test_gpu_without_counter_integrates_sampled_power() -> None:
    gpu = RecordedNvmlDevice(energy_mj=None, power_mw=[100_000])
    meter = recorded_meter(gpu, power_sample_interval_s=0.005)
    assert meter.method == "power_integration"
    result = measure(meter, pause_s=0.06)
    meter.close()
    assert result.method == "power_integration"
    assert result.gross_energy_j == pytest.approx(100.0 * result.window_s)
    match = re.search(r"integrates (\d+) NVML power samples", result.note)
    assert match is not None and int(match.group(1)) >= 4  # both ends and the thread's


def test_trapezoid_rule() -> None:
    # a ramp from 0 W to 100 W over one second, then 100 W for half a second
    assert trapezoid_j([0, 1_000_000_000, 1_500_000_000], [0.0, 100.0, 100.0]) == pytest.approx(
        100.0
    )
    assert trapezoid_j([5], [42.0]) == 0.0
    with pytest.raises(MeterError):
        trapezoid_j([0, 1], [1.0])


def test_gpu_with_neither_counter_nor_power_is_unavailable() -> None:
    meter = NvmlMeter(devices=[RecordedNvmlDevice(energy_mj=None, power_mw=None)])
    ok, reason = meter.available()
    assert not ok
    assert "neither a total-energy counter nor its power draw" in reason
    with pytest.raises(MeterUnavailableError):
        meter.begin_window("w")


# --- NVML: shared GPU -------------------------------------------------------------------


def test_gpu_used_only_by_this_process_is_not_shared() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[0, 0, 1_000], pids=[os.getpid()])
    assert measure(recorded_meter(gpu)).shared is False


def test_gpu_used_by_another_process_is_shared() -> None:
    other = os.getppid()  # our parent: never our descendant
    gpu = RecordedNvmlDevice(energy_mj=[0, 0, 1_000], pids=[os.getpid(), other])
    result = measure(recorded_meter(gpu))
    assert result.shared is True
    assert f"pid {other}" in result.note and "whole-board" in result.note


def test_gpu_used_by_our_child_process_is_not_shared() -> None:
    # an engine may run the model in a child (vLLM's engine core does)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        gpu = RecordedNvmlDevice(energy_mj=[0, 0, 1_000], pids=[child.pid])
        assert measure(recorded_meter(gpu)).shared is False
    finally:
        child.kill()
        child.wait()


def test_sharing_is_unknown_when_processes_cannot_be_listed() -> None:
    gpu = RecordedNvmlDevice(energy_mj=[0, 0, 1_000], pids=None)
    result = measure(recorded_meter(gpu))
    assert result.shared is None
    assert "sharing is unknown" in result.note


# --- NVML: window bookkeeping and visibility ----------------------------------------------


def test_window_keys_are_checked() -> None:
    meter = recorded_meter(RecordedNvmlDevice(energy_mj=[0, 1, 2, 3, 4]))
    meter.begin_window("a")
    with pytest.raises(MeterError, match="already open"):
        meter.begin_window("a")
    meter.begin_window("b")  # overlapping windows with different keys are fine
    assert meter.end_window("a").gross_energy_j is not None
    with pytest.raises(MeterError, match="no open window 'a'"):
        meter.end_window("a")
    meter.end_window("b")
    meter.close()
    with pytest.raises(MeterError, match="closed"):
        meter.begin_window("c")


# --- NVML: the real adapter over a stand-in binding ----------------------------------------


def test_adapter_reads_through_the_binding_into_the_meter() -> None:
    nvml = StandInPynvml(energy_mj=[100, 200, 2_200])
    devices = PynvmlDevice.open_all(nvml)
    assert [d.name() for d in devices] == ["nvml:0 Stand-in A100"]  # bytes decoded
    assert devices[0].process_pids() == (os.getpid(),)
    result = measure(recorded_meter(*devices, counter_update_period_s=1e-6))
    assert result.gross_energy_j == pytest.approx(2.0)
    assert result.shared is False


def test_missing_nvml_library_maps_to_unavailable_with_a_fix() -> None:
    nvml = StandInPynvml(errors={"nvmlInit": NVML_ERROR_LIBRARY_NOT_FOUND})
    with pytest.raises(MeterUnavailableError) as raised:
        PynvmlDevice.open_all(nvml)
    message = str(raised.value)
    assert "nvmlInit failed" in message and "code 12" in message
    assert "no NVIDIA driver" in message
    assert isinstance(raised.value, InferBudgetError)
    assert isinstance(raised.value.__cause__, StandInNVMLError)


def test_failure_after_init_shuts_nvml_down() -> None:
    nvml = StandInPynvml(errors={"nvmlDeviceGetName": 999})
    with pytest.raises(MeterError, match="code 999") as raised:
        PynvmlDevice.open_all(nvml)
    assert type(raised.value) is MeterError
    assert nvml.shutdowns == 1


def test_not_supported_maps_to_not_supported_and_selects_power_integration() -> None:
    nvml = StandInPynvml(errors={"nvmlDeviceGetTotalEnergyConsumption": NVML_ERROR_NOT_SUPPORTED})
    (device,) = PynvmlDevice.open_all(nvml)
    with pytest.raises(MeterNotSupportedError, match="Not Supported"):
        device.total_energy_mj()
    meter = recorded_meter(device, power_sample_interval_s=0.005)
    assert meter.method == "power_integration"
    result = measure(meter)
    meter.close()
    assert result.gross_energy_j == pytest.approx(75.0 * result.window_s)


def test_binding_without_the_function_maps_to_not_supported() -> None:
    device = PynvmlDevice(SimpleNamespace(NVMLError=StandInNVMLError), "h", "nvml:0 old")
    with pytest.raises(MeterNotSupportedError, match="nvidia-ml-py"):
        device.total_energy_mj()


# --- RAPL against a real directory tree -------------------------------------------------


def write_zone(
    root: Path, zone: str, name: str, energy_uj: int, max_range_uj: int = 262_143_328_850
) -> Path:
    """One powercap zone as the kernel lays it out: name, energy_uj, max_energy_range_uj."""
    directory = root / zone
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "name").write_text(f"{name}\n")
    (directory / "energy_uj").write_text(f"{energy_uj}\n")
    (directory / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return directory / "energy_uj"


def test_rapl_single_package(tmp_path: Path) -> None:
    counter = write_zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    meter = RaplMeter(tmp_path, idle_sample_s=0)
    assert meter.available()[0]
    meter.begin_window("w")
    counter.write_text("3500000\n")
    result = meter.end_window("w")
    assert result.method == "rapl"
    assert result.gross_energy_j == pytest.approx(2.5)
    assert result.idle_energy_j is None and result.net_energy_j is None
    assert result.devices == ("rapl:package-0",)
    assert result.shared is None


def test_rapl_sums_packages_and_ignores_subzones_psys_and_mmio(tmp_path: Path) -> None:
    pkg0 = write_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    pkg1 = write_zone(tmp_path, "intel-rapl:1", "package-1", 0)
    core = write_zone(tmp_path, "intel-rapl:0:0", "core", 0)
    dram = write_zone(tmp_path, "intel-rapl:1:0", "dram", 0)
    psys = write_zone(tmp_path, "intel-rapl:2", "psys", 0)
    mmio = write_zone(tmp_path, "intel-rapl-mmio:0", "package-0", 0)
    (tmp_path / "intel-rapl").mkdir()  # the control-type directory, no counter
    meter = RaplMeter(tmp_path, idle_sample_s=0)
    assert meter.available()[0]
    assert meter.devices == ("rapl:package-0", "rapl:package-1")
    meter.begin_window("w")
    pkg0.write_text("2000000")
    pkg1.write_text("1000000")
    for ignored in (core, dram, psys, mmio):
        ignored.write_text("999000000")
    result = meter.end_window("w")
    assert result.gross_energy_j == pytest.approx(3.0)


def test_rapl_counter_wrapping_once(tmp_path: Path) -> None:
    counter = write_zone(tmp_path, "intel-rapl:0", "package-0", 9_000_000, max_range_uj=10_000_000)
    meter = RaplMeter(tmp_path, idle_sample_s=0)
    meter.begin_window("w")
    counter.write_text("500000")
    result = meter.end_window("w")
    assert result.gross_energy_j == pytest.approx(1.5)
    assert "wrapped" in result.note


def test_rapl_counter_that_did_not_move_is_unmeasured(tmp_path: Path) -> None:
    write_zone(tmp_path, "intel-rapl:0", "package-0", 42)
    result = measure(RaplMeter(tmp_path, idle_sample_s=0))
    assert result.method == "unmeasured" and result.gross_energy_j is None
    assert "not 0 J" in result.note


def test_rapl_idle_power_is_subtracted(tmp_path: Path) -> None:
    counter = write_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    stop = threading.Event()

    def tick() -> None:  # the package draws 1 uJ per 1 ms tick while idle
        value = 0
        staging = counter.with_name("energy_uj.next")
        while not stop.wait(0.001):
            value += 1
            staging.write_text(str(value))
            os.replace(staging, counter)  # whole values only, as sysfs reads are

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        meter = RaplMeter(tmp_path, idle_sample_s=0.05)
        assert meter.available()[0]
    finally:
        stop.set()
        ticker.join()
    idle_w = meter.idle_power_w
    assert idle_w is not None and 0 < idle_w < 0.01
    value = int(counter.read_text())
    meter.begin_window("w")
    counter.write_text(str(value + 2_000_000))
    result = meter.end_window("w")
    assert result.gross_energy_j == pytest.approx(2.0)
    assert result.idle_energy_j == pytest.approx(idle_w * result.window_s)
    assert result.net_energy_j == pytest.approx(2.0 - idle_w * result.window_s)


def test_no_rapl_tree_is_unavailable_with_reason(tmp_path: Path) -> None:
    ok, reason = RaplMeter(tmp_path / "absent").available()
    assert not ok and "does not exist" in reason and "modprobe" in reason
    write_zone(tmp_path, "intel-rapl:0:0", "core", 0)  # a subzone alone is no package
    ok, reason = RaplMeter(tmp_path).available()
    assert not ok and "no RAPL package zone" in reason


@contextlib.contextmanager
def as_unprivileged_user() -> Iterator[None]:
    """Run the block without root's right to read any file.

    The tests run as root here (and in CI), and root reads a file whatever its mode,
    so a ``chmod 000`` alone proves nothing. As root we lower the *effective* user id
    to ``nobody`` for the block (the real and saved ids stay 0, so it can be raised
    back); the kernel then refuses the read with EACCES exactly as it does for a user
    reading the real root-only ``energy_uj``. Not root: the chmod alone denies it.
    """
    if os.geteuid() != 0:
        yield
        return
    try:
        os.seteuid(65534)
    except PermissionError:
        pytest.skip("root here may not change its effective user id (no CAP_SETUID)")
    try:
        yield
    finally:
        os.seteuid(0)


def test_rapl_permission_denied_says_how_to_grant_access() -> None:
    # the tree lives outside pytest's tmp_path, whose parents only root may enter
    root = Path(tempfile.mkdtemp(prefix="inferbudget-rapl-"))
    try:
        root.chmod(0o755)
        counter = write_zone(root, "intel-rapl:0", "package-0", 1)
        counter.chmod(0o400 if os.geteuid() == 0 else 0o000)  # root-only, as the kernel has it
        with as_unprivileged_user():
            ok, reason = RaplMeter(root, idle_sample_s=0).available()
        assert not ok
        assert "permission denied" in reason
        assert "sudo chmod o+r" in reason and "intel-rapl:*/energy_uj" in reason
        assert "udev rule" in reason and "run the tests as root" in reason
    finally:
        shutil.rmtree(root)


# --- choosing a meter ----------------------------------------------------------------


def nvml_works_here() -> bool:
    meter = NvmlMeter(idle_sample_s=0)
    try:
        return meter.available()[0]
    finally:
        meter.close()


def test_auto_on_a_machine_without_nvml_or_rapl_is_unmeasured_with_both_reasons() -> None:
    meter = select_meter("auto")
    if nvml_works_here():
        assert isinstance(meter, NvmlMeter)
        meter.close()
        return
    if Path("/sys/class/powercap").is_dir() and RaplMeter(idle_sample_s=0).available()[0]:
        assert isinstance(meter, RaplMeter)
        return
    # this machine (DESIGN.md section 4): neither
    assert isinstance(meter, NullMeter)
    ok, reason = meter.available()
    assert not ok
    assert "NVML:" in reason and "RAPL:" in reason
    result = measure(meter, pause_s=0.01)
    assert result.method == "unmeasured"
    assert result.gross_energy_j is None and result.net_energy_j is None
    assert result.window_s >= 0.01
    assert result.note == reason


def test_auto_falls_back_to_rapl(tmp_path: Path) -> None:
    write_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    if nvml_works_here():
        pytest.skip("NVML works on this machine, so auto takes it before RAPL")
    meter = select_meter("auto", rapl_root=str(tmp_path))
    assert isinstance(meter, RaplMeter)
    assert meter.devices == ("rapl:package-0",)


def test_explicit_nvml_that_cannot_measure_raises_with_a_fix() -> None:
    if nvml_works_here():
        pytest.skip("NVML works on this machine")
    with pytest.raises(MeterUnavailableError) as raised:
        select_meter("nvml")
    message = str(raised.value)
    assert "'nvml' was asked for but cannot measure here" in message
    assert "pip install nvidia-ml-py" in message or "driver" in message
    assert "choose 'auto'" in message


def test_explicit_rapl(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailableError, match=r"'rapl' was asked for.*does not exist"):
        select_meter("rapl", rapl_root=str(tmp_path / "absent"))
    write_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    assert isinstance(select_meter("rapl", rapl_root=str(tmp_path)), RaplMeter)


def test_off_and_unknown_choices() -> None:
    meter = select_meter("off")
    assert isinstance(meter, NullMeter) and isinstance(meter, Meter)
    assert "off" in meter.available()[1]
    with pytest.raises(MeterChoiceError, match="choose one of auto, nvml, rapl, off"):
        select_meter("joulemeter")
    with pytest.raises(ValueError):
        select_meter("")


def test_null_meter_checks_its_keys() -> None:
    meter = NullMeter("no meter")
    with pytest.raises(MeterError, match="no open window"):
        meter.end_window("never")
    meter.begin_window("k")
    with pytest.raises(MeterError, match="already open"):
        meter.begin_window("k")


# --- the measurement record -------------------------------------------------------------


def test_energy_measurement_round_trips_through_json() -> None:
    original = EnergyMeasurement(
        gross_energy_j=12.5,
        idle_energy_j=2.5,
        net_energy_j=10.0,
        window_s=1.25,
        method=EnergyMethod.COUNTER,
        devices=("nvml:0 X",),
        shared=False,
        note="n",
    )
    data = json.loads(json.dumps(original.to_dict()))
    assert EnergyMeasurement.from_dict(data) == original
    unmeasured = EnergyMeasurement.unmeasured(0.5, "no meter")
    assert EnergyMeasurement.from_dict(unmeasured.to_dict()) == unmeasured
    assert not unmeasured.measured and original.measured


def test_energy_measurement_rejects_bad_data() -> None:
    with pytest.raises(MeterError, match="method must be one of"):
        EnergyMeasurement(None, None, None, 1.0, "guess")  # type: ignore[arg-type]
    with pytest.raises(MeterError, match="cannot carry gross_energy_j"):
        EnergyMeasurement(1.0, None, None, 1.0, EnergyMethod.UNMEASURED)
    with pytest.raises(MeterError, match="lacks the keys"):
        EnergyMeasurement.from_dict({"method": "counter"})
    data = EnergyMeasurement.unmeasured(1.0, "x").to_dict() | {"gross_energy_j": "12"}
    with pytest.raises(MeterError, match="must be a number or null"):
        EnergyMeasurement.from_dict(data)


# --- memory -------------------------------------------------------------------------------


def allocate(size_bytes: int) -> bytes:
    """Bytes that really occupy memory (a repeated byte is written, not lazily zeroed)."""
    return b"\x01" * size_bytes


def test_window_peak_rss_sees_a_200_mib_allocation() -> None:
    meter = MemoryMeter()
    meter.begin_window("quiet")
    quiet = meter.end_window("quiet")
    meter.begin_window("busy")
    block = allocate(200 * MIB)
    del block
    busy = meter.end_window("busy")
    assert quiet.rss_scope == busy.rss_scope == "window"  # clear_refs works on this kernel
    assert quiet.peak_rss_mb is not None and busy.peak_rss_mb is not None
    assert busy.peak_rss_mb - quiet.peak_rss_mb >= 190
    assert busy.peak_accelerator_mb is None  # no CUDA here
    assert "no accelerator peak" in busy.note


def test_overlapping_windows_keep_their_own_peaks() -> None:
    meter = MemoryMeter()
    meter.begin_window("outer")
    block = allocate(200 * MIB)
    del block
    meter.begin_window("inner")  # resets the high-water mark: outer's peak must survive
    inner = meter.end_window("inner")
    outer = meter.end_window("outer")
    assert inner.peak_rss_mb is not None and outer.peak_rss_mb is not None
    assert outer.peak_rss_mb - inner.peak_rss_mb >= 190


def test_without_reset_a_window_that_did_not_raise_the_peak_reports_the_process_peak() -> None:
    block = allocate(100 * MIB)
    del block
    meter = MemoryMeter(reset_rss_peak=False)
    meter.begin_window("w")
    result = meter.end_window("w")
    assert result.rss_scope == "process"
    assert "upper bound" in result.note
    assert result.peak_rss_mb is not None and result.peak_rss_mb >= 100


def test_without_reset_a_window_that_raised_the_peak_reports_its_own() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # start from the current RSS
    except OSError:
        pytest.skip("this kernel does not let the RSS high-water mark be reset")
    meter = MemoryMeter(reset_rss_peak=False)
    meter.begin_window("w")
    block = allocate(200 * MIB)
    del block
    result = meter.end_window("w")
    assert result.rss_scope == "window"
    assert result.peak_rss_mb is not None and result.peak_rss_mb >= 200


def test_memory_measurement_round_trips_and_checks_its_scope() -> None:
    original = MemoryMeasurement(512.0, None, window_s=0.5, rss_scope="window", note="")
    assert MemoryMeasurement.from_dict(json.loads(json.dumps(original.to_dict()))) == original
    with pytest.raises(MeterError, match="does not fit"):
        MemoryMeasurement(None, None, rss_scope="window")
    with pytest.raises(MeterError, match="rss_scope must be one of"):
        MemoryMeasurement(1.0, None, rss_scope="heap")


# --- import hygiene ---------------------------------------------------------------------


def test_meters_import_neither_pynvml_nor_torch() -> None:
    code = (
        "import sys, pytest_inferbudget.meters; "
        "print(sorted(x for x in ('pynvml', 'torch', 'numpy') if x in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
