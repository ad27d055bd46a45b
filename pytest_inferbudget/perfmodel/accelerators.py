"""Accelerators: the peak FLOP/s and memory bandwidth a roofline is drawn against.

A table of common GPUs from their vendors' datasheets (:data:`ACCELERATORS`), a
:class:`CpuSpec` for a device described by the user, and :func:`parse_accelerator` for
the text of ``--inferbudget-accelerator``. Apart from the roofline because it is data
with sources to keep current, not arithmetic. Only the standard library is imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, final

from pytest_inferbudget.errors import FlopsError, InferBudgetError

__all__ = ["ACCELERATORS", "Accelerator", "CpuSpec", "parse_accelerator"]


@final
@dataclass(frozen=True, slots=True)
class Accelerator:
    """Peak dense throughput by precision (FLOP/s, no 2:4 sparsity) and memory bandwidth."""

    name: str
    peak_flops: Mapping[str, float]
    """FLOP/s by precision: ``bf16``, ``fp16``, ``fp32`` (``tf32`` where it differs)."""
    bandwidth_bytes_s: float
    memory_gb: float
    source: str

    def flops_for(self, precision: str) -> float:
        """Peak FLOP/s at ``precision``; an fp8/int8 model falls back to 16-bit peaks."""
        for name in (precision, "bf16", "fp16") if precision in ("fp8", "int8") else (precision,):
            if name in self.peak_flops:
                return self.peak_flops[name]
        raise FlopsError(
            f"{self.name} has no {precision} peak listed; known: "
            f"{', '.join(sorted(self.peak_flops))}"
        )


@final
@dataclass(frozen=True, slots=True)
class CpuSpec:
    """A CPU (or any device) described by the user: its peak FLOP/s and bandwidth.

    ``peak_flops`` is for the precision the model runs at; for a CPU roughly
    ``cores * GHz * FLOPs per cycle per core`` (e.g. 32 for AVX-512 fp32 with two FMA
    units), and the bandwidth about ``channels * MT/s * 8 bytes``.
    """

    peak_flops: float
    bandwidth_bytes_s: float
    name: str = "cpu"
    source: str = field(default="given by the user")

    def __post_init__(self) -> None:
        for label, value in (
            ("peak_flops", self.peak_flops),
            ("bandwidth_bytes_s", self.bandwidth_bytes_s),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise FlopsError(f"{label} must be a finite number > 0, got {value!r}")

    def flops_for(self, precision: str) -> float:
        return self.peak_flops


def _accelerator(
    name: str,
    bandwidth_tb_s: float,
    memory_gb: float,
    source: str,
    **peak_tflops: float,
) -> Accelerator:
    return Accelerator(
        name=name,
        peak_flops={k: v * 1e12 for k, v in peak_tflops.items()},
        bandwidth_bytes_s=bandwidth_tb_s * 1e12,
        memory_gb=memory_gb,
        source=source,
    )


# Dense peaks (vendor sheets print 2:4-sparse tensor figures at twice these). fp32 is the
# non-tensor (CUDA-core / vector) peak; tf32 the tensor-core peak for fp32 matmuls.
ACCELERATORS: Final[Mapping[str, Accelerator]] = {
    # NVIDIA H100 Tensor Core GPU datasheet: SXM5 80 GB HBM3, BF16/FP16 1,979 TFLOPS
    # sparse, TF32 989 sparse, FP32 67 TFLOPS, 3.35 TB/s.
    "h100-sxm": _accelerator(
        "NVIDIA H100 SXM 80GB",
        3.35,
        80,
        "NVIDIA H100 datasheet",
        bf16=989.4,
        fp16=989.4,
        tf32=494.7,
        fp32=66.9,
    ),
    # Same datasheet, H100 PCIe 80 GB HBM2e: BF16/FP16 1,513 sparse, TF32 756 sparse,
    # FP32 51 TFLOPS, 2.0 TB/s.
    "h100-pcie": _accelerator(
        "NVIDIA H100 PCIe 80GB",
        2.0,
        80,
        "NVIDIA H100 datasheet",
        bf16=756.5,
        fp16=756.5,
        tf32=378.0,
        fp32=51.2,
    ),
    # NVIDIA H200 Tensor Core GPU datasheet: SXM 141 GB HBM3e, the H100's compute
    # (BF16/FP16 1,979 sparse, FP32 67), 4.8 TB/s.
    "h200": _accelerator(
        "NVIDIA H200 SXM 141GB",
        4.8,
        141,
        "NVIDIA H200 datasheet",
        bf16=989.4,
        fp16=989.4,
        tf32=494.7,
        fp32=66.9,
    ),
    # NVIDIA A100 Tensor Core GPU datasheet: BF16/FP16 312 TFLOPS dense, TF32 156,
    # FP32 19.5; SXM 40 GB HBM2 1,555 GB/s, SXM 80 GB HBM2e 2,039 GB/s.
    "a100-40gb": _accelerator(
        "NVIDIA A100 SXM 40GB",
        1.555,
        40,
        "NVIDIA A100 datasheet",
        bf16=312,
        fp16=312,
        tf32=156,
        fp32=19.5,
    ),
    "a100-80gb": _accelerator(
        "NVIDIA A100 SXM 80GB",
        2.039,
        80,
        "NVIDIA A100 datasheet",
        bf16=312,
        fp16=312,
        tf32=156,
        fp32=19.5,
    ),
    # NVIDIA L4 datasheet: FP16/BF16 tensor 242 TFLOPS sparse, TF32 120 sparse, FP32
    # 30.3 TFLOPS, 24 GB GDDR6 at 300 GB/s.
    "l4": _accelerator(
        "NVIDIA L4 24GB",
        0.300,
        24,
        "NVIDIA L4 datasheet",
        bf16=121,
        fp16=121,
        tf32=60,
        fp32=30.3,
    ),
    # A10G (AWS G5): NVIDIA publishes no datasheet; AWS and third parties list 24 GB
    # GDDR6 at 600 GB/s, FP32 35 TFLOPS and about 70 TFLOPS dense BF16/FP16 tensor
    # (the A10's datasheet: 125). Treat these as approximate.
    "a10g": _accelerator(
        "NVIDIA A10G 24GB",
        0.600,
        24,
        "AWS G5 specifications (approximate)",
        bf16=70,
        fp16=70,
        tf32=35,
        fp32=35,
    ),
    # NVIDIA T4 datasheet: FP16 mixed-precision tensor 65 TFLOPS, FP32 8.1 TFLOPS,
    # 16 GB GDDR6 at 320 GB/s. Turing has no bf16.
    "t4": _accelerator(
        "NVIDIA T4 16GB",
        0.320,
        16,
        "NVIDIA T4 datasheet",
        fp16=65,
        fp32=8.1,
    ),
    # NVIDIA Ada Lovelace architecture whitepaper (GeForce RTX 4090): FP16/BF16 tensor
    # with FP32 accumulate 165.2 TFLOPS dense (330.3 with FP16 accumulate), FP32 82.6,
    # 24 GB GDDR6X at 1,008 GB/s.
    "rtx-4090": _accelerator(
        "NVIDIA GeForce RTX 4090 24GB",
        1.008,
        24,
        "NVIDIA Ada Lovelace whitepaper",
        bf16=165.2,
        fp16=165.2,
        tf32=82.6,
        fp32=82.6,
    ),
    # AMD Instinct MI300X datasheet: FP16/BF16 matrix 1,307.4 TFLOPS dense (2,614.9
    # sparse), FP32 163.4 TFLOPS, 192 GB HBM3 at 5.3 TB/s.
    "mi300x": _accelerator(
        "AMD Instinct MI300X 192GB",
        5.3,
        192,
        "AMD Instinct MI300X datasheet",
        bf16=1307.4,
        fp16=1307.4,
        tf32=653.7,
        fp32=163.4,
    ),
}
"""Common accelerators by key. Peaks are the vendors' dense figures, never reached in
practice; for a machine not listed, build an :class:`Accelerator` or a :class:`CpuSpec`."""


def parse_accelerator(text: str) -> Accelerator | CpuSpec:
    """A name from ``ACCELERATORS`` (``h100-sxm``), or ``cpu:PEAK_GFLOPS:BANDWIDTH_GBS``."""
    if text.startswith("cpu:"):
        try:
            _, gflops, gbs = text.split(":")
            return CpuSpec(float(gflops) * 1e9, float(gbs) * 1e9, name=text)
        except ValueError as exc:
            raise InferBudgetError(
                f"accelerator {text!r} is not cpu:PEAK_GFLOPS:BANDWIDTH_GBS, e.g. cpu:150:40"
            ) from exc
    if text not in ACCELERATORS:
        raise InferBudgetError(
            f"unknown accelerator {text!r}; known: {', '.join(ACCELERATORS)}, or "
            "cpu:PEAK_GFLOPS:BANDWIDTH_GBS"
        )
    return ACCELERATORS[text]
