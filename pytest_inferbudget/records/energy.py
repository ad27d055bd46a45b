"""The energy of a window, as a meter measured it or as a request's share of it.

The meters (:mod:`pytest_inferbudget.meters`) build these records; a response carries
its share of its engine call's window (``Response.energy``). They live here, below the
meters, because records import nothing of the package but ``vocabulary`` and
``errors``: the imports point meters -> records, never back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from pytest_inferbudget.errors import MeterError
from pytest_inferbudget.vocabulary import EnergyMethod

__all__ = ["MAX_RELATIVE_ERROR", "METHODS", "EnergyMeasurement"]

METHODS: Final[tuple[str, ...]] = tuple(m.value for m in EnergyMethod)
"""The values of :class:`~pytest_inferbudget.vocabulary.EnergyMethod`, in order."""

_REQUIRED: Final = (
    "gross_energy_j",
    "idle_energy_j",
    "net_energy_j",
    "window_s",
    "method",
    "devices",
    "shared",
    "note",
)
"""The keys every serialized measurement has; ``share``, ``error_j``, ``window_id`` and
``window_calls`` are written only when set, so records saved before they existed read back
unchanged."""

MAX_RELATIVE_ERROR: Final = 0.10
"""Energy budgets take a figure only when its stated error bound is at most this share of
it: per-request joules are reported with that bound or not at all."""


@final
@dataclass(frozen=True, slots=True)
class EnergyMeasurement:
    """Energy over one window. Every field name carries its unit; ``None`` = not measured.

    ``gross_energy_j`` is what the meter read (whole board for NVML, whole package for
    RAPL). ``idle_energy_j`` is the meter's idle power (measured once, at start) times
    the window, and ``net_energy_j = gross_energy_j - idle_energy_j``: the energy the
    window added over idling. ``shared`` is True when another process used the GPU
    during the window (NVML only; ``None`` where unknown). ``note`` says how to read
    the figure: why it is unmeasured, or which fallback was taken.

    ``share`` is ``None`` for a whole window as the meter measured it. A response holds
    :meth:`portion` of its engine call's window: the fraction ``share`` of it (split by
    completion tokens), with the three energies scaled by it and the rest unchanged.
    """

    gross_energy_j: float | None
    idle_energy_j: float | None
    net_energy_j: float | None
    window_s: float
    method: EnergyMethod
    devices: tuple[str, ...] = ()
    shared: bool | None = None
    note: str = ""
    share: float | None = None
    error_j: float | None = None
    """Bound on the error of ``gross_energy_j`` from the meter's resolution (NVML's counter
    moves in steps); None where the meter states none. Scaled with the energies."""
    window_id: str | None = None
    """The metering window this figure comes from (a response's share names its window);
    None for a measurement made outside the recorder."""
    window_calls: int | None = None
    """How many engine calls that window held: 1 for a call metered alone, more where a
    counter too coarse for one call made the recorder join consecutive calls."""

    def __post_init__(self) -> None:
        try:
            method = EnergyMethod(self.method)
        except ValueError:
            raise MeterError(f"method must be one of {METHODS}, got {self.method!r}") from None
        object.__setattr__(self, "method", method)
        if isinstance(self.window_s, bool) or not isinstance(self.window_s, int | float):
            raise MeterError(f"window_s must be a number of seconds, got {self.window_s!r}")
        if self.window_s < 0:
            raise MeterError(f"window_s must be >= 0, got {self.window_s!r}")
        if method is EnergyMethod.UNMEASURED and self.gross_energy_j is not None:
            raise MeterError("an 'unmeasured' measurement cannot carry gross_energy_j")
        if not isinstance(self.devices, tuple):
            object.__setattr__(self, "devices", tuple(self.devices))
        if self.share is not None and (
            isinstance(self.share, bool) or not isinstance(self.share, int | float)
        ):
            raise MeterError(f"share must be a number or None, got {self.share!r}")
        if self.window_calls is not None and (
            isinstance(self.window_calls, bool)
            or not isinstance(self.window_calls, int)
            or self.window_calls < 1
        ):
            raise MeterError(f"window_calls must be an int >= 1 or None, got {self.window_calls!r}")

    @classmethod
    def unmeasured(
        cls, window_s: float, note: str, *, devices: tuple[str, ...] = ()
    ) -> EnergyMeasurement:
        """A window whose energy nobody measured; ``note`` says why."""
        return cls(
            gross_energy_j=None,
            idle_energy_j=None,
            net_energy_j=None,
            window_s=window_s,
            method=EnergyMethod.UNMEASURED,
            devices=devices,
            shared=None,
            note=note,
        )

    @property
    def measured(self) -> bool:
        """True when ``gross_energy_j`` holds a figure."""
        return self.gross_energy_j is not None

    def portion(self, share: float) -> EnergyMeasurement:
        """The fraction ``share`` of this window: energies scaled, ``share`` recorded.

        A portion of a portion records the product of both shares.
        """
        return dataclasses.replace(
            self,
            gross_energy_j=_scaled(self.gross_energy_j, share),
            idle_energy_j=_scaled(self.idle_energy_j, share),
            net_energy_j=_scaled(self.net_energy_j, share),
            share=share if self.share is None else self.share * share,
            error_j=_scaled(self.error_j, share),
        )

    @property
    def relative_error(self) -> float | None:
        """``error_j / gross_energy_j``; None without a bound, inf for a bound on 0 J."""
        if self.error_j is None or self.gross_energy_j is None:
            return None
        if self.gross_energy_j <= 0:
            return float("inf") if self.error_j > 0 else 0.0
        return self.error_j / self.gross_energy_j

    def to_dict(self) -> dict[str, Any]:
        return {
            "gross_energy_j": self.gross_energy_j,
            "idle_energy_j": self.idle_energy_j,
            "net_energy_j": self.net_energy_j,
            "window_s": self.window_s,
            "method": self.method.value,
            "devices": list(self.devices),
            "shared": self.shared,
            "note": self.note,
            **({} if self.share is None else {"share": self.share}),
            **({} if self.error_j is None else {"error_j": self.error_j}),
            **({} if self.window_id is None else {"window_id": self.window_id}),
            **({} if self.window_calls is None else {"window_calls": self.window_calls}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnergyMeasurement:
        """The inverse of :meth:`to_dict`; numbers keep their JSON type (int or float)."""
        missing = sorted(set(_REQUIRED) - set(data))
        if missing:
            raise MeterError(f"energy measurement lacks the keys {missing}: {dict(data)!r}")
        window_s = data["window_s"]
        return cls(
            gross_energy_j=_optional_number(data, "gross_energy_j"),
            idle_energy_j=_optional_number(data, "idle_energy_j"),
            net_energy_j=_optional_number(data, "net_energy_j"),
            window_s=window_s if _is_number(window_s) else float(window_s),
            method=data["method"],  # __post_init__ makes it an EnergyMethod, or names them
            devices=tuple(str(d) for d in data["devices"]),
            shared=None if data["shared"] is None else bool(data["shared"]),
            note=str(data["note"]),
            share=_optional_number(data, "share") if "share" in data else None,
            error_j=_optional_number(data, "error_j") if "error_j" in data else None,
            window_id=None if data.get("window_id") is None else str(data["window_id"]),
            window_calls=data.get("window_calls"),
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional_number(data: Mapping[str, Any], key: str) -> float | None:
    value = data[key]
    if value is None:
        return None
    if not _is_number(value):
        raise MeterError(f"{key} must be a number or null, got {value!r}")
    number: float = value
    return number


def _scaled(value: float | None, share: float) -> float | None:
    return None if value is None else value * share
