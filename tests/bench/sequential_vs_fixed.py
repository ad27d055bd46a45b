"""Samples a confident verdict costs: sequential (look after every batch) vs a fixed size.

On the default model, time a pool of real requests, then replay it (resampling with
replacement) to judge p50 latency budgets that are clearly met, clearly violated, or
close. Sequential sampling draws batches until the anytime-valid verdict is pass or
fail; the fixed design uses the smallest n (from a grid) whose one-look confident
verdict reaches at least the same rate of correct verdicts. Prints JSON.
Target: at most half the samples on clearly met or clearly violated budgets.

    python tests/bench/sequential_vs_fixed.py [--pool 120] [--repeats 300]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, EngineSpec, create_engine
from pytest_inferbudget.metrics.confidence import quantile_sequential_verdict, quantile_verdict
from pytest_inferbudget.records import Request

PROMPTS = ["Say hi.", "Name a color.", "Say yes.", "Name a fruit.", "Count to 3.", "Say no."]
FIXED_GRID = (5, 10, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320)


def pool_of_latencies(size: int) -> list[float]:
    engine = create_engine(EngineSpec.parse(DEFAULT_ENGINE_SPEC))
    latencies = []
    for index in range(size):
        [response] = engine.generate([Request(PROMPTS[index % len(PROMPTS)], max_new_tokens=8)])
        if response.e2e_ms is not None:
            latencies.append(response.e2e_ms)
    engine.close()
    return latencies


def sequential_run(
    pool: list[float], limit: float, rng: random.Random, batch: int, cap: int, confidence: float
) -> tuple[str, int]:
    drawn: list[float] = []
    while len(drawn) < cap:
        drawn += [rng.choice(pool) for _ in range(batch)]
        verdict = str(quantile_sequential_verdict(drawn, 0.5, limit, confidence))
        if verdict != "inconclusive":
            return verdict, len(drawn)
    return "inconclusive", len(drawn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--cap", type=int, default=400)
    args = parser.parse_args()
    pool = pool_of_latencies(args.pool)
    median = statistics.median(pool)
    cases = {
        "clearly_met": median * 1.5,
        "clearly_violated": median / 1.5,
        "close_met": median * 1.1,
    }
    results = {}
    for case, limit in cases.items():
        truth = "pass" if median <= limit else "fail"
        rng = random.Random(0)
        runs = [
            sequential_run(pool, limit, rng, args.batch, args.cap, args.confidence)
            for _ in range(args.repeats)
        ]
        correct_rate = sum(v == truth for v, _ in runs) / len(runs)
        mean_samples = statistics.fmean(n for _, n in runs)
        fixed_n = None
        fixed_rate = None
        for n in FIXED_GRID:
            rng = random.Random(1)
            verdicts = [
                str(
                    quantile_verdict(
                        [rng.choice(pool) for _ in range(n)], 0.5, limit, args.confidence
                    )
                )
                for _ in range(args.repeats)
            ]
            rate = sum(v == truth for v in verdicts) / len(verdicts)
            if rate >= correct_rate:
                fixed_n, fixed_rate = n, rate
                break
        results[case] = {
            "limit_ms": round(limit, 2),
            "truth": truth,
            "sequential_mean_samples": round(mean_samples, 1),
            "sequential_correct_rate": round(correct_rate, 4),
            "sequential_wrong_rate": round(
                sum(v not in (truth, "inconclusive") for v, _ in runs) / len(runs), 4
            ),
            "fixed_n_for_same_rate": fixed_n,
            "fixed_correct_rate": fixed_rate,
            "sequential_over_fixed": None if fixed_n is None else round(mean_samples / fixed_n, 3),
        }
    print(
        json.dumps(
            {
                "benchmark": "sequential_vs_fixed",
                "statistic": "p50 ms_per_request",
                "confidence": args.confidence,
                "pool_requests": len(pool),
                "pool_median_ms": round(median, 2),
                "repeats": args.repeats,
                "batch": args.batch,
                "cases": results,
                "target": "sequential_over_fixed <= 0.5 on clearly met / clearly violated",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
