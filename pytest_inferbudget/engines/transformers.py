"""Hugging Face transformers engine: batched generation on CPU or CUDA, timed per row.

Per-request timing without threads: ``generate`` calls a streamer's ``put`` once with
the prompt and then once per decoding step with the new token of every row, after
the step's tensors are on the CPU (which synchronises CUDA). We timestamp each call;
a row's first token is step 1 and its end is the step at which it emits EOS.

On CUDA each call also reports torch's peak allocation on the engine's own device
(``peak_gpu_memory_mb``), and :meth:`TransformersEngine.describe` names the device's CUDA
ordinal and UUID, so the energy meter reads that GPU and no other.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from pytest_inferbudget.engines import DEFAULT_REASONING_DELIMITERS, EngineSpec, Progress
from pytest_inferbudget.engines.prompts import prompt_text
from pytest_inferbudget.engines.speculative import CandidateCounter, positive_int
from pytest_inferbudget.engines.top_logprobs import top_fields
from pytest_inferbudget.errors import EngineError, EngineSpecError, EngineUnavailableError
from pytest_inferbudget.models import resolve_model
from pytest_inferbudget.records import (
    EngineInfo,
    Generation,
    Request,
    Response,
    TextLogprobs,
    TopLogprobs,
    tpot_ms,
)

OPTIONS = ("device", "dtype", "batch_size", "prompt_lookup_num_tokens")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")
WORKERS_PER_GPU_ENV = "INFERBUDGET_WORKERS_PER_GPU"
"""Set by the plugin for an xdist worker that shares its GPU: how many workers share it."""
_MIB = 2**20


def _import_torch_transformers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the transformers engine needs torch and transformers ({exc}); install them with "
            f"pip install 'pytest-inferbudget[transformers]' (on a machine without a GPU, "
            f"install a CPU build of torch first)"
        ) from exc
    return torch, transformers


class _StepClock:
    """A streamer that only timestamps: ``times_ns[0]`` is the prompt, ``[k]`` token k
    (a step of assisted decoding puts its k tokens at once: k tokens at that time)."""

    def __init__(self) -> None:
        self.times_ns: list[int] = []

    def put(self, value: Any) -> None:
        now = time.perf_counter_ns()
        tokens = int(value.shape[-1]) if self.times_ns and value.dim() > 1 else 1
        self.times_ns.extend([now] * tokens)

    def end(self) -> None:
        pass


class _TopRow(NamedTuple):
    """One row's ``k`` likeliest tokens at every step, and its first step's entropy."""

    steps: TopLogprobs
    first_entropy: float


class TransformersEngine:
    """Runs a causal LM from a local folder; rows of one batch are padded on the left."""

    def __init__(
        self,
        model_path: Path,
        *,
        spec: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        prompt_lookup_num_tokens: int | None = None,
        reasoning: tuple[str, str] | None = DEFAULT_REASONING_DELIMITERS,
    ) -> None:
        torch, transformers = _import_torch_transformers()
        self.reasoning = reasoning
        """Delimiters of the reasoning in the text (the spec's ``reasoning`` option)."""
        self._torch = torch
        self._spec = spec
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda":  # name the ordinal: the meter and memory reads need it
            device = f"cuda:{torch.cuda.current_device()}"
        if dtype == "auto":
            dtype = "float32" if device == "cpu" else "bfloat16"
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise EngineSpecError(f"{spec}: dtype={dtype!r} is not a torch dtype")
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.prompt_lookup_num_tokens = prompt_lookup_num_tokens
        """Prompt lookup decoding's tokens per step (transformers' assisted decoding,
        one row per call); None: plain decoding."""
        self.model_path = model_path
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch_dtype
        ).to(device)
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_token_ids = frozenset([eos] if isinstance(eos, int) else eos)
        self._versions = self._library_versions()
        self.warm_up()

    def warm_up(self) -> None:
        """Run what tests run, once, so the first test does not pay for first kernels and
        lazy allocations: a greedy row, and a sampled batch of ``batch_size`` rows with
        log-probabilities (sampling and log-softmax have kernels of their own)."""
        self.generate(
            [
                Request("Hi", max_new_tokens=2),
                Request("Hi", max_new_tokens=2, n=self.batch_size, temperature=0.7, logprobs=True),
            ]
        )

    def _library_versions(self) -> dict[str, str]:
        """torch, transformers, CUDA and the NVIDIA driver: part of the run key."""
        torch = self._torch
        versions = {"torch": str(torch.__version__)}
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions["transformers"] = metadata.version("transformers")
        if self.device.startswith("cuda"):
            versions["cuda"] = str(torch.version.cuda)
            from pytest_inferbudget.meters.nvml_device import driver_version

            driver = driver_version()
            if driver:
                versions["driver"] = driver
        return versions

    @classmethod
    def from_spec(cls, spec: EngineSpec, progress: Progress) -> TransformersEngine:
        spec.check_options(OPTIONS)
        device = spec.choice("device", DEVICES, "auto")
        dtype = spec.choice("dtype", DTYPES, "auto")
        batch_size = spec.options.get("batch_size", "16")
        if not batch_size.isdigit() or int(batch_size) < 1:
            raise EngineSpecError(
                f"engine spec '{spec}': batch_size must be an integer >= 1, got {batch_size!r}"
            )
        lookup = spec.options.get("prompt_lookup_num_tokens")
        lookup_tokens = (
            None if lookup is None else positive_int(spec, "prompt_lookup_num_tokens", lookup)
        )
        if lookup_tokens is not None and "batch_size" in spec.options and int(batch_size) > 1:
            raise EngineSpecError(
                f"engine spec '{spec}': prompt_lookup_num_tokens decodes one row at a time "
                "(transformers' assisted decoding takes batch_size 1); drop batch_size"
            )
        torch, _ = _import_torch_transformers()  # fail on a missing extra before any download
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineSpecError(
                f"engine spec '{spec}': device={device} but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); install "
                "a CUDA build of torch, check CUDA_VISIBLE_DEVICES, or use device=cpu"
            )
        if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
            raise EngineSpecError(
                f"engine spec '{spec}': device={device} but {torch.cuda.device_count()} CUDA "
                "GPU(s) are visible (CUDA_VISIBLE_DEVICES renumbers them from 0)"
            )
        return cls(
            resolve_model(spec.target, progress),
            spec=str(spec),
            device=device,
            dtype=dtype,
            batch_size=1 if lookup_tokens is not None else int(batch_size),
            prompt_lookup_num_tokens=lookup_tokens,
            reasoning=spec.reasoning_delimiters(),
        )

    @property
    def spec(self) -> str:
        return self._spec

    def describe(self) -> EngineInfo:
        torch = self._torch
        info: EngineInfo = {
            "engine": "transformers",
            "model": str(self.model_path),
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        if self.prompt_lookup_num_tokens is not None:
            info["speculative"] = {
                "method": "prompt_lookup",
                "num_speculative_tokens": self.prompt_lookup_num_tokens,
            }
        info.update(self._versions)  # type: ignore[typeddict-item]  # known keys, str values
        if self.device.startswith("cuda"):
            device = torch.device(self.device)
            info["gpu"] = torch.cuda.get_device_name(device)
            info["cuda_devices"] = [device.index]
            uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
            if uuid is not None:
                info["gpu_uuids"] = [str(uuid)]
            sharing = os.environ.get(WORKERS_PER_GPU_ENV)
            if sharing:
                info["workers_per_gpu"] = int(sharing)
        else:
            info["threads"] = int(torch.get_num_threads())
        return info

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def _gpu_peak_mb(self, before: bool) -> float | None:
        """Reset (``before``) or read torch's peak allocation on the engine's own device,
        not the current one; None off CUDA."""
        if not self.device.startswith("cuda"):
            return None
        cuda = self._torch.cuda
        device = self._torch.device(self.device)
        if before:
            cuda.reset_peak_memory_stats(device)
            return None
        cuda.synchronize(device)
        return float(cuda.max_memory_allocated(device)) / _MIB

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        """All requests arrive now: each one's clock starts here, queueing included."""
        start_ns = time.perf_counter_ns()
        groups: dict[tuple[int, float, float, int | None, bool], list[tuple[int, int]]] = {}
        for index, r in enumerate(requests):  # one group per decoding setting, in arrival order
            # prefill is per row; chat and raw prompts differ in their special tokens
            key = (r.max_new_tokens, r.temperature, r.top_p, r.seed, r.chat)
            groups.setdefault(key, []).extend((index, sample) for sample in range(r.n))
        generations: dict[tuple[int, int], Generation] = {}
        self._gpu_peak_mb(before=True)
        for group in groups.values():
            for offset in range(0, len(group), self.batch_size):
                chunk = group[offset : offset + self.batch_size]
                chunk_requests = [requests[index] for index, _ in chunk]
                for row, generation in zip(
                    chunk, self._generate_rows(chunk_requests, start_ns), strict=True
                ):
                    generations[row] = generation
        peak_mb = self._gpu_peak_mb(before=False)
        return [
            Response(
                request=r,
                generations=tuple(generations[(index, s)] for s in range(r.n)),
                engine=self._spec,
                peak_gpu_memory_mb=peak_mb,
            )
            for index, r in enumerate(requests)
        ]

    def text_logprobs(self, text: str, *, window_tokens: int = 1024) -> TextLogprobs:
        """Prompt log-probs of ``text`` (no chat template), in nats: one forward pass per
        window, the log-softmax of each position's logits at the next token, taken in
        float64 (128 positions at a time) so that a sum over thousands of tokens keeps
        its digits."""
        from pytest_inferbudget.metrics.information import token_windows

        torch = self._torch
        ids = list(self.tokenizer(text)["input_ids"])
        logprobs: list[float] = []
        scored_bytes = 0
        for start, stop in token_windows(len(ids), window_tokens):
            window = torch.tensor([ids[start:stop]], device=self.device)
            with torch.no_grad():
                logits = self.model(input_ids=window, use_cache=False).logits[0, :-1]
            for rows, targets in zip(logits.split(128), window[0, 1:].split(128), strict=True):
                wide = rows.double()
                chosen = wide.gather(-1, targets[:, None])[:, 0] - torch.logsumexp(wide, dim=-1)
                logprobs += chosen.tolist()
            scored_bytes += len(self.tokenizer.decode(ids[start + 1 : stop]).encode("utf-8"))
        return TextLogprobs(tuple(logprobs), scored_bytes, len(ids), window_tokens)

    def _generate_rows(self, rows: list[Request], start_ns: int) -> list[Generation]:
        """One batched ``generate`` call; every row shares its decoding settings."""
        torch = self._torch
        first = rows[0]
        # The chat template already holds the special tokens; raw text gets the tokenizer's.
        encoded = self.tokenizer(
            [prompt_text(self.tokenizer, r, self._spec) for r in rows],
            return_tensors="pt",
            padding=True,
            add_special_tokens=not first.chat,
        ).to(self.device)
        settings: dict[str, Any] = {"max_new_tokens": first.max_new_tokens}
        if first.greedy:
            settings["do_sample"] = False
        else:
            # top_k=0 turns off transformers' default top-k of 50, as in vLLM and OpenAI.
            settings.update(
                do_sample=True, temperature=first.temperature, top_p=first.top_p, top_k=0
            )
            if first.seed is not None:
                torch.manual_seed(first.seed)
        want_logprobs = any(r.logprobs for r in rows)
        want_top = max(r.top_logprobs for r in rows)
        clock = _StepClock()
        counter = None
        if self.prompt_lookup_num_tokens is not None:
            settings["prompt_lookup_num_tokens"] = self.prompt_lookup_num_tokens
            counter = CandidateCounter(self.prompt_lookup_num_tokens)
        try:
            counting = counter.install(self.model) if counter else contextlib.nullcontext()
            with torch.inference_mode(), counting:
                output = self.model.generate(
                    **encoded,
                    **settings,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=sorted(self.eos_token_ids),
                    streamer=clock,
                    return_dict_in_generate=True,
                    output_logits=want_logprobs or want_top > 0,
                )
        except Exception as exc:  # an engine fault, reported apart from budget violations
            raise EngineError(f"{self._spec}: generate failed: {exc}") from exc
        prompt_width = encoded["input_ids"].shape[1]
        new_tokens = output.sequences[:, prompt_width:]
        token_logprobs = None
        top: list[_TopRow] | None = None
        if want_logprobs or want_top:
            # raw logits, before temperature and top-p: the model's own probabilities
            log_probs = torch.log_softmax(torch.stack(output.logits, dim=1).float(), dim=-1)
            token_logprobs = log_probs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1).tolist()
            if want_top:
                top = self._top_logprobs(log_probs, want_top)
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        step_ns = clock.times_ns[1:]  # [0] is the prompt
        from pytest_inferbudget.metrics.reasoning import split_tokens

        results = []
        for row, new_ids in enumerate(new_tokens.tolist()):
            length, finish_reason = self._completion_length(new_ids, first.max_new_tokens)
            mean_logprob = (
                sum(token_logprobs[row][:length]) / length
                if token_logprobs is not None and length
                else None
            )
            e2e_ms = (step_ns[length - 1] - start_ns) / 1e6 if length else None
            ttft_ms = (step_ns[0] - start_ns) / 1e6 if length else None
            parts = split_tokens(
                new_ids[:length], self._decode, self.reasoning, prefill=rows[row].prefill
            )
            answer_at = parts.first_answer_token
            results.append(
                Generation(
                    text=parts.answer,
                    reasoning_text=parts.reasoning,
                    reasoning_tokens=parts.reasoning_tokens,
                    ttfat_ms=None if answer_at is None else (step_ns[answer_at] - start_ns) / 1e6,
                    prompt_tokens=int(prompt_tokens[row]),
                    completion_tokens=length,
                    finish_reason=finish_reason,
                    e2e_ms=e2e_ms,
                    ttft_ms=ttft_ms,
                    tpot_ms=tpot_ms(e2e_ms, ttft_ms, length),
                    mean_logprob=mean_logprob,
                    speculation=None if counter is None else counter.speculation(),
                    **(
                        {}
                        if top is None
                        else top_fields(
                            top[row].steps[:length],
                            rows[row].top_logprobs,  # rows of a batch may ask for other k
                            full_entropy=top[row].first_entropy,
                        )
                    ),
                )
            )
        return results

    def _top_logprobs(self, log_probs: Any, k: int) -> list[_TopRow]:
        """Each row's ``k`` likeliest tokens per step, and the exact entropy of its first
        step's whole distribution (``log_probs``: rows x steps x vocabulary)."""
        from pytest_inferbudget.metrics.entropy import entropy

        values, ids = log_probs.topk(k, dim=-1)
        texts: dict[int, str] = {}
        rows = []
        for row_values, row_ids, first in zip(
            values.tolist(), ids.tolist(), log_probs[:, 0, :].tolist(), strict=True
        ):
            steps = tuple(
                tuple(
                    (texts.setdefault(i, str(self.tokenizer.decode([i]))), v)
                    for i, v in zip(step_ids, step_values, strict=True)
                )
                for step_ids, step_values in zip(row_ids, row_values, strict=True)
            )
            rows.append(_TopRow(steps, entropy(first)))
        return rows

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def _completion_length(self, new_ids: list[int], max_new_tokens: int) -> tuple[int, str]:
        """Tokens up to and including the first EOS (rows after it hold padding)."""
        for position, token in enumerate(new_ids):
            if token in self.eos_token_ids:
                return position + 1, "stop"
        return min(len(new_ids), max_new_tokens), "length"
