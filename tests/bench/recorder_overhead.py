"""Recorder overhead: the same workload through the engine directly and through `infer`.

Rounds alternate the two paths (ABBA order, so drift and warm-up hit both alike) in one
process, on one loaded engine. Prints JSON; the target is an overhead under 2% of wall time.

    python tests/bench/recorder_overhead.py [--rounds 8] [--engine SPEC]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, EngineSpec, create_engine
from pytest_inferbudget.recorder import Recorder
from pytest_inferbudget.records import Request

PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "What is 3 + 4? Reply with a number only.",
    "Name a color.",
    "What is the capital of Japan? Answer in one word.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--engine", default=DEFAULT_ENGINE_SPEC)
    args = parser.parse_args()
    engine = create_engine(EngineSpec.parse(args.engine))
    requests = [Request(p, max_new_tokens=16) for p in PROMPTS]

    def direct() -> None:
        for request in requests:  # one call per request, as a test would make them
            engine.generate([request])

    def recorded() -> None:
        infer = Recorder(engine)
        for prompt in PROMPTS:
            infer(prompt, max_new_tokens=16)

    direct()
    recorded()  # warm both paths
    times: dict[str, list[float]] = {"direct": [], "infer": []}
    for round_index in range(args.rounds):
        order = [("direct", direct), ("infer", recorded)]
        if round_index % 2:
            order.reverse()
        for name, workload in order:
            start = time.perf_counter()
            workload()
            times[name].append(time.perf_counter() - start)
    direct_s = statistics.median(times["direct"])
    infer_s = statistics.median(times["infer"])
    print(
        json.dumps(
            {
                "benchmark": "recorder_overhead",
                "engine": args.engine,
                "rounds": args.rounds,
                "requests_per_round": len(requests),
                "direct_median_s": round(direct_s, 4),
                "infer_median_s": round(infer_s, 4),
                "direct_all_s": [round(t, 4) for t in times["direct"]],
                "infer_all_s": [round(t, 4) for t in times["infer"]],
                "overhead_ratio": round(infer_s / direct_s - 1.0, 4),
                "target_ratio": 0.02,
            },
            indent=2,
        )
    )
    engine.close()


if __name__ == "__main__":
    main()
