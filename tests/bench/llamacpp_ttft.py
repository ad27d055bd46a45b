"""TTFT and TPOT against llama.cpp's server: our ``openai`` engine beside vLLM's benchmark
client, same server, same prompts. Prints JSON.

Starts llama-cpp-python's server (the ``llamacpp_server`` fixture's runner) on the GGUF
file the default model comes from, then runs rounds that alternate (ABBA) between ``vllm
bench serve`` (``vllm.benchmarks.serve.main``: chat endpoint, random 64-token prompts, 32
output tokens, concurrency 1, greedy, ``--tokenizer`` the default model's) and the
``openai`` engine sending the very same prompts one at a time. That server sends no
usage in its streams, so both clients count output tokens by re-tokenizing the text
with the same tokenizer; both sides' per-request samples go through one statistics
function, so the figures differ only by how each client measures.

    flock /tmp/heavy.lock python tests/bench/llamacpp_ttft.py [--rounds 2] [--num-prompts 20]

The bench client is adapted to this server in three ways: its request ids become UUIDs
(:func:`uuid_request_ids`), its text prompts are sent as strings, not content parts
(:func:`text_content_messages`), and, since it limits answers with ``max_completion_tokens``,
which this server ignores, ``max_tokens`` is added to its requests (``--extra-body``). By
construction: it asks for ``ignore_eos`` on the random dataset, which this server
ignores too, so both sides' answers stop where the model stops.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script, import siblings

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.models import resolve_model
from pytest_inferbudget.records import Request
from pytest_inferbudget.servers import SERVED_MODEL_NAME, LlamaCppServer, packaged_gguf
from tests.bench.http_vs_vllm_bench import Samples, parse_bench_args, run_engine


def bench_argv(root: str, tokenizer: Path, num_prompts: int) -> list[str]:
    return [
        "--backend", "openai-chat", "--base-url", root, "--endpoint", "/v1/chat/completions",
        "--model", SERVED_MODEL_NAME, "--tokenizer", str(tokenizer),
        "--dataset-name", "random", "--random-input-len", "64", "--random-output-len", "32",
        "--num-prompts", str(num_prompts), "--max-concurrency", "1", "--temperature", "0",
        "--seed", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,90,99", "--disable-tqdm", "--save-detailed",
        # llama.cpp's server knows max_tokens, not the bench's max_completion_tokens
        "--extra-body", json.dumps({"max_tokens": 32}),
    ]  # fmt: skip


def uuid_request_ids() -> None:
    """``vllm bench serve`` names each request in an ``x-request-id`` header
    (``bench-...-0``); llama-cpp-python's server (starlette-context) refuses any id that
    is not a UUID with a bare HTTP 400, so every request would fail. The id is turned into
    a UUID derived from it; nothing else of the request changes."""
    from vllm.benchmarks.lib import endpoint_request_func as request_func

    original = request_func._update_headers_common

    def update_headers(headers: dict[str, Any], request_func_input: Any) -> None:
        original(headers, request_func_input)
        if "x-request-id" in headers:
            headers["x-request-id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, headers["x-request-id"]))

    setattr(request_func, "_update_headers_common", update_headers)  # noqa: B010


def text_content_messages() -> None:
    """``vllm bench serve`` sends a chat prompt as a list of content parts
    (``[{"type": "text", ...}]``); llama-cpp-python's ``chatml`` formatter renders list
    content as nothing, so the model would answer an empty message. Text-only parts are
    joined into the plain string the OpenAI API also accepts."""
    from vllm.benchmarks.lib import endpoint_request_func as request_func

    original = request_func._get_chat_messages

    def get_chat_messages(request_func_input: Any, **kwargs: Any) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = original(request_func_input, **kwargs)
        for message in messages:
            parts = message.get("content")
            if isinstance(parts, list) and all(p.get("type") == "text" for p in parts):
                message["content"] = "".join(p["text"] for p in parts)
        return messages

    setattr(request_func, "_get_chat_messages", get_chat_messages)  # noqa: B010


def paired_ratio(ours: list[float], theirs: list[float]) -> float | None:
    """Median over requests of ours / theirs, request i against request i (both clients
    send the same prompts in the same order, one at a time)."""
    pairs = [a / b for a, b in zip(ours, theirs, strict=False) if b > 0]
    return round(statistics.median(pairs), 3) if pairs else None


def run_vllm_bench(argv: list[str], samples: Samples, reported: list[dict[str, Any]]) -> None:
    """One ``vllm bench serve`` run; its per-request samples added to ``samples``."""
    from vllm.benchmarks import serve

    result = serve.main(parse_bench_args(argv))
    if result["failed"]:
        errors = [e for e in result.get("errors", []) if e]
        raise SystemExit(f"vllm bench serve: {result['failed']} request(s) failed: {errors[:1]}")
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
    keys = ("mean_ttft_ms", "median_ttft_ms", "mean_tpot_ms", "median_tpot_ms")
    reported.append({k: round(result[k], 2) for k in (*keys, "output_throughput")})


def ratio(ours: Samples, theirs: Samples, metric: str) -> float | None:
    """Our mean over theirs: 1.0 is perfect agreement."""
    mine, other = getattr(ours, metric), getattr(theirs, metric)
    if not mine or not other:
        return None
    return round(statistics.fmean(mine) / statistics.fmean(other), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--num-prompts", type=int, default=20)
    args = parser.parse_args()

    from vllm.benchmarks.datasets import get_samples
    from vllm.tokenizers import get_tokenizer

    def progress(line: str) -> None:
        print(line, file=sys.stderr)

    uuid_request_ids()
    text_content_messages()
    tokenizer = resolve_model(SERVED_MODEL_NAME, progress)
    gguf = packaged_gguf(SERVED_MODEL_NAME, progress)
    log_path = Path(tempfile.mkdtemp(prefix="inferbudget-bench-")) / "server.log"
    server = LlamaCppServer(gguf, log_path)
    try:
        root = server.start().removesuffix("/v1")
        argv = bench_argv(root, tokenizer, args.num_prompts)
        prompts = [
            str(s.prompt)
            for s in get_samples(parse_bench_args(argv), get_tokenizer(str(tokenizer)))
        ]
        engine = OpenAIEngine.from_spec(
            EngineSpec.parse(f"openai:{root}/v1?model={SERVED_MODEL_NAME}&max_concurrency=1"),
            lambda line: None,
        )
        engine.generate([Request("Hello", max_new_tokens=4)])  # warm the server and probe
        info = engine.describe()
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
    finally:
        server.stop()
    print(
        json.dumps(
            {
                "server": " ".join(server.command()[1:]),
                "workload": {
                    "endpoint": "chat",
                    "dataset": "random",
                    "input_len": 64,
                    "output_len": 32,
                    "num_prompts": args.num_prompts,
                    "concurrency": 1,
                    "temperature": 0,
                    "rounds": args.rounds,
                },
                "cpu_count": os.cpu_count(),
                "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
                "engine_tokens": info.get("tokens"),
                "capabilities": info.get("capabilities"),
                "same_output_tokens": ours.output_tokens == theirs.output_tokens,
                "ours_over_theirs": {
                    metric: ratio(ours, theirs, metric) for metric in ("ttft_ms", "tpot_ms")
                },
                "ours_over_theirs_paired_median": {
                    "ttft_ms": paired_ratio(ours.ttft_ms, theirs.ttft_ms),
                    "output_tokens": paired_ratio(
                        [float(t) for t in ours.output_tokens],
                        [float(t) for t in theirs.output_tokens],
                    ),
                },
                "vllm_bench_serve": theirs.report() | {"as_reported_per_round": reported},
                "inferbudget_openai_engine": ours.report(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
