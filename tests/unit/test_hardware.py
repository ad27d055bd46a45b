"""The machine value: run key from what the engine resolved to, labels, contention."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_inferbudget.engines import EngineSpec, create_engine
from pytest_inferbudget.errors import EngineSpecError
from pytest_inferbudget.hardware import Machine, contention, key_difference

HOST = {"machine": "x86_64", "system": "Linux", "cpu_model": "Test CPU", "cpu_count": 2}
RESOLVED = {
    "engine": "transformers",
    "model": "/home/a/.cache/pytest-inferbudget/models/smollm2-135m-instruct",
    "device": "cpu",
    "dtype": "float32",
    "transformers": "4.57.0",
    "torch": "2.13.0+cpu",
}


def run(**engine: Any) -> dict[str, Any]:
    return {"hardware": HOST, "engine": {**RESOLVED, **engine}}


def key(**engine: Any) -> str:
    return Machine.from_run(run(**engine)).run_key


def test_the_run_key_follows_what_the_engine_resolved_to_not_the_spec_text() -> None:
    plain = key(spec="transformers:smollm2-135m-instruct")
    assert key(spec="transformers:smollm2-135m-instruct?device=cpu") == plain
    # the model cache's location differs between machines and users; its name does not
    assert key(model="/root/.cache/x/smollm2-135m-instruct") == plain
    assert key(device="cuda:0", gpu="NVIDIA H100") == key(device="cuda:1", gpu="NVIDIA H100")
    for changed in ({"dtype": "bfloat16"}, {"torch": "2.14.0"}, {"transformers": "5.0.0"}):
        assert key(**changed) != plain, changed
    gpu = {"device": "cuda:0", "gpu": "NVIDIA H100", "cuda": "12.8"}
    assert key(**gpu, driver="550.54") != key(**gpu, driver="570.86")
    assert key(**gpu) != key(**{**gpu, "cuda": "13.0"})


def test_an_engine_that_names_no_model_is_keyed_on_its_spec() -> None:
    bare = {"hardware": HOST, "engine": {"spec": "custom:a"}}
    other = {"hardware": HOST, "engine": {"spec": "custom:b"}}
    assert Machine.from_run(bare).run_key != Machine.from_run(other).run_key


def test_key_difference_names_the_fields() -> None:
    saved = run(spec="transformers:smollm2-135m-instruct", dtype="bfloat16")
    current = run(spec="transformers:smollm2-135m-instruct?device=cpu")
    assert key_difference(saved, current) == "dtype: 'bfloat16' (saved) vs 'float32' (this run)"
    assert "older recipe of the key" in key_difference(current, current)


def test_labels_name_the_device_type_and_gpu() -> None:
    cuda = Machine.from_run(run(device="cuda:1", gpu="NVIDIA H100 80GB HBM3"))
    assert cuda.label == "cuda: NVIDIA H100 80GB HBM3"
    assert Machine.from_run(run()).label == "cpu: Test CPU"


def test_a_remote_servers_gpu_comes_from_the_spec_option() -> None:
    spec = "openai:m?base_url=http://127.0.0.1:8000/v1&server_gpu=NVIDIA H100 80GB HBM3"
    server = {"hardware": HOST, "engine": {"engine": "openai", "model": "m", "spec": spec}}
    machine = Machine.from_run(server)
    assert machine.label == "cuda: NVIDIA H100 80GB HBM3"
    assert machine.identity["gpu"] == ["NVIDIA H100 80GB HBM3"]
    unnamed = {"hardware": HOST, "engine": {"engine": "openai", "model": "m", "spec": "openai:m"}}
    assert Machine.from_run(unnamed).run_key != machine.run_key


@pytest.mark.parametrize(
    ("engine", "workers", "cores", "contended", "why"),
    [
        ({"device": "cpu", "threads": 2}, 2, 2, True, "2 xdist workers x 2 engine thread(s)"),
        ({"device": "cpu", "threads": 1}, 2, 2, False, ""),
        ({"device": "cpu"}, 2, 16, True, "x 16 engine thread(s) on 16 CPU cores"),
        ({"device": "cpu", "threads": 2}, 1, 2, False, ""),
        ({"device": "cuda:0", "workers_per_gpu": 1}, 2, 16, False, ""),
        ({"device": "cuda:0", "workers_per_gpu": 1}, 4, 2, True, "4 xdist workers on 2 CPU"),
        ({"device": "cuda:0", "workers_per_gpu": 2}, 4, 16, True, "2 xdist workers share each"),
        ({"device": "cuda:0"}, 2, 16, True, "no GPU assigned per worker"),
        ({"base_url": "http://127.0.0.1:8000/v1"}, 2, 16, True, "one server"),
        ({"device": "replay"}, 4, 2, False, ""),
    ],
)
def test_contention_comes_from_what_the_workers_share(
    engine: dict[str, Any], workers: int, cores: int, contended: bool, why: str
) -> None:
    result = contention(engine, workers, cores)
    assert result.contended is contended
    assert why in result.reason and bool(result.reason) is contended


def test_bad_engine_option_values_are_named_with_the_accepted_ones() -> None:
    spec = EngineSpec.parse("transformers:smollm2-135m-instruct?device=gpu")
    with pytest.raises(EngineSpecError) as raised:
        create_engine(spec)  # refused before torch is imported or a model loaded
    message = str(raised.value)
    assert "device='gpu' is not accepted (did you mean 'cuda'?)" in message
    assert "auto, cpu, cuda, cuda:N, mps" in message
    assert len(message.splitlines()) == 1
    with pytest.raises(EngineSpecError, match=r"dtype='fp32'.*float32, float16, bfloat16"):
        create_engine(EngineSpec.parse("transformers:m?dtype=fp32"))
    assert EngineSpec.parse("t:m?device=cuda:3").choice("device", ("cpu", "cuda:N"), "cpu")


def test_unknown_engine_names_and_options_get_a_suggestion() -> None:
    with pytest.raises(EngineSpecError, match=r"unknown engine 'transfomers'.*'transformers'\?"):
        create_engine(EngineSpec.parse("transfomers:m"))
    with pytest.raises(EngineSpecError, match=r"devise \(did you mean 'device'\?\)"):
        create_engine(EngineSpec.parse("transformers:m?devise=cpu"))
