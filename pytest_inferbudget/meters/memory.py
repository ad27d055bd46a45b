"""Peak memory over a window: resident set size of this process, and CUDA memory.

**RSS.** Linux keeps a high-water mark of each process's resident set size
(``VmHWM`` in ``/proc/self/status``, which ``getrusage().ru_maxrss`` also reports).
Writing ``5`` to ``/proc/self/clear_refs`` (Linux 4.0 and later) resets it to the
current RSS, so a window that resets it at its start and reads it at its end gets the
window's own peak (``rss_scope="window"``). That reset is process-wide: it also lowers
what ``ru_maxrss`` reports to any other code, so it can be turned off
(``reset_rss_peak=False``). Where it is off or refused, the meter reads the
process-lifetime peak at both ends: if the window raised it, the new peak *is* the
window's peak (``window``); if not, the window's own peak is unknown but at most the
process peak, which is reported with ``rss_scope="process"``. Without ``/proc``
(macOS) the process peak comes from ``ru_maxrss``. Only this process counts: an engine
running in a child process (vLLM's engine core) is not included.

**Accelerator.** ``torch.cuda.max_memory_allocated(device)`` of the engine's device
(``device``, a CUDA ordinal; the current device when None), the
peak of tensors held by PyTorch's caching allocator (not its reserved cache, the
CUDA context, or other processes), reset with ``torch.cuda.reset_peak_memory_stats()``
at the window's start. Read only when torch is already imported and CUDA initialised;
torch is never imported here.

``mb`` in field names means mebibytes (2**20 bytes), the unit ``nvidia-smi`` and
PyTorch's memory summary print as "MB"/"MiB".
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from pytest_inferbudget.errors import MeterError
from pytest_inferbudget.meters.base import (
    OpenWindows,
    initialized_torch_cuda,
    now_ns,
    window_seconds,
)

__all__ = ["RSS_SCOPES", "MemoryMeasurement", "MemoryMeter", "process_peak_rss_mb"]

RSS_SCOPES: Final = ("window", "process", "unmeasured")
_MIB: Final = 2**20
_STATUS: Final = "/proc/self/status"
_CLEAR_REFS: Final = "/proc/self/clear_refs"
_VMHWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


@final
@dataclass(frozen=True, slots=True)
class MemoryMeasurement:
    """Peak memory over one window, in mebibytes; ``None`` = not measured.

    ``rss_scope`` says what ``peak_rss_mb`` covers: ``window`` (this window's peak),
    ``process`` (the process's lifetime peak, an upper bound for the window) or
    ``unmeasured``.
    """

    peak_rss_mb: float | None
    peak_accelerator_mb: float | None
    window_s: float = 0.0
    rss_scope: str = "unmeasured"
    note: str = ""

    def __post_init__(self) -> None:
        if self.rss_scope not in RSS_SCOPES:
            raise MeterError(f"rss_scope must be one of {RSS_SCOPES}, got {self.rss_scope!r}")
        if (self.rss_scope == "unmeasured") != (self.peak_rss_mb is None):
            raise MeterError(
                f"rss_scope {self.rss_scope!r} does not fit peak_rss_mb={self.peak_rss_mb!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_rss_mb": self.peak_rss_mb,
            "peak_accelerator_mb": self.peak_accelerator_mb,
            "window_s": self.window_s,
            "rss_scope": self.rss_scope,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryMeasurement:
        missing = sorted(set(cls.__slots__) - set(data))
        if missing:
            raise MeterError(f"memory measurement lacks the keys {missing}: {dict(data)!r}")
        return cls(
            peak_rss_mb=None if data["peak_rss_mb"] is None else float(data["peak_rss_mb"]),
            peak_accelerator_mb=(
                None if data["peak_accelerator_mb"] is None else float(data["peak_accelerator_mb"])
            ),
            window_s=float(data["window_s"]),
            rss_scope=str(data["rss_scope"]),
            note=str(data["note"]),
        )


def _vm_hwm_kib() -> int | None:
    """The process's RSS high-water mark from /proc, KiB; None without /proc."""
    try:
        with open(_STATUS, encoding="utf-8") as status:
            match = _VMHWM.search(status.read())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _ru_maxrss_kib() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS: bytes; Linux: KiB


def _peak_rss_kib() -> int | None:
    peak = _vm_hwm_kib()
    return peak if peak is not None else _ru_maxrss_kib()


def process_peak_rss_mb() -> float | None:
    """This process's peak RSS since it started (or since the last reset), MiB."""
    peak = _peak_rss_kib()
    return None if peak is None else peak / 1024


def _reset_rss_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


@dataclass(slots=True)
class _Window:
    t_ns: int
    reset: bool
    rss_at_begin_kib: int | None
    rss_peak_kib: int = 0
    """Peaks folded in before a later window's reset erased them."""
    accelerator_peak_bytes: int = 0
    accelerator_reset: bool = False


@final
class MemoryMeter:
    """Peak RSS and peak CUDA memory over windows; see the module docstring."""

    name = "memory"

    def __init__(self, *, reset_rss_peak: bool = True, device: int | None = None) -> None:
        self._reset_rss_peak = reset_rss_peak
        self._device = device
        """The engine's CUDA ordinal: its memory is read, not the current device's."""
        self._windows: OpenWindows[_Window] = OpenWindows("memory")

    def begin_window(self, key: str) -> None:
        self._windows.check_absent(key)
        reset = False
        if self._reset_rss_peak:
            self._fold_rss_peak()
            reset = _reset_rss_peak()
        window = _Window(now_ns(), reset, _peak_rss_kib())
        cuda = initialized_torch_cuda()
        if cuda is not None:
            self._fold_accelerator_peak(cuda)
            cuda.reset_peak_memory_stats(self._device)
            window.accelerator_reset = True
        self._windows.open(key, window)

    def end_window(self, key: str) -> MemoryMeasurement:
        window = self._windows.close(key)
        window_s = window_seconds(window.t_ns, now_ns())
        notes: list[str] = []
        peak_kib = _peak_rss_kib()
        peak_rss_mb: float | None = None
        scope = "unmeasured"
        if peak_kib is None:
            notes.append("peak RSS unmeasured: neither /proc nor getrusage is available")
        else:
            peak_kib = max(peak_kib, window.rss_peak_kib)
            peak_rss_mb = peak_kib / 1024
            begin = window.rss_at_begin_kib
            if window.reset or (begin is not None and peak_kib > begin):
                scope = "window"
            else:
                scope = "process"
                notes.append(
                    "the window did not raise the process's peak RSS, so its own peak is "
                    "unknown: peak_rss_mb is the process's peak, an upper bound"
                )
        accelerator_mb: float | None = None
        cuda = initialized_torch_cuda()
        if cuda is not None:
            cuda.synchronize(self._device)
            peak_bytes = max(
                int(cuda.max_memory_allocated(self._device)), window.accelerator_peak_bytes
            )
            accelerator_mb = peak_bytes / _MIB
            if not window.accelerator_reset:
                notes.append("CUDA was initialised during the window: its peak counts from then")
        else:
            notes.append("no accelerator peak: torch is not imported or CUDA is not initialised")
        return MemoryMeasurement(
            peak_rss_mb=peak_rss_mb,
            peak_accelerator_mb=accelerator_mb,
            window_s=window_s,
            rss_scope=scope,
            note="; ".join(notes),
        )

    def _fold_rss_peak(self) -> None:
        """Before a reset: keep each open window's peak so far, which the reset erases."""
        open_windows = self._windows.states()
        if not open_windows:
            return
        peak = _peak_rss_kib()
        if peak is None:
            return
        for window in open_windows:
            window.rss_peak_kib = max(window.rss_peak_kib, peak)

    def _fold_accelerator_peak(self, cuda: Any) -> None:
        open_windows = self._windows.states()
        if not open_windows:
            return
        peak = int(cuda.max_memory_allocated(self._device))
        for window in open_windows:
            window.accelerator_peak_bytes = max(window.accelerator_peak_bytes, peak)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"MemoryMeter(reset_rss_peak={self._reset_rss_peak!r}, device={self._device!r})"
