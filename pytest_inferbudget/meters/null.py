"""The null meter: times a window and reports its energy as unmeasured, with the reason.

:func:`pytest_inferbudget.meters.select_meter` returns it for ``off``, and for ``auto``
where no meter works (the reason then names why each one failed).
"""

from __future__ import annotations

from typing import final

from pytest_inferbudget.meters.base import EnergyMeasurement, OpenWindows, now_ns, window_seconds

__all__ = ["NullMeter"]


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
