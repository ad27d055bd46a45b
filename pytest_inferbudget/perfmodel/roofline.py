"""The roofline lower bound of a request's latency on an accelerator.

**Roofline** (Williams, Waterman, Patterson 2009): a phase cannot finish faster than
``max(flops / peak_flops, bytes / bandwidth)``. :func:`roofline_ms` takes that maximum
*per phase* and sums the phases: prefill is compute-bound (thousands of FLOPs per weight
byte), decode memory-bound at small batch (about 2 FLOPs per weight, i.e. 1 FLOP/byte at
16 bits, against a ridge point of hundreds of FLOPs/byte on a GPU). Taking the maximum of
the request's totals instead would let one phase's slack hide the other's cost and give a
looser bound. Decode steps are all on the same side of the ridge point for a model and a
batch size, so the phase's maximum equals the sum of its steps' maxima.

The figures are a floor, not a forecast: real engines reach some fraction of peak
(often 30-70% of FLOP/s in prefill, 50-90% of bandwidth in decode), so compare a
measured latency with this bound as an efficiency ratio.

It joins a request's cost (:mod:`~pytest_inferbudget.perfmodel.flops`) with a device's
peaks (:mod:`~pytest_inferbudget.perfmodel.accelerators`). Only the standard library is
imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, final

from pytest_inferbudget.errors import FlopsError
from pytest_inferbudget.perfmodel.accelerators import Accelerator, CpuSpec
from pytest_inferbudget.perfmodel.flops import PhaseCost, RequestCost

__all__ = ["PhaseBound", "eflops", "hardware_intensity", "roofline", "roofline_ms"]

_PRECISION_OF_DTYPE: Final[Mapping[str, str]] = {
    "float32": "fp32",
    "fp32": "fp32",
    "tf32": "tf32",
    "float16": "fp16",
    "fp16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "fp8": "fp8",
    "int8": "int8",
}


@final
@dataclass(frozen=True, slots=True)
class PhaseBound:
    """One phase on the roofline: its compute and memory times and which one binds."""

    phase: str
    flops: float
    bytes_moved: float
    compute_ms: float
    memory_ms: float

    @property
    def bound_ms(self) -> float:
        return max(self.compute_ms, self.memory_ms)

    @property
    def limited_by(self) -> str:
        """``compute`` or ``memory``: the larger of the two times."""
        return "compute" if self.compute_ms >= self.memory_ms else "memory"

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved; above the device's ridge point means compute-bound."""
        return self.flops / self.bytes_moved if self.bytes_moved else math.inf


def roofline(
    cost: RequestCost,
    accelerator: Accelerator | CpuSpec,
    *,
    precision: str | None = None,
) -> tuple[PhaseBound, PhaseBound]:
    """Prefill and decode placed on the roofline of ``accelerator``.

    ``precision`` picks the peak (``bf16``, ``fp16``, ``fp32``, ``tf32``); by default the
    one of the model's dtype (``float32`` -> ``fp32``, the non-tensor peak: pass
    ``precision="tf32"`` where fp32 matmuls run on tensor cores).
    """
    peak = accelerator.flops_for(precision or _precision(cost.dtype))
    bandwidth = accelerator.bandwidth_bytes_s
    return (
        _bound("prefill", cost.prefill, peak, bandwidth),
        _bound("decode", cost.decode, peak, bandwidth),
    )


def roofline_ms(
    request_flops: float | Sequence[float],
    request_bytes: float | Sequence[float],
    accelerator: Accelerator | CpuSpec,
    *,
    precision: str = "bf16",
) -> float:
    """The roofline lower bound on a request's latency, in ms.

    ``request_flops`` and ``request_bytes`` are one number each (one phase) or one per
    phase in the same order (``cost.phase_flops``, ``cost.phase_bytes``); each phase
    takes at least ``max(flops / peak, bytes / bandwidth)`` and the phases run one after
    the other, so the bound is the sum of the per-phase maxima.
    """
    flops = [float(request_flops)] if isinstance(request_flops, int | float) else request_flops
    moved = [float(request_bytes)] if isinstance(request_bytes, int | float) else request_bytes
    if len(flops) != len(moved):
        raise FlopsError(
            f"{len(flops)} phases of FLOPs but {len(moved)} of bytes; give one of each per phase"
        )
    if any(v < 0 or not math.isfinite(v) for v in (*flops, *moved)):
        raise FlopsError("FLOPs and bytes must be finite numbers >= 0")
    peak = accelerator.flops_for(precision)
    return sum(
        _bound("phase", PhaseCost(f, b), peak, accelerator.bandwidth_bytes_s).bound_ms
        for f, b in zip(flops, moved, strict=True)
    )


def _bound(phase: str, cost: PhaseCost, peak: float, bandwidth: float) -> PhaseBound:
    return PhaseBound(
        phase=phase,
        flops=cost.flops,
        bytes_moved=cost.bytes_moved,
        compute_ms=cost.flops / peak * 1e3,
        memory_ms=cost.bytes_moved / bandwidth * 1e3,
    )


def _precision(dtype: str) -> str:
    try:
        return _PRECISION_OF_DTYPE[dtype]
    except KeyError:
        raise FlopsError(
            f"no peak-precision for dtype {dtype!r}; pass precision= one of bf16, fp16, fp32"
        ) from None


def hardware_intensity(accelerator: Accelerator | CpuSpec, precision: str) -> float:
    """The device's ridge point: peak FLOP/s over memory bandwidth (FLOPs per byte)."""
    return accelerator.flops_for(precision) / accelerator.bandwidth_bytes_s


def eflops(
    cost: RequestCost,
    accelerator: Accelerator | CpuSpec,
    *,
    precision: str | None = None,
) -> float:
    """Kinetics' memory-aware cost: ``flops + bytes_moved * (peak / bandwidth)``.

    A byte moved costs what the device could have computed in the time it takes to
    move it, so a decode step that reads the whole KV cache is priced as the compute it
    displaces; counting FLOPs alone undervalues long generations (Sadhukhan et al. 2025,
    "Kinetics: Rethinking Test-Time Scaling Laws"). ``precision`` picks the peak as in
    :func:`roofline`.
    """
    intensity = hardware_intensity(accelerator, precision or _precision(cost.dtype))
    return cost.flops + cost.bytes_moved * intensity
