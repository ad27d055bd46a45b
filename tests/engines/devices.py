"""What the engines resolve to on this machine, so that their tests hold on CPU and GPU.

``device=auto`` takes CUDA where torch sees a GPU, and the dtype follows (float32 on CPU,
bfloat16 on CUDA); tests compare against these instead of assuming the CPU.
"""

from __future__ import annotations


def on_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def auto_device_type() -> str:
    """``cuda`` or ``cpu``: the device type an engine spec without ``device=`` gets."""
    return "cuda" if on_cuda() else "cpu"


def auto_dtype() -> str:
    """The transformers engine's dtype under ``dtype=auto`` on this machine."""
    return "bfloat16" if on_cuda() else "float32"
