"""tox.ini's cuda environment: what reaches the tests, pinned versions, and a refusal to run
on the CPU by mistake (checked here, on a machine without CUDA, by running its guard)."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys
from pathlib import Path

TOX_INI = Path(__file__).resolve().parents[1] / "tox.ini"


def cuda_env() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(TOX_INI)
    return parser["testenv:cuda"]


def test_cuda_env_passes_the_gpu_selection_and_caches() -> None:
    passed = cuda_env()["passenv"].split()
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_*", "HF_*", "VLLM_*"):
        assert name in passed, name


def test_cuda_env_pins_its_versions() -> None:
    deps = cuda_env()["deps"].split()
    assert deps and all("==" in d for d in deps), deps


def test_cuda_env_fails_before_the_tests_without_cuda() -> None:
    guard = cuda_env()["commands_pre"].strip().splitlines()[0]
    argv = shlex.split(guard)
    assert argv[0] == "python"
    result = subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=120, check=False
    )
    gpus = int(result.stdout.rsplit("GPUs", 1)[1])  # the guard prints what torch sees
    if gpus:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1
        assert "torch sees no CUDA GPU" in result.stderr and "tox -e cpu" in result.stderr
