"""CUDA ordinals to NVML's GPUs, and GPUs for xdist workers: the pure mapping.

The GPUs are plain values (what NVML would list); no NVML is needed.
"""

from __future__ import annotations

import pytest

from pytest_inferbudget.meters import MeterUnavailableError
from pytest_inferbudget.meters.gpus import (
    NvmlGpu,
    assign_worker_gpus,
    cuda_order,
    engine_gpus,
    normalize_uuid,
    visible_gpus,
)

# NVML lists GPUs in its own order; here it is deliberately not the bus order, so a test
# that mixes the two up fails.
A = NvmlGpu(0, "GPU-aaaa0000-0000", "00000000:C1:00.0", "NVIDIA H100 80GB HBM3")
B = NvmlGpu(1, "GPU-bbbb0000-0000", "00000000:1B:00.0", "NVIDIA H100 80GB HBM3")
C = NvmlGpu(2, "GPU-cccc0000-0000", "00000000:41:00.0", "NVIDIA H100 80GB HBM3")
NODE = (A, B, C)
MIXED = (A, B._replace(name="NVIDIA L4"), C)


def test_pci_bus_order_sorts_by_bus_id() -> None:
    assert cuda_order(NODE, "PCI_BUS_ID") == [B, C, A]


def test_fastest_first_on_one_gpu_model_is_the_bus_order() -> None:
    # CUDA breaks ties in speed by PCI bus id
    assert cuda_order(NODE, None) == [B, C, A]
    assert cuda_order(NODE, "FASTEST_FIRST") == [B, C, A]


def test_fastest_first_on_mixed_models_is_refused_with_the_fix() -> None:
    with pytest.raises(MeterUnavailableError, match="CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        cuda_order(MIXED, None)
    assert cuda_order(MIXED, "PCI_BUS_ID")[0].name == "NVIDIA L4"


def test_unknown_device_order_is_refused() -> None:
    with pytest.raises(MeterUnavailableError, match="neither FASTEST_FIRST nor PCI_BUS_ID"):
        cuda_order(NODE, "SLOWEST_FIRST")


def test_visible_devices_index_cuda_order_not_nvml_order() -> None:
    assert visible_gpus(NODE, None, "PCI_BUS_ID") == [B, C, A]
    assert visible_gpus(NODE, "0", "PCI_BUS_ID") == [B]  # NVML's 0 would be A
    assert visible_gpus(NODE, "2,0", None) == [A, B]
    assert visible_gpus(NODE, "GPU-cccc", None) == [C]
    assert visible_gpus(NODE, "1,7,0", None) == [C]  # CUDA stops at the first bad entry
    assert visible_gpus(NODE, "0,0", None) == [B]
    assert visible_gpus(NODE, "", None) == []
    with pytest.raises(MeterUnavailableError, match="MIG instance"):
        visible_gpus(NODE, "MIG-1234", None)


def test_engine_ordinal_maps_through_the_environment() -> None:
    # cuda:1 of a process that sees "2,0" is the first GPU by bus, which NVML calls 1
    assert engine_gpus(NODE, [1], visible="2,0", device_order="PCI_BUS_ID") == [B]
    assert engine_gpus(NODE, [0, 1], visible=None, device_order=None) == [B, C]
    with pytest.raises(MeterUnavailableError, match=r"cuda:2 .* leaves 2 GPU"):
        engine_gpus(NODE, [2], visible="0,1", device_order=None)


def test_engine_uuids_win_over_ordinals_and_need_no_order() -> None:
    torch_style = "cccc0000-0000"  # torch prints the UUID without NVML's "GPU-"
    assert engine_gpus(MIXED, [0], [torch_style], visible="0", device_order=None) == [C]
    assert normalize_uuid("GPU-ABCD") == normalize_uuid("abcd") == "abcd"
    with pytest.raises(MeterUnavailableError, match="not among the GPUs NVML lists"):
        engine_gpus(NODE, [], ["ffff"])


def test_a_gpu_in_mig_mode_is_refused_by_its_mode() -> None:
    mig = (A, B._replace(mig_enabled=True), C)
    with pytest.raises(MeterUnavailableError, match="MIG mode") as raised:
        engine_gpus(mig, [0], visible=None, device_order=None)
    assert "whole board" in str(raised.value) and "-mig 0" in str(raised.value)
    assert engine_gpus(mig, [1], visible=None, device_order=None) == [C]  # others are fine


def test_workers_get_gpus_of_their_own_when_there_are_enough() -> None:
    uuids = [f"GPU-{i}" for i in range(4)]
    given = [assign_worker_gpus(uuids, w, 4, 1, share=False) for w in range(4)]
    assert [a.visible for a in given] == [(u,) for u in uuids]
    assert {a.sharing for a in given} == {1}
    pairs = [assign_worker_gpus(uuids, w, 2, 2, share=False).visible for w in range(2)]
    assert pairs == [("GPU-0", "GPU-1"), ("GPU-2", "GPU-3")]  # tensor parallel 2


def test_too_few_gpus_is_an_error_naming_the_fixes() -> None:
    with pytest.raises(MeterUnavailableError) as raised:
        assign_worker_gpus(["GPU-0", "GPU-1"], 0, 3, 1, share=False)
    message = str(raised.value)
    assert "3 xdist workers need 3 GPU(s)" in message
    assert "-n 2" in message and "INFERBUDGET_GPU_SHARING=1" in message


def test_sharing_mode_spreads_workers_round_robin_and_counts_them() -> None:
    given = [assign_worker_gpus(["GPU-0", "GPU-1"], w, 3, 1, share=True) for w in range(3)]
    assert [a.visible for a in given] == [("GPU-0",), ("GPU-1",), ("GPU-0",)]
    assert {a.sharing for a in given} == {2}
    with pytest.raises(MeterUnavailableError, match="needs 4 GPUs and 2 are visible"):
        assign_worker_gpus(["GPU-0", "GPU-1"], 0, 2, 4, share=True)
