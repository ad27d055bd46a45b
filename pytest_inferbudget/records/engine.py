"""What an engine says of itself (``Engine.describe()``): a typed bag of builtin values.

A ``TypedDict`` rather than a dataclass because it is JSON as it stands: it goes into the
report's ``engine`` object, and the hardware key is computed from it. Every key is
optional; an engine fills in what applies to it, and a third-party engine may add keys
of its own (readers use ``.get``).
"""

from __future__ import annotations

from typing import Any, TypedDict


class EngineInfo(TypedDict, total=False):
    """Model, device, dtype and library versions of the engine that ran, for reports."""

    spec: str
    """The engine spec the run used (``transformers:smollm2-135m-instruct``)."""
    engine: str
    """The engine's registered name: ``transformers``, ``vllm``, ``openai``, ``replay``."""
    model: str
    device: str
    """``cpu``, ``cuda:N``, ``replay``; absent for a remote server."""
    dtype: str
    gpu: str
    """The GPU's name, on CUDA devices: part of the hardware key."""
    parameters: int
    batch_size: int
    timing: str
    """How the engine timed requests (``per engine step, ...``)."""
    # vLLM in process
    vllm: str
    max_model_len: int
    tensor_parallel_size: int
    enforce_eager: bool
    kv_cache_gb: float
    max_num_seqs: int
    max_num_batched_tokens: int
    speculative: dict[str, Any]
    """Speculative decoding the engine was configured with (method, tokens per step)."""
    # an OpenAI-compatible server
    base_url: str
    endpoint: str
    max_concurrency: int
    timeout_s: float
    n: str
    itl: str
    httpx: str
    server: str | dict[str, Any]
    """What ``GET /models`` said of the model, or why it could not be asked."""
    capabilities: dict[str, Any]
    """What the server was found to support on first use (usage in streams, ``n``...)."""
    tokens: str
    """Who counts tokens: the server's usage, or the tokenizer that estimates them."""
    # a replayed cassette
    cassette: str
    recorded_spec: str | None
    # the GPUs an in-process engine runs on, and what the run key needs of them
    cuda_devices: list[int]
    """CUDA ordinals as this process numbers them (after ``CUDA_VISIBLE_DEVICES``)."""
    gpu_uuids: list[str]
    """Their UUIDs where the engine can tell: how the energy meter finds them in NVML."""
    workers_per_gpu: int
    """xdist workers sharing each of the engine's GPUs (1: a GPU of its own)."""
    threads: int
    """CPU threads a CPU engine computes with (contention on the cores)."""
    torch: str
    transformers: str
    cuda: str
    driver: str
    server_gpu: str
    """The GPU a remote server runs on, as the ``server_gpu`` spec option names it."""
