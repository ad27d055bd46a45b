"""Power readings: idle power, and sampling for GPUs without an energy counter.

Apart from :mod:`~pytest_inferbudget.meters.nvml` so that the meter's module keeps to the
window's bookkeeping; only the standard library and the device protocol are used here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, final

from pytest_inferbudget.errors import MeterError, MeterNotSupportedError
from pytest_inferbudget.meters.base import now_ns
from pytest_inferbudget.meters.gpus import normalize_uuid
from pytest_inferbudget.meters.nvml_device import NvmlDevice, PynvmlDevice, import_pynvml

__all__ = ["PowerSampler", "idle_power_by_uuid", "power_now", "sample_power", "trapezoid_j"]


def trapezoid_j(times_ns: Sequence[int], watts: Sequence[float]) -> float:
    """Energy in joules of power samples (watts at nanosecond times), trapezoid rule."""
    if len(times_ns) != len(watts):
        raise MeterError(f"{len(times_ns)} sample times for {len(watts)} power samples")
    return sum(
        (watts[i - 1] + watts[i]) / 2.0 * (times_ns[i] - times_ns[i - 1]) / 1e9
        for i in range(1, len(times_ns))
    )


_Sample = tuple[int, tuple[float, ...]]
"""(perf_counter_ns, watts of each device)."""


@final
class PowerSampler:
    """Samples every device's power every ``interval_s`` while a window is open.

    Each window also gets a sample read at its very start and end, so even a window
    shorter than the interval has two points to integrate.
    """

    def __init__(self, devices: tuple[NvmlDevice, ...], interval_s: float) -> None:
        self._devices = devices
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._samples: list[_Sample] = []
        self._open_starts: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error = ""

    def _read(self) -> _Sample:
        t_ns = now_ns()
        return t_ns, tuple(d.power_mw() / 1000.0 for d in self._devices)

    def begin(self) -> int:
        sample = self._read()
        with self._lock:
            self._samples.append(sample)
            self._open_starts.append(sample[0])
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="inferbudget-nvml-power", daemon=True
            )
            self._thread.start()
        return sample[0]

    def end(self, start_ns: int) -> tuple[int, list[_Sample], str]:
        try:
            sample = self._read()
        except MeterError:
            with self._lock:
                self._forget(start_ns)
            raise
        with self._lock:
            self._samples.append(sample)
            window = sorted(s for s in self._samples if start_ns <= s[0] <= sample[0])
            self._forget(start_ns)
            error, self._error = self._error, ""
        return sample[0], window, error

    def _forget(self, start_ns: int) -> None:
        self._open_starts.remove(start_ns)
        if self._open_starts:
            oldest = min(self._open_starts)
            self._samples = [s for s in self._samples if s[0] >= oldest]
        else:
            self._samples.clear()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            with self._lock:
                if not self._open_starts:
                    continue
            try:
                sample = self._read()
            except MeterError as exc:
                with self._lock:
                    self._error = f"the power sampling thread failed ({exc})"
                continue
            with self._lock:
                if self._open_starts:
                    self._samples.append(sample)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def idle_power_by_uuid(
    sample_s: float = 0.5, interval_s: float = 0.01, devices: Sequence[NvmlDevice] | None = None
) -> tuple[dict[str, float], str]:
    """Mean instant power of every GPU over ``sample_s``, by UUID, and a note; read before
    the engine loads its model. ``({}, why)`` where NVML cannot be read."""
    nvml: Any = None
    try:
        if devices is None:
            nvml = import_pynvml()
            devices = PynvmlDevice.open_all(nvml)
        means, note = sample_power(devices, sample_s, interval_s)
        if means is None:
            return {}, note
        return {normalize_uuid(d.uuid()): w for d, w in zip(devices, means, strict=True)}, note
    except MeterError as exc:
        return {}, f"idle power not read before the model loaded ({exc})"
    finally:
        if nvml is not None:
            PynvmlDevice.shutdown(nvml)


def power_now(device: NvmlDevice) -> tuple[int, bool]:
    """``(mW, instant?)``: the instant reading where the board has one, else the default."""
    try:
        return device.instant_power_mw(), True
    except MeterNotSupportedError:
        return device.power_mw(), False


def sample_power(
    devices: Sequence[NvmlDevice], sample_s: float, interval_s: float
) -> tuple[tuple[float, ...] | None, str]:
    """Mean power of each device over ``sample_s`` (at least one reading each)."""
    totals = [0.0] * len(devices)
    count = 0
    averaged = False
    deadline = now_ns() + int(sample_s * 1e9)
    try:
        while True:
            for i, device in enumerate(devices):
                milliwatts, instant = power_now(device)
                totals[i] += milliwatts / 1000.0
                averaged |= not instant
            count += 1
            if now_ns() >= deadline:
                break
            time.sleep(interval_s)
    except MeterNotSupportedError as exc:
        return None, f"idle power unknown: power readings are not supported ({exc})"
    note = (
        "idle power from NVML's default power reading, a one-second average on recent "
        "boards (no instant reading here)"
        if averaged
        else ""
    )
    return tuple(total / count for total in totals), note
