"""NVML energy meter for NVIDIA GPUs.

Energy over a window is the difference of NVML's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver loaded, Volta and
newer), as vLLM's and Zeus's meters read it. Where a GPU has no such counter, a
background thread samples ``nvmlDeviceGetPowerUsage`` (milliwatts) about every 10 ms
and the window's energy is the trapezoid-rule integral of those samples.

The counter only moves every so often (about every 20-100 ms, ``counter_update_period_s``),
so a short window may see it stand still. Such a window is never read as 0 J: its
energy falls back to power x time (the mean of the power readings at its two ends
times its length), labelled ``power_integration`` with a note.

Idle power is measured once, when the meter opens (``idle_sample_s`` of power
samples), and each window reports ``idle_energy_j = idle power x window`` and
``net_energy_j = gross - idle``. NVML measures the whole board: if another process
used the GPU during the window (``nvmlDeviceGetComputeRunningProcesses`` lists a
PID that is neither this process nor one of its descendants), ``shared`` is True.

Every pynvml call lives in :mod:`~pytest_inferbudget.meters.nvml_device`; the meter only
sees its small :class:`NvmlDevice` protocol, which is where tests put a recorded stand-in.

Longer than 500 lines because the two ways of reading a window (counter differences with
their stall fallback, and the power sampler thread for boards without a counter) share
the window's bookkeeping, idle power and sharing check.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, final

from pytest_inferbudget.errors import MeterError, MeterNotSupportedError, MeterUnavailableError
from pytest_inferbudget.meters.base import (
    EnergyMeasurement,
    OpenWindows,
    initialized_torch_cuda,
    now_ns,
    synchronize_accelerator,
    window_seconds,
)
from pytest_inferbudget.vocabulary import EnergyMethod

__all__ = ["NvmlDevice", "NvmlMeter", "select_visible", "translate_nvml_error"]

from pytest_inferbudget.meters.nvml_device import (
    NvmlDevice,
    PynvmlDevice,
    import_pynvml,
    select_visible,
    translate_nvml_error,
)
from pytest_inferbudget.meters.procfs import descendant_pids


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
class _PowerSampler:
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


@dataclass(frozen=True, slots=True)
class _Start:
    t_ns: int
    energy_mj: tuple[int, ...] | None
    power_mw: tuple[int | None, ...]
    shared: bool | None
    shared_note: str


def _positive(name: str, value: float, *, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MeterError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise MeterError(f"{name} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
    return float(value)


@final
class NvmlMeter:
    """Energy of NVIDIA GPUs through NVML; see the module docstring for the method.

    ``devices`` replaces the GPUs NVML would open (tests pass recorded devices);
    ``counter_update_period_s`` is how often the energy counter moves;
    ``power_sample_interval_s`` the power-sampling period where there is no counter;
    ``idle_sample_s`` how long idle power is sampled when the meter opens (0: not at
    all, so no idle or net figures), unless ``idle_power_w`` gives it, one per device.
    NVML is opened by :meth:`available` (or the first window) and released by
    :meth:`close`.
    """

    name = "nvml"

    def __init__(
        self,
        *,
        devices: Sequence[NvmlDevice] | None = None,
        counter_update_period_s: float = 0.1,
        power_sample_interval_s: float = 0.01,
        idle_sample_s: float = 0.5,
        idle_power_w: Sequence[float] | None = None,
    ) -> None:
        self._given = tuple(devices) if devices is not None else None
        self._counter_update_period_s = _positive(
            "counter_update_period_s", counter_update_period_s
        )
        self._power_sample_interval_s = _positive(
            "power_sample_interval_s", power_sample_interval_s
        )
        self._idle_sample_s = _positive("idle_sample_s", idle_sample_s, zero_ok=True)
        self._idle_power_w = None if idle_power_w is None else tuple(map(float, idle_power_w))
        self._idle_note = ""
        self._devices: tuple[NvmlDevice, ...] = ()
        self._nvml: Any = None
        self._use_counter = True
        self._sampler: _PowerSampler | None = None
        self._probe: tuple[bool, str] | None = None
        self._windows: OpenWindows[_Start] = OpenWindows("nvml")
        self._closed = False

    # -- state -----------------------------------------------------------------

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(d.name() for d in self._devices)

    @property
    def idle_power_w(self) -> tuple[float, ...] | None:
        """Idle power of each device in watts, as measured (or given) at open."""
        return self._idle_power_w

    @property
    def method(self) -> EnergyMethod:
        """``counter`` or ``power_integration``: how windows are normally measured."""
        return EnergyMethod.COUNTER if self._use_counter else EnergyMethod.POWER_INTEGRATION

    def available(self) -> tuple[bool, str]:
        if self._closed:
            return False, "the NVML meter was closed"
        if self._probe is None:
            try:
                self._open()
            except MeterError as exc:
                self._probe = (False, str(exc))
                self._release()
            else:
                self._probe = (True, self._describe())
        return self._probe

    def _describe(self) -> str:
        idle = (
            "idle power " + ", ".join(f"{w:.1f} W" for w in self._idle_power_w)
            if self._idle_power_w is not None
            else "idle power not measured"
        )
        via = "energy counter" if self._use_counter else "power sampling"
        return f"NVML {via} on {', '.join(self.devices)}; {idle}"

    def _open(self) -> None:
        if self._given is None:
            self._nvml = import_pynvml()
            devices: Sequence[NvmlDevice] = PynvmlDevice.open_visible(
                self._nvml, os.environ.get("CUDA_VISIBLE_DEVICES")
            )
        else:
            devices = self._given
        if not devices:
            raise MeterUnavailableError("NVML sees no GPU, or CUDA_VISIBLE_DEVICES hides them all")
        self._devices = tuple(devices)
        try:
            for device in self._devices:
                device.total_energy_mj()
        except MeterNotSupportedError:
            self._use_counter = False
        if not self._use_counter:
            for device in self._devices:
                try:
                    device.power_mw()
                except MeterNotSupportedError as exc:
                    raise MeterUnavailableError(
                        f"{device.name()} reports neither a total-energy counter nor its "
                        f"power draw ({exc}), so NVML cannot meter it"
                    ) from exc
            self._sampler = _PowerSampler(self._devices, self._power_sample_interval_s)
        if self._idle_power_w is not None:
            if len(self._idle_power_w) != len(self._devices):
                raise MeterError(
                    f"idle_power_w has {len(self._idle_power_w)} values for "
                    f"{len(self._devices)} devices"
                )
        elif self._idle_sample_s > 0:
            self._idle_power_w = self._measure_idle()

    def _measure_idle(self) -> tuple[float, ...] | None:
        """Mean power of each device over ``idle_sample_s``, sampled while nothing runs."""
        totals = [0.0] * len(self._devices)
        count = 0
        deadline = now_ns() + int(self._idle_sample_s * 1e9)
        try:
            while True:
                for i, device in enumerate(self._devices):
                    totals[i] += device.power_mw() / 1000.0
                count += 1
                if now_ns() >= deadline:
                    break
                time.sleep(self._power_sample_interval_s)
        except MeterNotSupportedError as exc:
            self._idle_note = f"idle power unknown: power readings are not supported ({exc})"
            return None
        return tuple(total / count for total in totals)

    def _require_open(self) -> None:
        if self._closed:
            raise MeterError("the NVML meter was closed; make a new one")
        ok, reason = self.available()
        if not ok:
            raise MeterUnavailableError(f"the NVML meter cannot measure: {reason}")

    # -- windows ---------------------------------------------------------------

    def begin_window(self, key: str) -> None:
        self._require_open()
        self._windows.check_absent(key)
        synchronize_accelerator()
        shared, shared_note = self._foreign_processes()
        if self._sampler is not None:
            start = _Start(self._sampler.begin(), None, (), shared, shared_note)
        else:
            t_ns = now_ns()
            energy = tuple(d.total_energy_mj() for d in self._devices)
            start = _Start(t_ns, energy, self._powers(), shared, shared_note)
        self._windows.open(key, start)

    def end_window(self, key: str) -> EnergyMeasurement:
        start = self._windows.close(key)
        synchronize_accelerator()
        notes: list[str] = []
        gross_j: float | None
        if self._sampler is not None:
            end_ns, samples, error = self._sampler.end(start.t_ns)
            window_s = window_seconds(start.t_ns, end_ns)
            times = [t for t, _ in samples]
            gross_j = sum(
                trapezoid_j(times, [w[i] for _, w in samples]) for i in range(len(self._devices))
            )
            method = EnergyMethod.POWER_INTEGRATION
            notes.append(
                f"this GPU has no total-energy counter: energy integrates {len(samples)} "
                f"NVML power samples (about every {self._power_sample_interval_s:g} s, "
                "trapezoid rule)"
            )
            if error:
                notes.append(error)
        else:
            if start.energy_mj is None:
                raise MeterError("internal: a counter window began without counter readings")
            energy = tuple(d.total_energy_mj() for d in self._devices)
            end_ns = now_ns()
            window_s = window_seconds(start.t_ns, end_ns)
            gross_j, method, counter_notes = counter_energy_j(
                self.devices,
                start.energy_mj,
                energy,
                start.power_mw,
                self._powers(),
                window_s,
                self._counter_update_period_s,
            )
            notes.extend(counter_notes)
        shared_end, shared_end_note = self._foreign_processes()
        shared = _either_shared(start.shared, shared_end)
        notes.extend(n for n in dict.fromkeys((start.shared_note, shared_end_note)) if n)
        if gross_j is None:
            return EnergyMeasurement.unmeasured(window_s, "; ".join(notes), devices=self.devices)
        idle_j: float | None = None
        net_j: float | None = None
        if self._idle_power_w is not None:
            idle_j = sum(self._idle_power_w) * window_s
            net_j = gross_j - idle_j
            if net_j < 0:
                notes.append(
                    "net energy is negative: the window drew less than the idle power "
                    "measured at start, so treat net figures as unreliable here"
                )
        elif self._idle_note:
            notes.append(self._idle_note)
        return EnergyMeasurement(
            gross_energy_j=gross_j,
            idle_energy_j=idle_j,
            net_energy_j=net_j,
            window_s=window_s,
            method=method,
            devices=self.devices,
            shared=shared,
            note="; ".join(notes),
        )

    def _powers(self) -> tuple[int | None, ...]:
        """Power of each device in mW, None where NVML does not report it."""
        powers: list[int | None] = []
        for device in self._devices:
            try:
                powers.append(device.power_mw())
            except MeterNotSupportedError:
                powers.append(None)
        return tuple(powers)

    def _foreign_processes(self) -> tuple[bool | None, str]:
        """Whether a process other than this one (or its children) holds a GPU context."""
        pids: set[int] = set()
        try:
            for device in self._devices:
                pids.update(device.process_pids())
        except MeterError as exc:
            return None, f"could not list the GPU's processes ({exc}), so sharing is unknown"
        me = os.getpid()
        others = pids - {me}
        if others:
            others -= descendant_pids(me)
        if not others:
            return False, ""
        if me not in pids and initialized_torch_cuda() is not None:
            return None, (
                "NVML lists GPU processes but not this one, although it uses CUDA: the "
                "PIDs come from another PID namespace (a container?), so sharing is unknown"
            )
        shown = ", ".join(str(p) for p in sorted(others)[:5])
        return True, (
            f"other processes (pid {shown}) used the GPU: NVML energy is whole-board, "
            "so it includes theirs"
        )

    # -- release ---------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        if self._nvml is not None:
            PynvmlDevice.shutdown(self._nvml)
            self._nvml = None

    def __repr__(self) -> str:
        return f"NvmlMeter(devices={self.devices!r}, method={self.method!r})"


def _either_shared(first: bool | None, second: bool | None) -> bool | None:
    if first is True or second is True:
        return True
    if first is None or second is None:
        return None
    return False


def counter_energy_j(
    devices: Sequence[str],
    begin_mj: Sequence[int],
    end_mj: Sequence[int],
    begin_power_mw: Sequence[int | None],
    end_power_mw: Sequence[int | None],
    window_s: float,
    update_period_s: float,
) -> tuple[float | None, EnergyMethod, list[str]]:
    """Gross energy of a window from counter readings: ``(joules, method, notes)``.

    Each device's energy is its counter difference. A counter that did not move is
    not read as 0 J: that device's energy is the mean of its power readings at the two
    ends times the window, and the method becomes ``power_integration``. A counter that
    went backwards (the driver reloaded) leaves the window unmeasured (``None``).
    """
    total_j = 0.0
    fell_back: list[str] = []
    notes: list[str] = []
    for i, device in enumerate(devices):
        delta_mj = end_mj[i] - begin_mj[i]
        if delta_mj > 0:
            total_j += delta_mj / 1000.0
            continue
        if delta_mj < 0:
            notes.append(
                f"the energy counter of {device} went backwards (driver reloaded?): "
                "the window is unmeasured"
            )
            return None, EnergyMethod.UNMEASURED, notes
        p0, p1 = begin_power_mw[i], end_power_mw[i]
        if p0 is None or p1 is None:
            notes.append(
                f"the energy counter of {device} did not move in the {window_s:.3f} s window "
                f"(it updates about every {update_period_s:g} s) and the GPU reports no "
                "power to fall back on: the window is unmeasured, not 0 J"
            )
            return None, EnergyMethod.UNMEASURED, notes
        total_j += (p0 + p1) / 2.0 / 1000.0 * window_s
        fell_back.append(device)
    if fell_back:
        notes.append(
            f"the energy counter did not move in the {window_s:.3f} s window (it updates "
            f"about every {update_period_s:g} s), so energy is power x time from the power "
            f"readings at the window's ends on {', '.join(fell_back)}; batch requests into "
            "windows of a second or more for counter readings"
        )
        return total_j, EnergyMethod.POWER_INTEGRATION, notes
    if window_s < update_period_s:
        notes.append(
            f"window of {window_s:.3f} s is shorter than the counter's update period "
            f"(about {update_period_s:g} s): the counter difference may be off by up to "
            "one update"
        )
    return total_j, EnergyMethod.COUNTER, notes
