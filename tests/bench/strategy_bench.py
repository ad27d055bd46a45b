"""Strategy cost on the real default model, in one process on one loaded engine.

1. Best-of-8 through ``BestOfN(8)`` (one call, one request with ``n=8``) against the
   same selection done with 8 sequential single-sample calls. Rounds alternate the two
   paths (ABBA order, so drift and warm-up hit both alike). Target: batched at least 3x
   faster in wall time.
2. ``AdaptiveConsistency`` against fixed-n ``SelfConsistency`` on 12 arithmetic
   questions: accuracy, samples and completion tokens per question. The model draws a
   pool of samples per question once (one batched call); every method then consumes the
   same samples in the same order, so the comparison is paired and differences come
   from the stopping rule alone.

Prints JSON. The load average before and after is included: on a shared machine the
timings are noisy, the ratio less so (both paths run under the same load).

    python tests/bench/strategy_bench.py [--rounds 4] [--pool 16] [--only best_of_8|adaptive]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, Engine, EngineSpec, create_engine
from pytest_inferbudget.records import EngineInfo, Request, Response
from pytest_inferbudget.strategies import (
    AdaptiveConsistency,
    BestOfN,
    SelfConsistency,
    Strategy,
    derive_seed,
    last_number,
)

BEST_OF_PROMPT = "Write one sentence about the sea."
SUFFIX = " Reply with a number only."
QUESTIONS = [
    ("What is 3 + 4?", "7"),
    ("What is 5 + 2?", "7"),
    ("What is 9 - 3?", "6"),
    ("What is 6 + 6?", "12"),
    ("What is 2 * 4?", "8"),
    ("What is 10 - 7?", "3"),
    ("What is 8 + 1?", "9"),
    ("What is 4 + 4?", "8"),
    ("What is 7 - 2?", "5"),
    ("What is 3 * 3?", "9"),
    ("What is 12 + 5?", "17"),
    ("What is 15 - 6?", "9"),
]


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def best_of_8(engine: Engine, rounds: int, max_new_tokens: int) -> dict[str, Any]:
    strategy = BestOfN(8, temperature=0.7)

    def batched(seed: int) -> int:
        result = strategy.run(engine, BEST_OF_PROMPT, max_new_tokens=max_new_tokens, seed=seed)
        return result.completion_tokens

    def sequential(seed: int) -> int:
        tokens = 0
        best: float | None = None
        for i in range(8):  # the same selection, one sample per call
            (response,) = engine.generate(
                [
                    Request(
                        BEST_OF_PROMPT,
                        max_new_tokens=max_new_tokens,
                        temperature=0.7,
                        seed=derive_seed(seed, i),
                        logprobs=True,
                    )
                ]
            )
            tokens += response.completion_tokens
            score = response.generations[0].mean_logprob
            if score is not None and (best is None or score > best):
                best = score
        return tokens

    batched(0)
    sequential(0)  # warm both paths
    seconds: dict[str, list[float]] = {"batched": [], "sequential": []}
    tokens: dict[str, list[int]] = {"batched": [], "sequential": []}
    for round_index in range(rounds):
        order = [("batched", batched), ("sequential", sequential)]
        if round_index % 2:
            order.reverse()
        for name, workload in order:
            start = time.perf_counter()
            tokens[name].append(workload(round_index + 1))
            seconds[name].append(time.perf_counter() - start)
            progress(
                f"best-of-8 round {round_index + 1}/{rounds} {name}: {seconds[name][-1]:.1f} s"
            )
    batched_s = statistics.median(seconds["batched"])
    sequential_s = statistics.median(seconds["sequential"])
    return {
        "prompt": BEST_OF_PROMPT,
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
        "batched_median_s": round(batched_s, 3),
        "sequential_median_s": round(sequential_s, 3),
        "speedup": round(sequential_s / batched_s, 2),
        "batched_tokens_per_s": round(sum(tokens["batched"]) / sum(seconds["batched"]), 1),
        "sequential_tokens_per_s": round(sum(tokens["sequential"]) / sum(seconds["sequential"]), 1),
        "batched_completion_tokens": tokens["batched"],
        "sequential_completion_tokens": tokens["sequential"],
        "batched_s": [round(s, 3) for s in seconds["batched"]],
        "sequential_s": [round(s, 3) for s in seconds["sequential"]],
        "target_speedup": 3.0,
        "meets_target": sequential_s / batched_s >= 3.0,
    }


class PoolEngine:
    """Serves requests from samples the model drew beforehand, in draw order.

    Every method sees the same samples of a question in the same order, so accuracy
    differences come from the stopping rule alone (the paper evaluates the same way,
    on stored generations).
    """

    def __init__(self, pool: Response) -> None:
        self.pool = pool
        self.used = 0

    @property
    def spec(self) -> str:
        return f"pool({self.pool.engine})"

    def describe(self) -> EngineInfo:
        return {"engine": self.spec}

    def close(self) -> None:
        pass

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        responses = []
        for request in requests:
            generations = self.pool.generations[self.used : self.used + request.n]
            if len(generations) < request.n:
                raise RuntimeError(f"pool of {len(self.pool.generations)} samples exhausted")
            self.used += request.n
            responses.append(Response(request, generations, self.spec))
        return responses


def adaptive_vs_fixed(engine: Engine, pool_size: int, max_new_tokens: int) -> dict[str, Any]:
    methods: dict[str, Strategy] = {
        "self_consistency_n4": SelfConsistency(4, extract=last_number),
        "self_consistency_n8": SelfConsistency(8, extract=last_number),
        f"self_consistency_n{pool_size}": SelfConsistency(pool_size, extract=last_number),
        "adaptive_batch1": AdaptiveConsistency(
            max_n=pool_size, batch=1, confidence=0.95, extract=last_number
        ),
        "adaptive_batch4": AdaptiveConsistency(
            max_n=pool_size, batch=4, confidence=0.95, extract=last_number
        ),
        "adaptive_batch4_confidence0.8": AdaptiveConsistency(
            max_n=pool_size, batch=4, confidence=0.8, extract=last_number
        ),
    }
    start = time.perf_counter()
    pools = []
    for seed, (question, _) in enumerate(QUESTIONS):
        (pool,) = engine.generate(
            [
                Request(
                    question + SUFFIX,
                    max_new_tokens=max_new_tokens,
                    temperature=0.7,
                    n=pool_size,
                    seed=seed,
                )
            ]
        )
        pools.append(pool)
    progress(f"drew {pool_size} samples for each of {len(QUESTIONS)} questions")
    per_method: dict[str, dict[str, Any]] = {}
    answers: dict[str, list[str | None]] = {}
    for name, strategy in methods.items():
        correct = samples = completion_tokens = calls = 0
        answers[name] = []
        for pool, (question, expected) in zip(pools, QUESTIONS, strict=True):
            result = strategy.run(
                PoolEngine(pool), question + SUFFIX, max_new_tokens=max_new_tokens, seed=None
            )
            answers[name].append(result.answer)
            correct += result.answer == expected
            samples += result.samples
            completion_tokens += result.completion_tokens
            calls += result.calls
        per_method[name] = {
            "strategy": strategy.name,
            "accuracy": round(correct / len(QUESTIONS), 3),
            "mean_samples": round(samples / len(QUESTIONS), 2),
            "mean_completion_tokens": round(completion_tokens / len(QUESTIONS), 1),
            "mean_calls": round(calls / len(QUESTIONS), 2),
        }
    full = answers[f"self_consistency_n{pool_size}"]
    return {
        "questions": len(QUESTIONS),
        "samples_per_question_drawn": pool_size,
        "max_new_tokens": max_new_tokens,
        "temperature": 0.7,
        "draw_wall_s": round(time.perf_counter() - start, 1),
        "methods": per_method,
        "same_answer_as_full_self_consistency": {
            name: f"{sum(a == b for a, b in zip(answers[name], full, strict=True))}"
            f"/{len(QUESTIONS)}"
            for name in methods
            if name.startswith("adaptive")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--engine", default=DEFAULT_ENGINE_SPEC)
    parser.add_argument("--best-of-tokens", type=int, default=24)
    parser.add_argument("--answer-tokens", type=int, default=12)
    parser.add_argument("--pool", type=int, default=16, help="samples drawn per question")
    parser.add_argument("--only", choices=["best_of_8", "adaptive"], default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    engine = create_engine(EngineSpec.parse(args.engine))
    report: dict[str, Any] = {"engine": args.engine, "cpus": os.cpu_count()}
    if args.only in (None, "best_of_8"):
        report["best_of_8"] = best_of_8(engine, args.rounds, args.best_of_tokens)
    if args.only in (None, "adaptive"):
        report["adaptive_vs_fixed"] = adaptive_vs_fixed(engine, args.pool, args.answer_tokens)
    report["load_average_before"] = [round(x, 2) for x in load_before]
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    engine.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
