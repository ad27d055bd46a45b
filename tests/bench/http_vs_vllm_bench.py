"""Our HTTP engine's TTFT/TPOT/ITL against vLLM's own benchmark client, same server, same prompts.

Starts ``python -m vllm.entrypoints.openai.api_server`` on a free loopback port, then runs
rounds that alternate (ABBA) between ``vllm bench serve`` (``vllm.benchmarks.serve.main``:
chat endpoint, random 64-token prompts, 32 output tokens, concurrency 1, greedy) and the
``openai`` engine sending the very same prompts one at a time. Both sides' per-request
samples go through one statistics function, so the numbers differ only by how each
client measures. Prints JSON.

    python tests/bench/http_vs_vllm_bench.py [--rounds 2] [--num-prompts 20] [--dtype bfloat16]

Differences that remain by construction: ``vllm bench serve`` forces ``ignore_eos`` for the
random dataset (every answer is exactly 32 tokens), our engine has no such knob and lets
the model stop; and it stamps TTFT at the first chunk with a choice (vLLM's role-only
chunk, sent in the same engine step as the first token), we at the first chunk with output.
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

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.models import resolve_model
from pytest_inferbudget.records import Request
from pytest_inferbudget.servers import DEFAULT_ARGS, SERVED_MODEL_NAME, VllmServer

SERVED_NAME = SERVED_MODEL_NAME


@contextlib.contextmanager
def vllm_server(model: Path, dtype: str, log_path: Path) -> Iterator[str]:
    """The project's own server runner (the ``vllm_server`` fixture's); yields the
    server's root URL (no ``/v1``)."""
    args = ["--dtype", dtype, *DEFAULT_ARGS[2:]]  # same as the fixture, but this dtype
    server = VllmServer(model, log_path, served_model_name=SERVED_NAME, extra_args=args)
    try:
        yield server.start().removesuffix("/v1")
    finally:
        server.stop()


def bench_argv(root: str, model: Path, num_prompts: int) -> list[str]:
    return [
        "--backend", "openai-chat", "--base-url", root, "--endpoint", "/v1/chat/completions",
        "--model", str(model), "--served-model-name", SERVED_NAME, "--tokenizer", str(model),
        "--dataset-name", "random", "--random-input-len", "64", "--random-output-len", "32",
        "--num-prompts", str(num_prompts), "--max-concurrency", "1", "--temperature", "0",
        "--seed", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,90,99", "--disable-tqdm", "--save-detailed",
    ]  # fmt: skip


def parse_bench_args(argv: list[str]) -> argparse.Namespace:
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser_class: Any = FlexibleArgumentParser  # its __init__ is untyped
    parser = parser_class(description="vllm bench serve")
    serve.add_cli_args(parser)
    args: argparse.Namespace = parser.parse_args(argv)
    return args


def summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "p90": None, "p99": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "mean": round(statistics.fmean(ordered), 2),
        "median": round(statistics.median(ordered), 2),
        "p90": round(pick(0.90), 2),
        "p99": round(pick(0.99), 2),
    }


class Samples:
    """Per-request measurements of one client, in ms, over all its rounds."""

    def __init__(self) -> None:
        self.ttft_ms: list[float] = []
        self.tpot_ms: list[float] = []
        self.itl_ms: list[float] = []
        self.output_tokens: list[int] = []
        self.prompt_tokens: list[int] = []
        self.wall_s = 0.0

    def add(
        self, ttft_ms: float, e2e_ms: float, itl_ms: Sequence[float], output: int, prompt: int
    ) -> None:
        self.ttft_ms.append(ttft_ms)
        if output > 1:
            self.tpot_ms.append((e2e_ms - ttft_ms) / (output - 1))
        self.itl_ms.extend(itl_ms)
        self.output_tokens.append(output)
        self.prompt_tokens.append(prompt)

    def report(self) -> dict[str, Any]:
        return {
            "requests": len(self.ttft_ms),
            "output_tokens": sum(self.output_tokens),
            "output_tokens_per_s": round(sum(self.output_tokens) / self.wall_s, 1),
            "ttft_ms": summary(self.ttft_ms),
            "tpot_ms": summary(self.tpot_ms),
            "itl_ms": summary(self.itl_ms),
        }


def run_vllm_bench(argv: list[str], samples: Samples, reported: list[dict[str, Any]]) -> None:
    from vllm.benchmarks import serve

    result = serve.main(parse_bench_args(argv))
    if result["failed"]:
        raise SystemExit(f"vllm bench serve: {result['failed']} request(s) failed")
    for ttft, latency, itl, output, prompt in zip(
        result["ttfts"],
        result["latencies"],
        result["itls"],
        result["output_lens"],
        result["input_lens"],
        strict=True,
    ):
        samples.add(ttft * 1000, latency * 1000, [gap * 1000 for gap in itl], output, prompt)
    samples.wall_s += result["duration"]
    reported.append(
        {k: round(result[k], 2) for k in ("mean_ttft_ms", "median_ttft_ms", "mean_tpot_ms",
                                          "median_tpot_ms", "output_throughput")}
    )  # fmt: skip


def run_engine(engine: OpenAIEngine, prompts: Sequence[str], samples: Samples) -> None:
    start = time.perf_counter()
    for prompt in prompts:  # concurrency 1: one request at a time, as the bench does
        (response,) = engine.generate([Request(prompt, max_new_tokens=32)])
        ((timing,),) = engine.last_timings
        g = response.generations[0]
        if g.ttft_ms is None or g.e2e_ms is None:
            raise SystemExit(f"no output for prompt {prompt[:40]!r}")
        samples.add(g.ttft_ms, g.e2e_ms, timing.itl_ms, g.completion_tokens, g.prompt_tokens)
    samples.wall_s += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--num-prompts", type=int, default=20)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    from vllm.benchmarks.datasets import get_samples
    from vllm.tokenizers import get_tokenizer

    model = resolve_model("smollm2-135m-instruct", lambda line: print(line, file=sys.stderr))
    log_path = Path(tempfile.mkdtemp(prefix="inferbudget-bench-")) / "server.log"
    with vllm_server(model, args.dtype, log_path) as root:
        argv = bench_argv(root, model, args.num_prompts)
        prompts = [
            str(s.prompt) for s in get_samples(parse_bench_args(argv), get_tokenizer(str(model)))
        ]
        engine = OpenAIEngine.from_spec(
            EngineSpec.parse(f"openai:{root}/v1?model={SERVED_NAME}&max_concurrency=1"),
            lambda line: None,
        )
        engine.generate([Request("Hello", max_new_tokens=4)])  # warm the server
        ours, theirs = Samples(), Samples()
        reported: list[dict[str, Any]] = []
        for round_index in range(args.rounds):
            order = ["bench", "engine"] if round_index % 2 == 0 else ["engine", "bench"]
            for side in order:
                if side == "bench":
                    run_vllm_bench(argv, theirs, reported)
                else:
                    run_engine(engine, prompts, ours)
        engine.close()
    print(
        json.dumps(
            {
                "workload": {
                    "endpoint": "chat",
                    "dataset": "random",
                    "input_len": 64,
                    "output_len": 32,
                    "num_prompts": args.num_prompts,
                    "concurrency": 1,
                    "temperature": 0,
                    "rounds": args.rounds,
                    "server_dtype": args.dtype,
                },
                "cpu_count": os.cpu_count(),
                "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
                "same_prompt_tokens": ours.prompt_tokens == theirs.prompt_tokens,
                "vllm_bench_serve": theirs.report()
                | {"ignore_eos": True, "as_reported_per_round": reported},
                "inferbudget_openai_engine": ours.report() | {"ignore_eos": False},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
