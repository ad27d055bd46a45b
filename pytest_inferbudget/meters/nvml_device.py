"""NVIDIA GPUs as NVML sees them: the only code in the package that calls pynvml.

Vendor access apart from the measurement window, as zeus separates ``device/gpu`` from
``monitor``: :class:`NvmlDevice` is the small protocol the meter
(:mod:`~pytest_inferbudget.meters.nvml`) sees and tests replace with a recorded stand-in;
``PynvmlDevice`` implements it with pynvml, and :func:`translate_nvml_error` maps NVML's
return codes to the package's exceptions, each with its fix. pynvml (the ``nvidia-ml-py``
distribution) is imported when a device opens, never at module import.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Final, Protocol, final

from pytest_inferbudget.errors import MeterError, MeterNotSupportedError, MeterUnavailableError
from pytest_inferbudget.meters.gpus import NvmlGpu

__all__ = [
    "NVML_FI_DEV_POWER_INSTANT",
    "NvmlDevice",
    "PynvmlDevice",
    "driver_version",
    "gpu_of",
    "import_pynvml",
    "translate_nvml_error",
]

# NVML return codes, from nvml.h (stable across driver versions).
NVML_ERROR_UNINITIALIZED: Final = 1
NVML_ERROR_NOT_SUPPORTED: Final = 3
NVML_ERROR_NO_PERMISSION: Final = 4
NVML_ERROR_DRIVER_NOT_LOADED: Final = 9
NVML_ERROR_LIBRARY_NOT_FOUND: Final = 12
NVML_ERROR_FUNCTION_NOT_FOUND: Final = 13
NVML_ERROR_GPU_IS_LOST: Final = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH: Final = 18
NVML_FI_DEV_POWER_INSTANT: Final = 186
"""nvmlFieldValues id of the instant power draw (mW); ``nvmlDeviceGetPowerUsage`` is a
one-second average on Ampere (GA100) and later boards such as the A100, H100, H200, L4."""
NVML_DEVICE_MIG_ENABLE: Final = 1

_UNAVAILABLE_HINTS: Final = {
    NVML_ERROR_LIBRARY_NOT_FOUND: (
        "libnvidia-ml.so.1 was not found: this machine has no NVIDIA driver "
        "(install the driver, or in a container run with the NVIDIA container toolkit)"
    ),
    NVML_ERROR_DRIVER_NOT_LOADED: (
        "the NVIDIA driver is installed but not loaded (check that `nvidia-smi` works)"
    ),
    NVML_ERROR_NO_PERMISSION: (
        "this user may not query the GPU (check the permissions of /dev/nvidia*)"
    ),
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: (
        "the NVML library and the loaded kernel driver differ in version "
        "(reboot, or reload the nvidia kernel module)"
    ),
    NVML_ERROR_GPU_IS_LOST: "the GPU fell off the bus and needs a reset",
}
_NOT_SUPPORTED_HINTS: Final = {
    NVML_ERROR_NOT_SUPPORTED: "this GPU or driver does not support it",
    NVML_ERROR_FUNCTION_NOT_FOUND: "the driver is too old for this call",
}
_OTHER_HINTS: Final = {
    NVML_ERROR_UNINITIALIZED: "NVML was used after nvmlShutdown (a closed meter?)",
}


class NvmlDevice(Protocol):
    """The NVML readings the meter needs from one GPU.

    :class:`PynvmlDevice` implements it over pynvml; tests implement it with a recorded
    counter sequence. Errors are raised as :class:`MeterError` subclasses, with
    :class:`MeterNotSupportedError` for what the hardware cannot do.
    """

    def name(self) -> str:
        """A label for reports, such as ``nvml:0 NVIDIA H100 80GB HBM3``."""
        ...

    def total_energy_mj(self) -> int:
        """The total-energy counter, millijoules since the driver loaded."""
        ...

    def power_mw(self) -> int:
        """The board's power draw, milliwatts."""
        ...

    def process_pids(self) -> tuple[int, ...]:
        """PIDs of the compute processes that hold a context on the GPU."""
        ...

    def instant_power_mw(self) -> int:
        """The board's power draw now, milliwatts (not the one-second average)."""
        ...

    def uuid(self) -> str:
        """``GPU-xxxxxxxx-...``: how CUDA ordinals are matched to NVML's GPUs."""
        ...

    def pci_bus_id(self) -> str:
        """``00000000:1B:00.0``: CUDA's ``PCI_BUS_ID`` order sorts by it."""
        ...

    def mig_enabled(self) -> bool:
        """Whether the GPU is in MIG mode (its counter then covers every instance)."""
        ...


def gpu_of(index: int, device: NvmlDevice) -> NvmlGpu:
    """The identity of ``device`` (NVML index ``index``) for :mod:`.gpus`; the model name
    is the label without its ``nvml:N`` prefix."""
    label = device.name()
    model = label.partition(" ")[2] if label.startswith("nvml:") else label
    return NvmlGpu(index, device.uuid(), device.pci_bus_id(), model or label, device.mig_enabled())


def translate_nvml_error(exc: BaseException, function: str) -> MeterError:
    """The package's exception for a pynvml ``NVMLError`` (or a missing binding)."""
    if isinstance(exc, AttributeError):
        return MeterNotSupportedError(
            f"{function} is missing from the installed pynvml: "
            "`pip install -U nvidia-ml-py` for the official, current bindings"
        )
    code = getattr(exc, "value", None)
    detail = f"{function} failed: {exc} (NVML error code {code})"
    if code in _UNAVAILABLE_HINTS:
        return MeterUnavailableError(f"{detail}: {_UNAVAILABLE_HINTS[code]}")
    if code in _NOT_SUPPORTED_HINTS:
        return MeterNotSupportedError(f"{detail}: {_NOT_SUPPORTED_HINTS[code]}")
    if code in _OTHER_HINTS:
        return MeterError(f"{detail}: {_OTHER_HINTS[code]}")
    return MeterError(detail)


def _call(nvml: Any, function: str, *args: Any) -> Any:
    """Call ``nvml.<function>(*args)``, translating NVML's errors into ours."""
    try:
        bound = getattr(nvml, function)
    except AttributeError as exc:
        raise translate_nvml_error(exc, function) from exc
    try:
        return bound(*args)
    except nvml.NVMLError as exc:
        raise translate_nvml_error(exc, function) from exc


def _text(value: Any) -> str:
    """pynvml returns bytes in old releases and str in new ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def import_pynvml() -> Any:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        raise MeterUnavailableError(
            "pynvml is not installed: `pip install nvidia-ml-py` (NVIDIA's official NVML "
            "bindings) on a machine with an NVIDIA GPU and driver"
        ) from None


@final
class PynvmlDevice:
    """One GPU seen through pynvml: the only code in the package that calls pynvml."""

    __slots__ = ("_handle", "_label", "_nvml")

    def __init__(self, nvml: Any, handle: Any, label: str) -> None:
        self._nvml = nvml
        self._handle = handle
        self._label = label

    @classmethod
    def open_all(cls, nvml: Any) -> list[PynvmlDevice]:
        """Initialise NVML and open every GPU it lists, in NVML's order."""
        _call(nvml, "nvmlInit")
        try:
            count = int(_call(nvml, "nvmlDeviceGetCount"))
            devices = []
            for i in range(count):
                handle = _call(nvml, "nvmlDeviceGetHandleByIndex", i)
                name = _text(_call(nvml, "nvmlDeviceGetName", handle))
                devices.append(cls(nvml, handle, f"nvml:{i} {name}"))
            return devices
        except BaseException:
            cls.shutdown(nvml)
            raise

    def driver_version(self) -> str:
        return _text(_call(self._nvml, "nvmlSystemGetDriverVersion"))

    @staticmethod
    def shutdown(nvml: Any) -> None:
        with contextlib.suppress(MeterError):
            _call(nvml, "nvmlShutdown")

    def name(self) -> str:
        return self._label

    def total_energy_mj(self) -> int:
        return int(_call(self._nvml, "nvmlDeviceGetTotalEnergyConsumption", self._handle))

    def power_mw(self) -> int:
        return int(_call(self._nvml, "nvmlDeviceGetPowerUsage", self._handle))

    def process_pids(self) -> tuple[int, ...]:
        processes = _call(self._nvml, "nvmlDeviceGetComputeRunningProcesses", self._handle)
        return tuple(int(p.pid) for p in processes)

    def instant_power_mw(self) -> int:
        values = _call(
            self._nvml, "nvmlDeviceGetFieldValues", self._handle, [NVML_FI_DEV_POWER_INSTANT]
        )
        value = values[0]
        code = int(getattr(value, "nvmlReturn", 0))
        if code != 0:
            raise translate_nvml_error(
                _StatusError(code), "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)"
            )
        return int(value.value.uiVal)

    def uuid(self) -> str:
        return _text(_call(self._nvml, "nvmlDeviceGetUUID", self._handle))

    def pci_bus_id(self) -> str:
        info = _call(self._nvml, "nvmlDeviceGetPciInfo", self._handle)
        return _text(getattr(info, "busId", "") or getattr(info, "busIdLegacy", ""))

    def mig_enabled(self) -> bool:
        try:
            current, _pending = _call(self._nvml, "nvmlDeviceGetMigMode", self._handle)
        except MeterNotSupportedError:
            return False  # a GPU without MIG support
        return int(current) == NVML_DEVICE_MIG_ENABLE


class _StatusError(Exception):
    """A per-field NVML status, shaped like pynvml's NVMLError for the translation."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML status {value}")
        self.value = value


def driver_version() -> str | None:
    """The NVIDIA driver's version through NVML (a run-key field); None without NVML."""
    try:
        nvml = import_pynvml()
        devices = PynvmlDevice.open_all(nvml)
    except MeterError:
        return None
    try:
        return devices[0].driver_version() if devices else None
    except MeterError:
        return None
    finally:
        PynvmlDevice.shutdown(nvml)
