"""Test doubles that stand in for NVML, which no machine here has (no NVIDIA driver).

* :class:`RecordedNvmlDevice` replaces one GPU behind the meter's ``NvmlDevice`` protocol,
  replaying recorded readings.
* :class:`StandInPynvml` replaces the pynvml binding under the real adapter
  (``PynvmlDevice``), raising NVML's real return codes.
* :class:`TimedCounterDevice` is a GPU whose energy counter steps at a fixed period of
  real time, as NVML's does, for measuring the update period.

Everything above them is the package's real code.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from types import SimpleNamespace

from pytest_inferbudget.meters import MeterNotSupportedError


class RecordedNvmlDevice:
    """Test double that stands in for NVML, which no machine here has.

    It replays recorded readings, one per call: ``energy_mj`` for the total-energy
    counter (mJ), ``power_mw`` for the power draw (mW), repeating the last value once
    the recording runs out (as the counter does between its updates). ``None`` makes
    that query raise NOT_SUPPORTED the way the real adapter maps it (a pre-Volta GPU
    has no energy counter). ``pids`` are the compute processes NVML would list.
    """

    def __init__(
        self,
        *,
        energy_mj: Sequence[int] | None,
        power_mw: Sequence[int] | None = (100_000,),
        pids: Sequence[int] | None = (),
        label: str = "nvml:0 Recorded GPU",
        instant_power_mw: Sequence[int] | None = None,
        uuid: str = "GPU-00000000-0000-0000-0000-000000000000",
        pci_bus_id: str = "00000000:01:00.0",
        mig: bool = False,
    ) -> None:
        self._energy = None if energy_mj is None else list(energy_mj)
        self._power = None if power_mw is None else list(power_mw)
        self._instant = None if instant_power_mw is None else list(instant_power_mw)
        self._pids = None if pids is None else tuple(pids)
        self._label = label
        self._uuid = uuid
        self._bus = pci_bus_id
        self._mig = mig
        self.instant_reads = 0
        self._lock = threading.Lock()
        self.energy_reads = 0
        self.power_reads = 0

    def name(self) -> str:
        return self._label

    def total_energy_mj(self) -> int:
        if self._energy is None:
            raise MeterNotSupportedError("nvmlDeviceGetTotalEnergyConsumption: Not Supported")
        with self._lock:
            value = self._energy[min(self.energy_reads, len(self._energy) - 1)]
            self.energy_reads += 1
        return value

    def power_mw(self) -> int:
        if self._power is None:
            raise MeterNotSupportedError("nvmlDeviceGetPowerUsage: Not Supported")
        with self._lock:
            value = self._power[min(self.power_reads, len(self._power) - 1)]
            self.power_reads += 1
        return value

    def process_pids(self) -> tuple[int, ...]:
        if self._pids is None:
            raise MeterNotSupportedError("nvmlDeviceGetComputeRunningProcesses: Not Supported")
        return self._pids

    def instant_power_mw(self) -> int:
        """``None`` (the default) is a board without NVML's instant power field."""
        if self._instant is None:
            raise MeterNotSupportedError("NVML_FI_DEV_POWER_INSTANT: Not Supported")
        with self._lock:
            value = self._instant[min(self.instant_reads, len(self._instant) - 1)]
            self.instant_reads += 1
        return value

    def uuid(self) -> str:
        return self._uuid

    def pci_bus_id(self) -> str:
        return self._bus

    def mig_enabled(self) -> bool:
        return self._mig


class StandInNVMLError(Exception):
    """Shaped like pynvml's NVMLError: the NVML return code is in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 12: "NVML Shared Library Not Found"}.get(
            self.value, f"NVML Error with code {self.value}"
        )


class StandInPynvml:
    """Stands in for the pynvml module, which cannot load NVML here (no NVIDIA driver).

    Functions return recorded values or raise :class:`StandInNVMLError` carrying NVML's
    real return codes, so the code under test is the real adapter, ``PynvmlDevice``.
    """

    NVMLError = StandInNVMLError

    def __init__(
        self,
        *,
        errors: Mapping[str, int] | None = None,
        energy_mj: Sequence[int] = (0,),
        name: bytes = b"Stand-in A100",
        mig: int = 0,
    ) -> None:
        self.mig = mig
        self.errors = dict(errors or {})
        self.energy = list(energy_mj)
        self.gpu_name = name
        self.shutdowns = 0

    def _maybe_fail(self, function: str) -> None:
        if function in self.errors:
            raise StandInNVMLError(self.errors[function])

    def nvmlInit(self) -> None:
        self._maybe_fail("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"handle-{index}"

    def nvmlDeviceGetUUID(self, handle: str) -> str:
        self._maybe_fail("nvmlDeviceGetUUID")
        return "GPU-0000"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        self._maybe_fail("nvmlDeviceGetName")
        return self.gpu_name

    def nvmlDeviceGetFieldValues(self, handle: str, fields: list[int]) -> list[SimpleNamespace]:
        """One ``c_nvmlFieldValue_t``-shaped value per field; a per-field status as NVML
        reports it (``nvmlReturn``), not an exception."""
        status = self.errors.get("NVML_FI_DEV_POWER_INSTANT", 0)
        return [
            SimpleNamespace(fieldId=f, nvmlReturn=status, value=SimpleNamespace(uiVal=91_000))
            for f in fields
        ]

    def nvmlDeviceGetPciInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(busId=b"00000000:1B:00.0")

    def nvmlDeviceGetMigMode(self, handle: str) -> list[int]:
        self._maybe_fail("nvmlDeviceGetMigMode")
        return [self.mig, self.mig]

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        self._maybe_fail("nvmlDeviceGetTotalEnergyConsumption")
        return self.energy.pop(0) if len(self.energy) > 1 else self.energy[0]

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        self._maybe_fail("nvmlDeviceGetPowerUsage")
        return 75_000

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=None)]


class TimedCounterDevice(RecordedNvmlDevice):
    """Test double for a GPU whose counter steps every ``period_s`` of real time by
    ``watts x period_s`` (NVML updates it every 20-100 ms, depending on the board)."""

    def __init__(self, period_s: float, watts: float = 100.0, **options: object) -> None:
        super().__init__(energy_mj=[0], power_mw=[int(watts * 1000)], **options)  # type: ignore[arg-type]
        self._period_s = period_s
        self._step_mj = int(watts * period_s * 1000)
        self._t0 = time.perf_counter()

    def total_energy_mj(self) -> int:
        steps = int((time.perf_counter() - self._t0) / self._period_s)
        return 1_000_000 + steps * self._step_mj


class SimulatedClock:
    """Test double for the clock the NVML meter reads (``perf_counter_ns``): time moves
    only when a test advances it, or by ``tick_s`` at every read (to let the meter's
    update-period probe poll), so a counter stepping every 100 ms meets engine calls of
    exactly 0.1 s."""

    def __init__(self, tick_s: float = 0.0) -> None:
        self.ns = 0
        self.tick_s = tick_s

    def __call__(self) -> int:
        self.ns += round(self.tick_s * 1e9)
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)


class SteppingCounterDevice(RecordedNvmlDevice):
    """Test double for a GPU whose energy counter steps every ``period_s`` of a
    :class:`SimulatedClock` by ``watts x period_s`` (NVML updates it every 20-100 ms),
    starting ``phase_s`` into a period; its power reads ``watts``."""

    def __init__(
        self,
        clock: SimulatedClock,
        *,
        period_s: float = 0.1,
        watts: float = 200.0,
        phase_s: float = 0.0,
        **options: object,
    ) -> None:
        super().__init__(energy_mj=[0], power_mw=[int(watts * 1000)], **options)  # type: ignore[arg-type]
        self._clock = clock
        self._period_ns = round(period_s * 1e9)
        self._phase_ns = round(phase_s * 1e9)
        self._step_mj = round(watts * period_s * 1000)

    def total_energy_mj(self) -> int:
        self.energy_reads += 1
        return 5_000_000 + (self._clock.ns + self._phase_ns) // self._period_ns * self._step_mj
