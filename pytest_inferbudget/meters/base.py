"""What every energy meter shares: the protocol, the window bookkeeping, the measurement.

A meter measures *windows*: ``begin_window(key)`` starts one, ``end_window(key)`` ends
it and returns an :class:`EnergyMeasurement` (a record of
:mod:`pytest_inferbudget.records.energy`, re-exported here). Windows with different keys
may overlap. Durations come from ``time.perf_counter_ns()``; a quantity that was not
measured is ``None``, never ``0``.

This module knows no implementation: the meters (``null.py``, ``nvml.py``, ``rapl.py``)
import it, and :mod:`pytest_inferbudget.meters.select` chooses between them by name.
Only the standard library is imported here; torch is merely looked up in
``sys.modules``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable

from pytest_inferbudget.errors import MeterError
from pytest_inferbudget.records.energy import METHODS, EnergyMeasurement

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

__all__ = [
    "METHODS",
    "EnergyMeasurement",
    "Meter",
    "OpenWindows",
    "WindowReader",
    "initialized_torch_cuda",
    "now_ns",
    "synchronize_accelerator",
    "window_seconds",
]


@runtime_checkable
class Meter(Protocol):
    """An energy meter: one implementation per module (null.py, nvml.py, rapl.py)."""

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


@runtime_checkable
class WindowReader(Protocol):
    """A meter whose readings move in steps too coarse for one engine call (NVML's
    counter): the recorder keeps one window open across consecutive calls, reads it after
    each, and closes it once its error bound is small enough (docs/energy.md)."""

    @property
    def resolution_s(self) -> float | None:
        """How often the readings move (the counter's update period); None when windows
        need no joining (power sampling)."""
        ...

    def read_window(self, key: str) -> EnergyMeasurement:
        """The window ``key`` from its start to now, as ``end_window`` would return it,
        left open."""
        ...

    def discard_window(self, key: str) -> None:
        """Forget the open window ``key`` without reading it (its last read stands)."""
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

    def peek(self, key: str) -> _T:
        """The start state of the open window ``key``, left open."""
        if key not in self._open:
            self.close(key)  # raises, naming the open windows
        return self._open[key]

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


def synchronize_accelerator(devices: Sequence[int] = ()) -> None:
    """Wait for queued CUDA work on the engine's ``devices`` (CUDA ordinals; the current
    device when none are named), so a reading covers it."""
    cuda = initialized_torch_cuda()
    if cuda is None:
        return
    for device in devices or (None,):
        cuda.synchronize(device)
