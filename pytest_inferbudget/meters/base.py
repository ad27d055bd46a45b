"""What every energy meter shares: the measurement record, the protocol, the null meter.

A meter measures *windows*: ``begin_window(key)`` starts one, ``end_window(key)`` ends
it and returns an :class:`EnergyMeasurement`. Windows with different keys may overlap.
Durations come from ``time.perf_counter_ns()``; a quantity that was not measured is
``None``, never ``0``.

Only the standard library is imported here. pynvml and torch are imported (or, for
torch, merely looked up in ``sys.modules``) inside the functions that need them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, final, runtime_checkable

from pytest_inferbudget.errors import (
    MeterChoiceError,
    MeterError,
    MeterNotSupportedError,
    MeterUnavailableError,
)

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "METER_CHOICES",
    "METHODS",
    "EnergyMeasurement",
    "Meter",
    "MeterChoiceError",
    "MeterError",
    "MeterNotSupportedError",
    "MeterUnavailableError",
    "NullMeter",
    "OpenWindows",
    "initialized_torch_cuda",
    "select_meter",
    "synchronize_accelerator",
]

METHODS: Final = ("counter", "power_integration", "rapl", "unmeasured")
"""How an energy figure was obtained.

``counter``: difference of NVML's total-energy counter. ``power_integration``: power
readings integrated over time (NVML, when the counter is missing or did not move).
``rapl``: difference of RAPL package counters. ``unmeasured``: no figure at all.
"""

METER_CHOICES: Final = ("auto", "nvml", "rapl", "off")


@final
@dataclass(frozen=True, slots=True)
class EnergyMeasurement:
    """Energy over one window. Every field name carries its unit; ``None`` = not measured.

    ``gross_energy_j`` is what the meter read (whole board for NVML, whole package for
    RAPL). ``idle_energy_j`` is the meter's idle power (measured once, at start) times
    the window, and ``net_energy_j = gross_energy_j - idle_energy_j``: the energy the
    window added over idling. ``shared`` is True when another process used the GPU
    during the window (NVML only; ``None`` where unknown). ``note`` says how to read
    the figure: why it is unmeasured, or which fallback was taken.
    """

    gross_energy_j: float | None
    idle_energy_j: float | None
    net_energy_j: float | None
    window_s: float
    method: str
    devices: tuple[str, ...] = ()
    shared: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise MeterError(f"method must be one of {METHODS}, got {self.method!r}")
        if isinstance(self.window_s, bool) or not isinstance(self.window_s, int | float):
            raise MeterError(f"window_s must be a number of seconds, got {self.window_s!r}")
        if self.window_s < 0:
            raise MeterError(f"window_s must be >= 0, got {self.window_s!r}")
        if self.method == "unmeasured" and self.gross_energy_j is not None:
            raise MeterError("an 'unmeasured' measurement cannot carry gross_energy_j")
        if not isinstance(self.devices, tuple):
            object.__setattr__(self, "devices", tuple(self.devices))

    @classmethod
    def unmeasured(
        cls, window_s: float, note: str, *, devices: tuple[str, ...] = ()
    ) -> EnergyMeasurement:
        """A window whose energy nobody measured; ``note`` says why."""
        return cls(
            gross_energy_j=None,
            idle_energy_j=None,
            net_energy_j=None,
            window_s=window_s,
            method="unmeasured",
            devices=devices,
            shared=None,
            note=note,
        )

    @property
    def measured(self) -> bool:
        """True when ``gross_energy_j`` holds a figure."""
        return self.gross_energy_j is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gross_energy_j": self.gross_energy_j,
            "idle_energy_j": self.idle_energy_j,
            "net_energy_j": self.net_energy_j,
            "window_s": self.window_s,
            "method": self.method,
            "devices": list(self.devices),
            "shared": self.shared,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnergyMeasurement:
        missing = sorted(set(cls.__slots__) - set(data))
        if missing:
            raise MeterError(f"energy measurement lacks the keys {missing}: {dict(data)!r}")
        return cls(
            gross_energy_j=_optional_float(data, "gross_energy_j"),
            idle_energy_j=_optional_float(data, "idle_energy_j"),
            net_energy_j=_optional_float(data, "net_energy_j"),
            window_s=float(data["window_s"]),
            method=str(data["method"]),
            devices=tuple(str(d) for d in data["devices"]),
            shared=None if data["shared"] is None else bool(data["shared"]),
            note=str(data["note"]),
        )


def _optional_float(data: Mapping[str, Any], key: str) -> float | None:
    value = data[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MeterError(f"{key} must be a number or null, got {value!r}")
    return float(value)


@runtime_checkable
class Meter(Protocol):
    """An energy meter: one implementation per module (nvml.py, rapl.py; NullMeter here)."""

    @property
    def name(self) -> str:
        """Short name: ``nvml``, ``rapl``, ``off``."""
        ...

    def available(self) -> tuple[bool, str]:
        """``(True, description)`` when it can measure, else ``(False, reason and fix)``."""
        ...

    def begin_window(self, key: str) -> None:
        """Start a window; a key already open raises :class:`MeterError`."""
        ...

    def end_window(self, key: str) -> EnergyMeasurement:
        """End the window ``key`` and return its energy; an unknown key raises."""
        ...

    def close(self) -> None:
        """Release the hardware (threads, NVML handles); idempotent."""
        ...


_T = TypeVar("_T")


class OpenWindows(Generic[_T]):
    """The start state of each open window, by key; misuse raises :class:`MeterError`."""

    __slots__ = ("_meter", "_open")

    def __init__(self, meter: str) -> None:
        self._meter = meter
        self._open: dict[str, _T] = {}

    def open(self, key: str, state: _T) -> None:
        self.check_absent(key)
        self._open[key] = state

    def check_absent(self, key: str) -> None:
        """Raise as :meth:`open` would, before any reading is taken."""
        if not isinstance(key, str):
            raise MeterError(f"{self._meter} meter: a window key must be a string, got {key!r}")
        if key in self._open:
            raise MeterError(
                f"{self._meter} meter: window {key!r} is already open; end it before "
                "beginning it again, or use another key"
            )

    def close(self, key: str) -> _T:
        try:
            return self._open.pop(key)
        except KeyError:
            raise MeterError(
                f"{self._meter} meter: no open window {key!r} (open: {sorted(self._open)})"
            ) from None

    def states(self) -> list[_T]:
        return list(self._open.values())

    def __len__(self) -> int:
        return len(self._open)


def window_seconds(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e9


now_ns = time.perf_counter_ns


def initialized_torch_cuda() -> ModuleType | None:
    """``torch.cuda`` when torch is already imported and CUDA initialised, else None.

    Never imports torch: a process that has not imported it has no CUDA work to wait for.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    cuda: ModuleType | None = getattr(torch, "cuda", None)
    if cuda is None:
        return None
    try:
        if not cuda.is_initialized():
            return None
    except (AttributeError, RuntimeError):
        return None
    return cuda


def synchronize_accelerator() -> None:
    """Wait for queued CUDA work on the current device, so a reading covers it."""
    cuda = initialized_torch_cuda()
    if cuda is not None:
        cuda.synchronize()


@final
class NullMeter:
    """The meter of last resort: times the window, reports its energy as unmeasured."""

    name = "off"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._windows: OpenWindows[int] = OpenWindows("null")

    def available(self) -> tuple[bool, str]:
        return False, self.reason

    def begin_window(self, key: str) -> None:
        self._windows.open(key, now_ns())

    def end_window(self, key: str) -> EnergyMeasurement:
        start_ns = self._windows.close(key)
        return EnergyMeasurement.unmeasured(window_seconds(start_ns, now_ns()), self.reason)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"NullMeter({self.reason!r})"


def select_meter(choice: str, *, rapl_root: str | None = None) -> Meter:
    """The energy meter for ``choice`` (``auto``, ``nvml``, ``rapl`` or ``off``).

    ``auto`` takes NVML if it works, else RAPL, else a :class:`NullMeter` whose reason
    names why each failed. An explicit ``nvml`` or ``rapl`` that cannot measure raises
    :class:`MeterUnavailableError` with the reason and the fix. ``rapl_root`` overrides
    the powercap directory (default ``/sys/class/powercap``).
    """
    from pytest_inferbudget.meters.nvml import NvmlMeter
    from pytest_inferbudget.meters.rapl import RaplMeter

    if choice not in METER_CHOICES:
        raise MeterChoiceError(
            f"unknown energy meter {choice!r}: choose one of {', '.join(METER_CHOICES)}"
        )
    if choice == "off":
        return NullMeter("energy metering is turned off (meter 'off')")
    reasons: list[str] = []
    if choice in ("auto", "nvml"):
        nvml = NvmlMeter()
        ok, reason = nvml.available()
        if ok:
            return nvml
        nvml.close()
        if choice == "nvml":
            raise MeterUnavailableError(_explicit_failure("nvml", reason))
        reasons.append(f"NVML: {_sentence(reason)}")
    rapl = RaplMeter(rapl_root)
    ok, reason = rapl.available()
    if ok:
        return rapl
    rapl.close()
    if choice == "rapl":
        raise MeterUnavailableError(_explicit_failure("rapl", reason))
    reasons.append(f"RAPL: {_sentence(reason)}")
    return NullMeter("no energy meter works here. " + " ".join(reasons))


def _explicit_failure(choice: str, reason: str) -> str:
    return (
        f"energy meter {choice!r} was asked for but cannot measure here: {_sentence(reason)} "
        "Fix that, or choose 'auto' (tries NVML, then RAPL, then reports energy as "
        "unmeasured) or 'off'."
    )


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith(".") else text + "."
