"""RAPL energy meter: CPU package energy from Linux's powercap sysfs tree.

The tree (default ``/sys/class/powercap``) has one top-level zone per CPU package,
``intel-rapl:<N>`` whose ``name`` is ``package-<N>`` (AMD's RAPL uses the same
layout), each with ``energy_uj`` (a microjoule counter) and ``max_energy_range_uj``
(where that counter wraps back to 0). The meter sums the package zones only:

* subzones (``intel-rapl:0:0`` core, ``intel-rapl:0:1`` uncore, ...) are parts of
  their package's energy, and adding them would count it twice (DRAM, where it is a
  subzone, is left out of the total for the same reason: see docs/energy.md);
* a top-level ``psys`` zone covers the whole platform, packages included, and
  ``intel-rapl-mmio:*`` zones repeat the package counters through another interface,
  so both are skipped.

A window's energy is the sum of each package counter's difference, plus
``max_energy_range_uj`` when the counter wrapped during the window (one wrap is
detected; a window long enough for two wraps -- many minutes at full load -- is not).

``energy_uj`` is readable by root only on current kernels (since the PLATYPUS power
side channel, CVE-2020-8694): the meter says how to grant read access.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

from pytest_inferbudget.errors import MeterError, MeterUnavailableError
from pytest_inferbudget.meters.base import (
    EnergyMeasurement,
    OpenWindows,
    now_ns,
    synchronize_accelerator,
    window_seconds,
)
from pytest_inferbudget.vocabulary import EnergyMethod

__all__ = ["DEFAULT_RAPL_ROOT", "RaplMeter", "RaplZone", "find_package_zones"]

DEFAULT_RAPL_ROOT: Final = "/sys/class/powercap"

_PACKAGE_ZONE = re.compile(r"intel-rapl:(\d+)")
"""A top-level zone of the ``intel-rapl`` control type (subzones have a second ``:N``)."""


@final
@dataclass(frozen=True, slots=True)
class RaplZone:
    """One package zone: its directory, its ``name`` and where its counter wraps."""

    path: Path
    name: str
    max_energy_range_uj: int

    @property
    def label(self) -> str:
        return f"rapl:{self.name}"

    def energy_uj(self) -> int:
        return _read_int(self.path / "energy_uj")


def _permission_message(path: Path) -> str:
    zones = f"{path.parent.parent}/intel-rapl:*/energy_uj"
    return (
        f"cannot read {path}: permission denied. RAPL counters are readable by root only "
        "on current kernels (a power side channel, CVE-2020-8694). Grant read access "
        f"until the next boot with `sudo chmod o+r {zones}`, make it permanent with a "
        'udev rule such as SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", '
        'RUN+="/bin/chgrp power /sys%p/energy_uj", RUN+="/bin/chmod g+r /sys%p/energy_uj" '
        "for a group 'power' you belong to, or run the tests as root"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except PermissionError:
        raise MeterUnavailableError(_permission_message(path)) from None
    except OSError as exc:
        raise MeterUnavailableError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_int(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise MeterError(f"{path} should hold an integer, holds {text!r}") from None


def find_package_zones(root: str | os.PathLike[str]) -> list[RaplZone]:
    """The package zones under ``root``, in package order; raises when there are none."""
    base = Path(root)
    if not base.is_dir():
        raise MeterUnavailableError(
            f"no RAPL here: {base} does not exist (not Linux on x86, a virtual machine, or "
            "the powercap driver is not loaded: `sudo modprobe intel_rapl_common`)"
        )
    zones: list[tuple[int, RaplZone]] = []
    for entry in base.iterdir():
        match = _PACKAGE_ZONE.fullmatch(entry.name)
        if match is None or not entry.is_dir():
            continue
        name = _read_text(entry / "name")
        if not name.startswith("package"):
            continue  # psys (whole platform) would count the packages twice
        zone = RaplZone(entry, name, _read_int(entry / "max_energy_range_uj"))
        if zone.max_energy_range_uj <= 0:
            raise MeterError(f"{entry / 'max_energy_range_uj'} must be > 0")
        zones.append((int(match.group(1)), zone))
    if not zones:
        raise MeterUnavailableError(
            f"no RAPL package zone under {base} (looked for intel-rapl:<N> directories "
            "whose name is package-<N>)"
        )
    return [zone for _, zone in sorted(zones, key=lambda pair: pair[0])]


@dataclass(frozen=True, slots=True)
class _Start:
    t_ns: int
    energy_uj: tuple[int, ...]


def _delta_uj(begin: int, end: int, max_range: int) -> int:
    """A counter difference, allowing for one wrap at ``max_range``."""
    return end - begin if end >= begin else end + max_range - begin


@final
class RaplMeter:
    """CPU package energy from RAPL; see the module docstring for what is summed.

    ``root`` is the powercap directory (default ``/sys/class/powercap``; the plugin
    passes the ini value ``inferbudget_rapl_root``). ``idle_sample_s`` is how long the
    meter reads the counters at open to learn idle power (0: no idle or net figures).
    """

    name = "rapl"

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, idle_sample_s: float = 0.5
    ) -> None:
        if isinstance(idle_sample_s, bool) or not isinstance(idle_sample_s, int | float):
            raise MeterError(f"idle_sample_s must be a number of seconds, got {idle_sample_s!r}")
        if idle_sample_s < 0:
            raise MeterError(f"idle_sample_s must be >= 0, got {idle_sample_s!r}")
        self.root = Path(DEFAULT_RAPL_ROOT if root is None else root)
        self._idle_sample_s = float(idle_sample_s)
        self._zones: tuple[RaplZone, ...] = ()
        self._idle_power_w: float | None = None
        self._probe: tuple[bool, str] | None = None
        self._windows: OpenWindows[_Start] = OpenWindows("rapl")

    @property
    def zones(self) -> tuple[RaplZone, ...]:
        return self._zones

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(zone.label for zone in self._zones)

    @property
    def idle_power_w(self) -> float | None:
        """Idle power of all packages together, watts, as measured at open."""
        return self._idle_power_w

    def available(self) -> tuple[bool, str]:
        if self._probe is None:
            try:
                self._open()
            except MeterError as exc:
                self._probe = (False, str(exc))
            else:
                idle = (
                    "not measured" if self._idle_power_w is None else f"{self._idle_power_w:.1f} W"
                )
                self._probe = (True, f"RAPL on {', '.join(self.devices)}; idle power {idle}")
        return self._probe

    def _open(self) -> None:
        zones = tuple(find_package_zones(self.root))
        begin = [zone.energy_uj() for zone in zones]  # also proves read access
        self._zones = zones
        if self._idle_sample_s > 0:
            start_ns = now_ns()
            time.sleep(self._idle_sample_s)
            end = [zone.energy_uj() for zone in zones]
            idle_s = window_seconds(start_ns, now_ns())
            idle_uj = sum(
                _delta_uj(b, e, z.max_energy_range_uj)
                for b, e, z in zip(begin, end, zones, strict=True)
            )
            self._idle_power_w = idle_uj / 1e6 / idle_s

    def begin_window(self, key: str) -> None:
        ok, reason = self.available()
        if not ok:
            raise MeterUnavailableError(f"the RAPL meter cannot measure: {reason}")
        self._windows.check_absent(key)
        synchronize_accelerator()
        t_ns = now_ns()
        self._windows.open(key, _Start(t_ns, tuple(z.energy_uj() for z in self._zones)))

    def end_window(self, key: str) -> EnergyMeasurement:
        start = self._windows.close(key)
        synchronize_accelerator()
        end = tuple(z.energy_uj() for z in self._zones)
        window_s = window_seconds(start.t_ns, now_ns())
        notes: list[str] = []
        total_uj = 0
        for zone, begin_uj, end_uj in zip(self._zones, start.energy_uj, end, strict=True):
            if end_uj < begin_uj:
                notes.append(
                    f"the counter of {zone.label} wrapped at {zone.max_energy_range_uj} uJ "
                    "during the window (counted once)"
                )
            total_uj += _delta_uj(begin_uj, end_uj, zone.max_energy_range_uj)
        if total_uj == 0:
            return EnergyMeasurement.unmeasured(
                window_s,
                f"the RAPL counters did not move in the {window_s:.6f} s window (shorter than "
                "their update interval of about 1 ms, or frozen): unmeasured, not 0 J",
                devices=self.devices,
            )
        gross_j = total_uj / 1e6
        idle_j: float | None = None
        net_j: float | None = None
        if self._idle_power_w is not None:
            idle_j = self._idle_power_w * window_s
            net_j = gross_j - idle_j
        notes.append("whole CPU packages: includes every process on the machine")
        return EnergyMeasurement(
            gross_energy_j=gross_j,
            idle_energy_j=idle_j,
            net_energy_j=net_j,
            window_s=window_s,
            method=EnergyMethod.RAPL,
            devices=self.devices,
            shared=None,
            note="; ".join(notes),
        )

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"RaplMeter(root={str(self.root)!r}, devices={self.devices!r})"
