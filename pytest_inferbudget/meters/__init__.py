"""Energy and memory meters: NVML (NVIDIA GPUs), RAPL (CPU packages), none; peak memory.

Only the standard library is imported here; pynvml is imported when an NVML meter
opens and torch is only looked up in ``sys.modules``. See docs/energy.md for what each
meter measures and how to read its figures.
"""

from __future__ import annotations

from pytest_inferbudget.errors import (
    MeterChoiceError,
    MeterError,
    MeterNotSupportedError,
    MeterUnavailableError,
)
from pytest_inferbudget.meters.base import METHODS, EnergyMeasurement, Meter
from pytest_inferbudget.meters.memory import MemoryMeasurement, MemoryMeter, process_peak_rss_mb
from pytest_inferbudget.meters.null import NullMeter
from pytest_inferbudget.meters.nvml import NvmlDevice, NvmlMeter
from pytest_inferbudget.meters.rapl import DEFAULT_RAPL_ROOT, RaplMeter, RaplZone
from pytest_inferbudget.meters.select import METER_CHOICES, select_meter

__all__ = [
    "DEFAULT_RAPL_ROOT",
    "METER_CHOICES",
    "METHODS",
    "EnergyMeasurement",
    "MemoryMeasurement",
    "MemoryMeter",
    "Meter",
    "MeterChoiceError",
    "MeterError",
    "MeterNotSupportedError",
    "MeterUnavailableError",
    "NullMeter",
    "NvmlDevice",
    "NvmlMeter",
    "RaplMeter",
    "RaplZone",
    "process_peak_rss_mb",
    "select_meter",
]
