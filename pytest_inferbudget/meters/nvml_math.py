"""The arithmetic of NVML windows: counter differences, their error bound, the update
period. Pure functions of recorded readings, tested on recorded sequences."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from pytest_inferbudget.vocabulary import EnergyMethod

__all__ = [
    "ASSUMED_UPDATE_PERIOD_S",
    "counter_energy_j",
    "counter_error_j",
    "either_shared",
    "update_period_s",
]

ASSUMED_UPDATE_PERIOD_S = 0.1
"""The counter's update period taken when it cannot be measured (the slowest boards')."""


def update_period_s(times_ns: Sequence[int], values: Sequence[int]) -> float | None:
    """The counter's update period from a fast poll: the median gap between the moments
    its value changed (None with fewer than three changes, two gaps)."""
    changes = [times_ns[i] for i in range(1, len(values)) if values[i] != values[i - 1]]
    gaps = sorted(b - a for a, b in itertools.pairwise(changes))
    if len(gaps) < 2:
        return None
    middle = len(gaps) // 2
    median = gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2
    return median / 1e9


def counter_error_j(
    begin_power_mw: Sequence[int | None],
    end_power_mw: Sequence[int | None],
    window_s: float,
    update_period_s: float,
    fell_back: Sequence[bool],
) -> float | None:
    """Bound on a window's gross-energy error from the counter's resolution, joules.

    A counter read returns the energy up to its last update, up to one period stale, at
    each end; the difference then misses at most one period of energy. Per device that is
    ``period x P`` with P the highest power read at the window's ends (taking power as
    not rising above both end readings, which a window of one engine call holds within
    the GPU's power limit only approximately). A device whose counter stood still was
    estimated as power x time: its bound is that whole estimate. None where a power
    reading is missing.
    """
    total = 0.0
    for p0, p1, stalled in zip(begin_power_mw, end_power_mw, fell_back, strict=True):
        if p0 is None or p1 is None:
            return None
        watts = max(p0, p1) / 1000.0
        total += watts * (window_s if stalled else update_period_s)
    return total


def either_shared(first: bool | None, second: bool | None) -> bool | None:
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
