"""Which NVML GPUs an engine uses, and which GPUs an xdist worker gets: pure mapping.

CUDA and NVML number GPUs differently. NVML's indices follow the PCI bus; CUDA's
ordinals follow ``CUDA_DEVICE_ORDER`` (``FASTEST_FIRST`` by default: fastest first, ties
by PCI bus id; ``PCI_BUS_ID``: the bus order) and then ``CUDA_VISIBLE_DEVICES``, whose
integer entries index that CUDA order and whose ``GPU-`` entries are UUID prefixes.
An engine says which CUDA ordinals it uses (``cuda:1``; vLLM's tensor-parallel ranks)
and, where it can, their UUIDs; :func:`engine_gpus` turns that into NVML's GPUs, by
UUID when known (exact), else through the environment's order, refusing where the order
cannot be known (mixed GPU models under ``FASTEST_FIRST``) rather than guessing.

No pynvml and no torch here: :mod:`~pytest_inferbudget.meters.nvml_device` reads the
GPUs, this module only decides, so tests drive it with plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from pytest_inferbudget.errors import MeterUnavailableError

__all__ = [
    "GpuAssignment",
    "NvmlGpu",
    "assign_worker_gpus",
    "cuda_order",
    "engine_gpus",
    "normalize_uuid",
    "visible_gpus",
]

PCI_BUS_ID: Final = "PCI_BUS_ID"
FASTEST_FIRST: Final = "FASTEST_FIRST"


class NvmlGpu(NamedTuple):
    """One GPU as NVML lists it."""

    nvml_index: int
    """NVML's index (PCI bus order)."""
    uuid: str
    """``GPU-xxxxxxxx-...``, as NVML and ``CUDA_VISIBLE_DEVICES`` write it."""
    pci_bus_id: str
    """``00000000:1B:00.0``."""
    name: str
    mig_enabled: bool = False


def normalize_uuid(uuid: str) -> str:
    """NVML writes ``GPU-6ad8...``, torch writes ``6ad8...``: compare without the prefix."""
    text = str(uuid).strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def cuda_order(gpus: Sequence[NvmlGpu], device_order: str | None) -> list[NvmlGpu]:
    """All GPUs in CUDA's enumeration order (before ``CUDA_VISIBLE_DEVICES``).

    ``PCI_BUS_ID`` sorts by bus id. ``FASTEST_FIRST`` (CUDA's default, also when unset)
    ranks by speed and breaks ties by bus id: on GPUs all of one model that is the bus
    order; on mixed models CUDA's ranking is not reproducible here, so it is refused.
    """
    by_bus = sorted(gpus, key=lambda g: g.pci_bus_id.lower())
    order = (device_order or FASTEST_FIRST).strip().upper()
    if order == PCI_BUS_ID:
        return by_bus
    if order != FASTEST_FIRST:
        raise MeterUnavailableError(
            f"CUDA_DEVICE_ORDER={device_order!r} is neither FASTEST_FIRST nor PCI_BUS_ID"
        )
    models = sorted({g.name for g in gpus})
    if len(models) > 1:
        raise MeterUnavailableError(
            f"this machine mixes GPU models ({', '.join(models)}) and CUDA numbers them "
            "fastest first, an order NVML cannot reproduce, so the engine's GPU cannot be "
            "told apart: set CUDA_DEVICE_ORDER=PCI_BUS_ID (as nvidia-smi numbers them)"
        )
    return by_bus


def visible_gpus(
    gpus: Sequence[NvmlGpu], visible: str | None, device_order: str | None
) -> list[NvmlGpu]:
    """The GPUs CUDA ordinals 0, 1, ... name, after ``CUDA_VISIBLE_DEVICES``.

    ``None`` means all. Like CUDA, the list stops at the first entry that names no GPU
    or repeats one. A ``MIG-`` entry is refused: NVML's energy counter covers the
    whole GPU, not one instance.
    """
    ordered = cuda_order(gpus, device_order)
    if visible is None:
        return ordered
    chosen: list[NvmlGpu] = []
    for token in (t.strip() for t in visible.split(",")):
        if token.startswith("MIG-"):
            raise MeterUnavailableError(
                f"CUDA_VISIBLE_DEVICES selects a MIG instance ({token}); NVML measures "
                "energy for the whole GPU only, so it cannot be given to one instance: "
                "use a full GPU, or choose the meter 'off'"
            )
        if token.startswith("GPU-"):
            wanted = normalize_uuid(token)
            matches = [g for g in ordered if normalize_uuid(g.uuid).startswith(wanted)]
            if len(matches) != 1:
                break
            gpu = matches[0]
        else:
            try:
                position = int(token)
            except ValueError:
                break
            if not 0 <= position < len(ordered):
                break
            gpu = ordered[position]
        if gpu in chosen:
            break
        chosen.append(gpu)
    return chosen


def engine_gpus(
    gpus: Sequence[NvmlGpu],
    ordinals: Sequence[int],
    uuids: Sequence[str] = (),
    *,
    visible: str | None = None,
    device_order: str | None = None,
) -> list[NvmlGpu]:
    """NVML's GPUs for the engine's CUDA ``ordinals`` (or its ``uuids``, which win).

    Refuses a GPU in MIG mode (its counter is the whole board's, shared by every
    instance) and an ordinal the environment does not leave visible.
    """
    if uuids:
        by_uuid = {normalize_uuid(g.uuid): g for g in gpus}
        chosen = []
        for uuid in uuids:
            gpu = by_uuid.get(normalize_uuid(uuid))
            if gpu is None:
                raise MeterUnavailableError(
                    f"the engine's GPU {uuid} is not among the GPUs NVML lists "
                    f"({', '.join(g.uuid for g in gpus) or 'none'})"
                )
            chosen.append(gpu)
    else:
        seen = visible_gpus(gpus, visible, device_order)
        chosen = []
        for ordinal in ordinals:
            if not 0 <= ordinal < len(seen):
                raise MeterUnavailableError(
                    f"the engine uses cuda:{ordinal} but CUDA_VISIBLE_DEVICES="
                    f"{visible!r} leaves {len(seen)} GPU(s) visible"
                )
            chosen.append(seen[ordinal])
    for gpu in chosen:
        if gpu.mig_enabled:
            raise MeterUnavailableError(
                f"GPU {gpu.nvml_index} ({gpu.name}, {gpu.uuid}) is in MIG mode: NVML's energy "
                "counter covers the whole board, every instance's work included, so it "
                "cannot be given to this engine; use a GPU without MIG "
                "(nvidia-smi -i N -mig 0), or --inferbudget-energy off"
            )
    return chosen


class GpuAssignment(NamedTuple):
    """The GPUs one xdist worker gets and how many workers share each of them."""

    visible: tuple[str, ...]
    """Entries for this worker's ``CUDA_VISIBLE_DEVICES`` (the parent's own entries)."""
    sharing: int
    """Workers per GPU: 1 when each worker has GPUs of its own."""


def assign_worker_gpus(
    available: Sequence[str], worker: int, workers: int, per_worker: int, *, share: bool
) -> GpuAssignment:
    """This worker's GPUs: ``per_worker`` of its own when there are enough; otherwise an
    error, or, with ``share``, GPUs taken round-robin and shared by several workers.

    ``available`` are the ``CUDA_VISIBLE_DEVICES`` entries the session sees (indices or
    UUIDs), ``worker`` is 0-based (``gw3`` -> 3).
    """
    if per_worker < 1:
        raise MeterUnavailableError(f"an engine needs at least one GPU, got {per_worker}")
    if not available:
        raise MeterUnavailableError("no GPU is visible to give the xdist workers")
    needed = workers * per_worker
    if needed <= len(available):
        start = worker * per_worker
        return GpuAssignment(tuple(available[start : start + per_worker]), 1)
    if not share:
        raise MeterUnavailableError(
            f"{workers} xdist workers need {needed} GPU(s) ({per_worker} each) but "
            f"{len(available)} are visible: run with -n {len(available) // per_worker or 1}, "
            "or set INFERBUDGET_GPU_SHARING=1 to let workers share GPUs (their timings "
            "are then marked contended and vLLM's memory is split between them)"
        )
    if per_worker > len(available):
        raise MeterUnavailableError(
            f"the engine needs {per_worker} GPUs and {len(available)} are visible"
        )
    groups = len(available) // per_worker
    group = worker % groups
    sharing = -(-workers // groups)
    return GpuAssignment(tuple(available[group * per_worker : (group + 1) * per_worker]), sharing)
