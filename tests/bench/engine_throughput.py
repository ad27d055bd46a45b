"""Output tokens per second of the transformers, vLLM and HTTP engines on one workload.

The prompts are vLLM's random benchmark prompts (``RandomDataset``, seed 0, 64 tokens), as
in ``http_vs_vllm_bench.py``, each sent as a chat message with up to 32 output tokens:

- ``greedy``: one request at a time, temperature 0 (the latency-bound case);
- ``sampling_n8``: one request at a time with ``n=8``, temperature 0.8, top_p 0.95, a
  seed per prompt (the batch-bound case: self-consistency, best-of-n).

Engines run one after another, each alone on the machine: ``transformers`` (float32 on
CPU), ``vllm`` in process, then ``openai`` against a vLLM server this script starts on a
loopback port and stops. Prints JSON.

    python tests/bench/engine_throughput.py [--num-prompts 20] [--sampling-prompts 4]
        [--engines transformers,vllm,openai] [--vllm-dtype bfloat16] [--torch-threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.engines.transformers import TransformersEngine
from pytest_inferbudget.engines.vllm import VllmEngine
from pytest_inferbudget.models import resolve_model
from pytest_inferbudget.records import Request, Response
from pytest_inferbudget.servers import DEFAULT_ARGS, SERVED_MODEL_NAME, VllmServer

SERVED_NAME = SERVED_MODEL_NAME

MAX_NEW_TOKENS = 32


@contextlib.contextmanager
def vllm_server(model: Path, dtype: str, log_path: Path) -> Iterator[str]:
    """The project's own server runner (the ``vllm_server`` fixture's); yields the
    server's API root (``.../v1``)."""
    args = ["--dtype", dtype, *DEFAULT_ARGS[2:]]  # same as the fixture, but this dtype
    server = VllmServer(model, log_path, served_model_name=SERVED_NAME, extra_args=args)
    try:
        yield server.start()
    finally:
        server.stop()


def random_prompts(model: Path, count: int) -> list[str]:
    from vllm.benchmarks.datasets import RandomDataset
    from vllm.tokenizers import get_tokenizer

    samples = RandomDataset(random_seed=0).sample(
        tokenizer=get_tokenizer(str(model)),
        num_requests=count,
        input_len=64,
        output_len=MAX_NEW_TOKENS,
        range_ratio=0.0,
    )
    return [str(s.prompt) for s in samples]


def measure(engine: Engine, requests: Sequence[Request]) -> dict[str, Any]:
    """One request at a time; output tokens over the wall time of the whole run."""
    responses: list[Response] = []
    start = time.perf_counter()
    for request in requests:
        responses.extend(engine.generate([request]))
    wall_s = time.perf_counter() - start
    generations = [g for r in responses for g in r.generations]
    tokens = sum(g.completion_tokens for g in generations)
    ttfts = [r.ttft_ms for r in responses if r.ttft_ms is not None]
    tpots = [g.tpot_ms for g in generations if g.tpot_ms is not None]
    return {
        "requests": len(responses),
        "generations": len(generations),
        "output_tokens": tokens,
        "wall_s": round(wall_s, 2),
        "output_tokens_per_s": round(tokens / wall_s, 1),
        "mean_ttft_ms": round(statistics.fmean(ttfts), 1) if ttfts else None,
        "mean_tpot_ms": round(statistics.fmean(tpots), 1) if tpots else None,
    }


def run_engine(engine: Engine, greedy: list[Request], sampled: list[Request]) -> dict[str, Any]:
    try:
        info = engine.describe()
        return {
            "spec": engine.spec,
            "dtype": info.get("dtype", "server: see --vllm-dtype"),
            "greedy": measure(engine, greedy),
            "sampling_n8": measure(engine, sampled),
        }
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-prompts", type=int, default=20)
    parser.add_argument("--sampling-prompts", type=int, default=4)
    parser.add_argument("--engines", default="transformers,vllm,openai")
    parser.add_argument("--vllm-dtype", default="bfloat16")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the transformers engine (default: torch's choice); "
        "on a busy CPU, 1 avoids OpenMP threads waiting on each other",
    )
    args = parser.parse_args()
    engines = args.engines.split(",")

    def progress(line: str) -> None:
        print(line, file=sys.stderr)

    model = resolve_model("smollm2-135m-instruct", progress)
    prompts = random_prompts(model, max(args.num_prompts, args.sampling_prompts))
    greedy = [Request(p, max_new_tokens=MAX_NEW_TOKENS) for p in prompts[: args.num_prompts]]
    sampled = [
        Request(p, max_new_tokens=MAX_NEW_TOKENS, temperature=0.8, top_p=0.95, n=8, seed=i)
        for i, p in enumerate(prompts[: args.sampling_prompts])
    ]
    results: dict[str, Any] = {}
    if "transformers" in engines:
        import torch

        if args.torch_threads is not None:
            torch.set_num_threads(args.torch_threads)
        spec = EngineSpec.parse("transformers:smollm2-135m-instruct")
        results["transformers"] = run_engine(
            TransformersEngine.from_spec(spec, progress), greedy, sampled
        )
        results["transformers"]["torch_threads"] = torch.get_num_threads()
    if "vllm" in engines:
        spec = EngineSpec.parse(f"vllm:smollm2-135m-instruct?dtype={args.vllm_dtype}")
        results["vllm"] = run_engine(VllmEngine.from_spec(spec, progress), greedy, sampled)
    if "openai" in engines:
        log_path = Path(tempfile.mkdtemp(prefix="inferbudget-bench-")) / "server.log"
        with vllm_server(model, args.vllm_dtype, log_path) as base_url:
            spec = EngineSpec.parse(f"openai:{base_url}?model={SERVED_NAME}")
            engine = OpenAIEngine.from_spec(spec, progress)
            engine.generate([Request("Hello", max_new_tokens=4)])  # warm the server
            results["openai"] = run_engine(engine, greedy, sampled)
            results["openai"]["dtype"] = f"{args.vllm_dtype} (server)"
    print(
        json.dumps(
            {
                "workload": {
                    "prompts": "vLLM RandomDataset, seed 0, 64 tokens, chat",
                    "max_new_tokens": MAX_NEW_TOKENS,
                    "greedy_requests": len(greedy),
                    "sampling_requests": len(sampled),
                    "sampling": {"n": 8, "temperature": 0.8, "top_p": 0.95},
                    "concurrency": 1,
                },
                "cpu_count": os.cpu_count(),
                "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
                "engines": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
