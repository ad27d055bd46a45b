"""Choosing the energy meter by name: the one module that knows every implementation.

Apart from :mod:`~pytest_inferbudget.meters.base` so that the protocol's module imports no
meter and no meter imports this one: the imports point select -> (null, nvml, rapl) -> base.
"""

from __future__ import annotations

from typing import Final

from pytest_inferbudget.errors import MeterChoiceError, MeterUnavailableError
from pytest_inferbudget.meters.base import Meter
from pytest_inferbudget.meters.null import NullMeter

__all__ = ["METER_CHOICES", "select_meter"]

METER_CHOICES: Final = ("auto", "nvml", "rapl", "off")


def select_meter(choice: str, *, rapl_root: str | None = None) -> Meter:
    """The energy meter for ``choice`` (``auto``, ``nvml``, ``rapl`` or ``off``).

    ``auto`` takes NVML if it works, else RAPL, else a :class:`NullMeter` whose reason
    names why each failed. An explicit ``nvml`` or ``rapl`` that cannot measure raises
    :class:`MeterUnavailableError` with the reason and the fix. ``rapl_root`` overrides
    the powercap directory (default ``/sys/class/powercap``).
    """
    from pytest_inferbudget.meters.nvml import NvmlMeter
    from pytest_inferbudget.meters.rapl import RaplMeter

    if choice not in METER_CHOICES:
        raise MeterChoiceError(
            f"unknown energy meter {choice!r}: choose one of {', '.join(METER_CHOICES)}"
        )
    if choice == "off":
        return NullMeter("energy metering is turned off (meter 'off')")
    reasons: list[str] = []
    if choice in ("auto", "nvml"):
        nvml = NvmlMeter()
        ok, reason = nvml.available()
        if ok:
            return nvml
        nvml.close()
        if choice == "nvml":
            raise MeterUnavailableError(_explicit_failure("nvml", reason))
        reasons.append(f"NVML: {_sentence(reason)}")
    rapl = RaplMeter(rapl_root)
    ok, reason = rapl.available()
    if ok:
        return rapl
    rapl.close()
    if choice == "rapl":
        raise MeterUnavailableError(_explicit_failure("rapl", reason))
    reasons.append(f"RAPL: {_sentence(reason)}")
    return NullMeter("no energy meter works here. " + " ".join(reasons))


def _explicit_failure(choice: str, reason: str) -> str:
    return (
        f"energy meter {choice!r} was asked for but cannot measure here: {_sentence(reason)} "
        "Fix that, or choose 'auto' (tries NVML, then RAPL, then reports energy as "
        "unmeasured) or 'off'."
    )


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith(".") else text + "."
