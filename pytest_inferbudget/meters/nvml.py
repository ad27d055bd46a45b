"""NVML energy meter for NVIDIA GPUs: the engine's GPUs, windows the counter resolves.

Energy over a window is the difference of NVML's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver loaded, Volta and
newer), as vLLM's and Zeus's meters read it. Where a GPU has no such counter, a
background thread samples the power draw (:mod:`.nvml_sampler`) and integrates it.

**Which GPUs.** :meth:`NvmlMeter.use_engine` narrows the meter to the GPUs the engine
runs on (its CUDA ordinals or UUIDs, mapped to NVML's GPUs by :mod:`.gpus`); until then it
meters every GPU ``CUDA_VISIBLE_DEVICES`` leaves visible. A GPU in MIG mode is refused.

**Resolution.** The counter moves only every so often (20-100 ms, depending on the
board). When the meter opens it measures that update period on the device (or takes
``counter_update_period_s``), and every window carries ``error_j``, a bound on what the
counter's steps can hide: one update period at the highest power read at the window's
ends. A window that saw the counter stand still is never read as 0 J: it falls back to
power x time, labelled ``power_integration``, with the whole figure as its bound. The
meter is a :class:`~.base.WindowReader` (``resolution_s``, ``read_window``): the recorder
joins consecutive engine calls into one window until that bound is small enough
(:mod:`~pytest_inferbudget.meters.windows`).

**Idle power** must be read before the model loads (after, the board idles warmer and
the engine's buffers hold it up): the plugin reads it before it builds the engine
(:func:`idle_power_by_uuid`) and hands it to :meth:`NvmlMeter.use_engine`. Power is read
from NVML's instant field where the board has one (the default reading is a one-second
average on A100, H100, H200, L4). Without an idle figure, net energy is unmeasured.

**Sharing.** NVML measures the whole board: another process with a context on the GPU
during the window makes ``shared`` True. When NVML's process list cannot be trusted
(it lists none of this process tree although the engine uses the GPU: another PID
namespace, or no permission), ``shared`` is None (unknown), never a guess.

Every pynvml call lives in :mod:`~pytest_inferbudget.meters.nvml_device`; tests put a
recorded stand-in behind its :class:`NvmlDevice` protocol.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
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
from pytest_inferbudget.meters.gpus import engine_gpus, normalize_uuid, visible_gpus
from pytest_inferbudget.meters.nvml_device import (
    NvmlDevice,
    PynvmlDevice,
    gpu_of,
    import_pynvml,
    translate_nvml_error,
)
from pytest_inferbudget.meters.nvml_math import (
    ASSUMED_UPDATE_PERIOD_S,
    counter_energy_j,
    counter_error_j,
    either_shared,
    update_period_s,
)
from pytest_inferbudget.meters.nvml_sampler import (
    PowerSampler,
    idle_power_by_uuid,
    power_now,
    sample_power,
    trapezoid_j,
)
from pytest_inferbudget.meters.procfs import descendant_pids
from pytest_inferbudget.vocabulary import EnergyMethod

__all__ = [
    "NvmlDevice",
    "NvmlMeter",
    "counter_energy_j",
    "counter_error_j",
    "idle_power_by_uuid",
    "translate_nvml_error",
    "trapezoid_j",
    "update_period_s",
]


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
    ``counter_update_period_s`` is how often the energy counter moves (None: measured
    on the device when the meter opens); ``power_sample_interval_s`` the power-sampling
    period where there is no counter; ``idle_power_w`` the idle power of each device, or
    ``idle_sample_s`` of sampling when the meter opens (0, the default: not at all, since
    a meter opens after the model loaded; :meth:`use_engine` takes figures read before).
    """

    name = "nvml"

    def __init__(
        self,
        *,
        devices: Sequence[NvmlDevice] | None = None,
        counter_update_period_s: float | None = None,
        power_sample_interval_s: float = 0.01,
        idle_sample_s: float = 0.0,
        idle_power_w: Sequence[float] | None = None,
        period_probe_s: float = 0.5,
    ) -> None:
        self._given = tuple(devices) if devices is not None else None
        self._period_s = (
            None
            if counter_update_period_s is None
            else _positive("counter_update_period_s", counter_update_period_s)
        )
        self._period_probe_s = _positive("period_probe_s", period_probe_s, zero_ok=True)
        self._power_sample_interval_s = _positive(
            "power_sample_interval_s", power_sample_interval_s
        )
        self._idle_sample_s = _positive("idle_sample_s", idle_sample_s, zero_ok=True)
        self._idle_power_w = None if idle_power_w is None else tuple(map(float, idle_power_w))
        self._idle_note = (
            ""
            if idle_power_w is not None
            else (
                "idle power unknown (not read before the model loaded), so net energy is unmeasured"
            )
        )
        self._period_note = ""
        self._all: tuple[NvmlDevice, ...] = ()
        self._devices: tuple[NvmlDevice, ...] = ()
        self._cuda_devices: tuple[int, ...] = ()
        self._engine_in_tree = False
        self._nvml: Any = None
        self._use_counter = True
        self._sampler: PowerSampler | None = None
        self._probe: tuple[bool, str] | None = None
        self._windows: OpenWindows[_Start] = OpenWindows("nvml")
        self._closed = False

    # -- state -----------------------------------------------------------------

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(d.name() for d in self._devices)

    @property
    def idle_power_w(self) -> tuple[float, ...] | None:
        """Idle power of each metered device in watts, as given or measured."""
        return self._idle_power_w

    @property
    def counter_update_period_s(self) -> float | None:
        """The counter's update period, as measured on the device (or given)."""
        return self._period_s

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
        if self._use_counter:
            via = f"energy counter (updates every {self._period_s or 0:.3g} s)"
        else:
            via = "power sampling"
        return f"NVML {via} on {', '.join(self.devices)}; {idle}"

    def _open(self) -> None:
        if self._given is None:
            self._nvml = import_pynvml()
            self._all = tuple(PynvmlDevice.open_all(self._nvml))
            inventory = [gpu_of(i, d) for i, d in enumerate(self._all)]
            chosen = visible_gpus(
                inventory,
                os.environ.get("CUDA_VISIBLE_DEVICES"),
                os.environ.get("CUDA_DEVICE_ORDER"),
            )
            devices: Sequence[NvmlDevice] = [self._all[g.nvml_index] for g in chosen]
        else:
            self._all = self._given
            devices = self._given
        if not devices:
            raise MeterUnavailableError("NVML sees no GPU, or CUDA_VISIBLE_DEVICES hides them all")
        self._select(tuple(devices))

    def _select(self, devices: tuple[NvmlDevice, ...]) -> None:
        """Meter ``devices``: counter or power sampling, the counter's period, idle power."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        self._devices = devices
        self._use_counter = True
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
            self._sampler = PowerSampler(self._devices, self._power_sample_interval_s)
        elif self._period_s is None:
            self._period_s = self._measure_update_period(self._devices[0])
        if self._idle_power_w is not None:
            if len(self._idle_power_w) != len(self._devices):
                raise MeterError(
                    f"idle_power_w has {len(self._idle_power_w)} values for "
                    f"{len(self._devices)} devices"
                )
        elif self._idle_sample_s > 0:
            self._idle_power_w, self._idle_note = sample_power(
                self._devices, self._idle_sample_s, self._power_sample_interval_s
            )

    def _measure_update_period(self, device: NvmlDevice) -> float:
        """Poll the counter about every millisecond until it changed a few times."""
        times: list[int] = []
        values: list[int] = []
        deadline = now_ns() + int(self._period_probe_s * 1e9)
        while True:
            times.append(now_ns())
            values.append(device.total_energy_mj())
            changes = sum(values[i] != values[i - 1] for i in range(1, len(values)))
            if changes >= 7 or times[-1] >= deadline:
                break
            time.sleep(0.001)
        period = update_period_s(times, values)
        if period is None:
            self._period_note = (
                f"the counter's update period could not be measured in "
                f"{self._period_probe_s:g} s; about {ASSUMED_UPDATE_PERIOD_S:g} s assumed"
            )
            return ASSUMED_UPDATE_PERIOD_S
        return period

    def use_engine(
        self,
        cuda_devices: Sequence[int] = (),
        uuids: Sequence[str] = (),
        *,
        idle_by_uuid: Mapping[str, float] | None = None,
        idle_note: str = "",
    ) -> None:
        """Meter only the engine's GPUs: its CUDA ordinals (as this process's environment
        numbers them) or their UUIDs, which win. ``idle_by_uuid`` is idle power read
        before the model loaded (:func:`idle_power_by_uuid`). Raises
        :class:`MeterUnavailableError` for a MIG GPU or a GPU NVML does not list."""
        ok, reason = self.available()
        if not ok:
            raise MeterUnavailableError(f"the NVML meter cannot measure: {reason}")
        if not cuda_devices and not uuids:
            raise MeterUnavailableError(
                "the engine runs on no CUDA device, so NVML has nothing of it to meter"
            )
        inventory = [gpu_of(i, d) for i, d in enumerate(self._all)]
        chosen = engine_gpus(
            inventory,
            cuda_devices,
            uuids,
            visible=None if self._given is not None else os.environ.get("CUDA_VISIBLE_DEVICES"),
            device_order=os.environ.get("CUDA_DEVICE_ORDER"),
        )
        self._cuda_devices = tuple(cuda_devices)
        self._engine_in_tree = True
        if idle_by_uuid is not None:
            figures = [idle_by_uuid.get(normalize_uuid(g.uuid)) for g in chosen]
            if all(f is not None for f in figures):
                self._idle_power_w = tuple(float(f) for f in figures if f is not None)
                self._idle_note = idle_note
            else:
                self._idle_power_w = None
                self._idle_note = "idle power unknown for the engine's GPU, so net is unmeasured"
        self._select(tuple(self._all[g.nvml_index] for g in chosen))
        self._probe = (True, self._describe())

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
        synchronize_accelerator(self._cuda_devices)
        shared, shared_note = self._foreign_processes()
        if self._sampler is not None:
            start = _Start(self._sampler.begin(), None, (), shared, shared_note)
        else:
            t_ns = now_ns()
            energy = tuple(d.total_energy_mj() for d in self._devices)
            start = _Start(t_ns, energy, self._powers(), shared, shared_note)
        self._windows.open(key, start)

    def end_window(self, key: str) -> EnergyMeasurement:
        return self._measure(self._windows.close(key))

    @property
    def resolution_s(self) -> float | None:
        """The counter's update period where windows are counter differences; None while
        power is sampled (no steps to beat) or the meter cannot measure. Opens the meter
        (as :meth:`available` does) to know which. See :class:`~.base.WindowReader`."""
        if not self.available()[0] or self._sampler is not None or not self._use_counter:
            return None
        return self._period_s or ASSUMED_UPDATE_PERIOD_S

    def read_window(self, key: str) -> EnergyMeasurement:
        """The open counter window ``key`` up to now, left open: the recorder reads a
        joined window after each engine call (:class:`~.base.WindowReader`)."""
        start = self._windows.peek(key)
        if start.energy_mj is None:
            raise MeterError("nvml meter: a power-sampled window is read only at end_window")
        return self._measure(start)

    def discard_window(self, key: str) -> None:
        """Forget the open window ``key``; its last :meth:`read_window` stands."""
        start = self._windows.close(key)
        if self._sampler is not None and start.energy_mj is None:
            self._sampler.end(start.t_ns)

    def _measure(self, start: _Start) -> EnergyMeasurement:
        """The window that began at ``start``, up to now."""
        synchronize_accelerator(self._cuda_devices)
        notes: list[str] = []
        gross_j: float | None
        error_j: float | None = None
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
            end_powers = self._powers()
            end_ns = now_ns()
            window_s = window_seconds(start.t_ns, end_ns)
            period = self._period_s or ASSUMED_UPDATE_PERIOD_S
            gross_j, method, counter_notes = counter_energy_j(
                self.devices, start.energy_mj, energy, start.power_mw, end_powers, window_s, period
            )
            notes.extend(counter_notes)
            if gross_j is not None:
                stalled = [e1 == e0 for e0, e1 in zip(start.energy_mj, energy, strict=True)]
                error_j = counter_error_j(start.power_mw, end_powers, window_s, period, stalled)
            if self._period_note:
                notes.append(self._period_note)
        shared_end, shared_end_note = self._foreign_processes()
        shared = either_shared(start.shared, shared_end)
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
                    "measured before the model loaded, so treat net figures as unreliable here"
                )
            if self._idle_note:
                notes.append(self._idle_note)
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
            error_j=error_j,
        )

    def _powers(self) -> tuple[int | None, ...]:
        """Power of each device in mW (instant where it can), None where not reported."""
        powers: list[int | None] = []
        for device in self._devices:
            try:
                powers.append(power_now(device)[0])
            except MeterNotSupportedError:
                powers.append(None)
        return tuple(powers)

    def _foreign_processes(self) -> tuple[bool | None, str]:
        """Whether a process outside this process tree holds a context on a metered GPU;
        None when NVML's list cannot be trusted to show them."""
        pids: set[int] = set()
        try:
            for device in self._devices:
                pids.update(device.process_pids())
        except MeterError as exc:
            return None, f"could not list the GPU's processes ({exc}), so sharing is unknown"
        me = os.getpid()
        ours = {me} | (descendant_pids(me) if pids - {me} else set())
        others = pids - ours
        engine_here = self._engine_in_tree or initialized_torch_cuda() is not None
        if engine_here and not pids & ours:
            return None, (
                "NVML lists no process of this test run on the GPU although the engine uses "
                "it: its PIDs come from another PID namespace (a container?) or are hidden, "
                "so sharing is unknown"
            )
        if not others:
            return False, ""
        if os.path.isdir("/proc/self") and any(not os.path.exists(f"/proc/{p}") for p in others):
            return None, (
                "NVML lists PIDs that do not exist here (another PID namespace), so whether "
                "other processes share the GPU is unknown"
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
