"""Samples a confident verdict costs: sequential (look after every batch) vs a fixed size.

On the default model, time a pool of real requests (one at a time, sampled decoding so
lengths vary), then judge p50 ``ms_per_request`` budgets against it. The pool is the
truth: a run draws requests from it with replacement, so ``F(limit)``, the share of
requests within the limit, is known exactly and "wrong" is well defined.

- Sequential: the plugin's loop (``infer.sample_until_confident``): draw a batch, judge
  with ``quantile_sequential_verdict`` (anytime-valid), stop at pass or fail or at the
  cap. Simulated ``--repeats`` times per budget; mean samples and error rates reported.
- Fixed: one look at n samples with ``quantile_verdict`` at the same confidence. Its
  verdict depends only on how many of the n draws are within the limit, a
  ``Binomial(n, F(limit))`` count, so its probabilities are computed exactly (and
  checked by simulation at the chosen n).

Two fixed sizes, both with error (wrong or inconclusive) at most ``1 - confidence``:

- ``design_fixed_n``, the standard fixed-n design, the headline: n is chosen before
  sampling, by a power calculation, as the smallest n whose one-look verdict is right
  with probability >= confidence on every budget at least ``--margin`` from the quantile
  (``|F(limit) - q| >= margin``; the boundary cases ``close_met``/``close_violated``).
  That n is then spent on every budget, clear or not, which is what sequential saves.
- ``oracle_fixed_n``: the smallest n that reaches that error rate on this budget alone,
  as if its truth were known in advance. No fixed design can pick it, and the saving
  against it is bounded: ``any_sequential_test_needs_at_least`` is Wald's lower bound
  on the mean samples of any sequential test with the same error rate.

``inside_margin_met`` (``F = q + margin / 2``) shows the price: a budget closer to the
limit than the design resolves, where the sequential loop may run to the cap.

The comparison is fair only if the sequential loop is at least as accurate as the fixed
design at the margin, within its cap: ``same_error_rate`` checks that its error there
(wrong or inconclusive at the cap) is at most ``1 - confidence``; raise ``--cap`` for a
smaller margin.

Target: sequential mean samples at most half of ``design_fixed_n`` on the clearly met and
clearly violated budgets. A few live runs on the engine (``--live``) check the replay.
Run it alone on the machine: it times real requests (about 2 to 4 minutes on 2 cores).

    python tests/bench/sequential_vs_fixed.py [--pool 120] [--repeats 1000] [--live 3]
        [--margin 0.2] [--batch 5] [--cap 400] [--save-pool FILE | --load-pool FILE]
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, Engine, EngineSpec, create_engine
from pytest_inferbudget.metrics.confidence import (
    order_statistic_ranks,
    quantile_sequential_verdict,
    quantile_verdict,
)
from pytest_inferbudget.records import Request

PROMPTS = (
    "Say hi.",
    "Name a color.",
    "Name three fruits.",
    "Count to 5.",
    "What is 2 + 2?",
    "Describe the sea in one sentence.",
    "Give a one-line tip for sleeping well.",
    "Say yes or no.",
)
MAX_NEW_TOKENS = 16
TEMPERATURE = 0.7
FIXED_N_LIMIT = 5000
"""Largest fixed n searched; a budget needing more is reported as null."""


def request_for(index: int) -> Request:
    """Request number ``index`` of the workload: prompts in turn, a seed each."""
    return Request(
        PROMPTS[index % len(PROMPTS)],
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=TEMPERATURE,
        seed=index,
    )


def timed_ms(engine: Engine, index: int) -> float:
    """End-to-end milliseconds of one request sent alone."""
    [response] = engine.generate([request_for(index)])
    if response.e2e_ms is None:
        raise RuntimeError(f"engine {engine.spec} measured no e2e_ms")
    return response.e2e_ms


def sequential_run(
    draw: Callable[[], float], q: float, limit: float, batch: int, cap: int, confidence: float
) -> tuple[str, int]:
    """The plugin's loop: a batch, then a look, until pass, fail or ``cap`` samples."""
    drawn: list[float] = []
    while len(drawn) < cap:
        drawn += [draw() for _ in range(batch)]
        verdict = str(quantile_sequential_verdict(drawn, q, limit, confidence))
        if verdict != "inconclusive":
            return verdict, len(drawn)
    return "inconclusive", len(drawn)


def binomial_pmf(n: int, p: float) -> list[float]:
    """P(B = k) for k = 0..n, B ~ Binomial(n, p), in log space (n in the thousands)."""
    if p <= 0.0 or p >= 1.0:
        return [1.0 if k == (0 if p <= 0.0 else n) else 0.0 for k in range(n + 1)]
    return [
        math.exp(
            math.lgamma(n + 1)
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + k * math.log(p)
            + (n - k) * math.log1p(-p)
        )
        for k in range(n + 1)
    ]


def fixed_probabilities(
    n: int, q: float, share_within: float, confidence: float
) -> dict[str, float]:
    """Exact P(pass), P(fail) of ``quantile_verdict`` on n draws.

    With ranks (l, u) it passes iff ``X_(u) <= limit`` iff at least u draws are within
    the limit, and fails iff ``X_(l) > limit`` iff at most l - 1 are; the count of draws
    within is Binomial(n, F(limit)).
    """
    lower, upper = order_statistic_ranks(n, q, confidence)
    pmf = binomial_pmf(n, share_within)
    return {
        "pass": 0.0 if upper is None else math.fsum(pmf[upper:]),
        "fail": 0.0 if lower is None else math.fsum(pmf[:lower]),
    }


def smallest_fixed_n(
    q: float, shares_and_truths: Sequence[tuple[float, str]], confidence: float
) -> int | None:
    """The smallest n whose one-look verdict is right with probability >= confidence on
    every (F(limit), truth) given; None above FIXED_N_LIMIT."""
    for n in range(1, FIXED_N_LIMIT + 1):
        if all(
            fixed_probabilities(n, q, share, confidence)[truth] >= confidence
            for share, truth in shares_and_truths
        ):
            return n
    return None


def kl_bernoulli(a: float, b: float) -> float:
    """KL(Bernoulli(a) || Bernoulli(b)) in nats, 0 < b < 1."""
    total = 0.0
    if a > 0.0:
        total += a * math.log(a / b)
    if a < 1.0:
        total += (1.0 - a) * math.log((1.0 - a) / (1.0 - b))
    return total


def sequential_lower_bound(share_within: float, q: float, confidence: float) -> float | None:
    """Wald's lower bound on the mean samples of ANY sequential test whose verdicts are
    wrong with probability at most ``1 - confidence`` on both sides of q, when the share
    within the limit is ``share_within``: ``(1 - 2a) log((1 - a) / a) / KL(share || q)``
    (Wald, "Sequential Analysis", 1947, with the alternative just across q). Even the
    SPRT tuned to this very truth spends no less on average; None at the boundary."""
    if share_within == q:
        return None
    alpha = 1.0 - confidence
    evidence = (1.0 - 2.0 * alpha) * math.log((1.0 - alpha) / alpha)
    return evidence / kl_bernoulli(share_within, q)


def simulate_fixed_rate(
    pool: Sequence[float], n: int, q: float, limit: float, confidence: float, truth: str, reps: int
) -> float:
    """Share of right one-look verdicts on n draws, by simulation: checks the exact rate."""
    rng = random.Random(2)
    right = sum(
        str(quantile_verdict([rng.choice(pool) for _ in range(n)], q, limit, confidence)) == truth
        for _ in range(reps)
    )
    return right / reps


def live_runs(
    engine: Engine, first_index: int, args: argparse.Namespace, limit: float
) -> list[dict[str, Any]]:
    """``args.live`` sequential runs on the engine itself: fresh requests, not the pool."""
    index = first_index
    runs = []

    def draw() -> float:
        nonlocal index
        index += 1
        return timed_ms(engine, index - 1)

    for _ in range(args.live):
        verdict, used = sequential_run(
            draw, args.quantile, limit, args.batch, args.cap, args.confidence
        )
        runs.append({"verdict": verdict, "samples": used})
    return runs


def pool_quantile(ordered: Sequence[float], share: float) -> float:
    """A limit between pool values with exactly round(share * size) values at or below."""
    count = round(share * len(ordered))
    if count <= 0:
        return ordered[0] * 0.99
    if count >= len(ordered):
        return ordered[-1]
    return (ordered[count - 1] + ordered[count]) / 2.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=int, default=120, help="requests timed on the engine")
    parser.add_argument("--repeats", type=int, default=1000, help="simulated runs per budget")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--quantile", type=float, default=0.5, help="0.5 for p50 budgets")
    parser.add_argument("--batch", type=int, default=5, help="sample_until_confident's batch")
    parser.add_argument("--cap", type=int, default=400, help="max_samples")
    parser.add_argument(
        "--margin", type=float, default=0.2, help="design boundary: |F(limit) - q| at least this"
    )
    parser.add_argument("--clear-factor", type=float, default=1.5, help="clear limits: median x/÷")
    parser.add_argument("--live", type=int, default=3, help="live sequential runs per clear case")
    parser.add_argument("--save-pool", help="write the timed pool (ms) to this JSON file")
    parser.add_argument(
        "--load-pool", help="replay a saved pool instead of timing the engine (no live runs)"
    )
    args = parser.parse_args()
    q, confidence = args.quantile, args.confidence

    started = time.perf_counter()
    engine: Engine | None = None
    if args.load_pool:
        with open(args.load_pool, encoding="utf-8") as file:
            pool = [float(value) for value in json.load(file)]
    else:
        engine = create_engine(EngineSpec.parse(DEFAULT_ENGINE_SPEC))
        timed_ms(engine, -1)  # warm-up, not kept
        pool = [timed_ms(engine, index) for index in range(args.pool)]
    if args.save_pool:
        with open(args.save_pool, "w", encoding="utf-8") as file:
            json.dump(pool, file)
    pool_seconds = time.perf_counter() - started
    ordered = sorted(pool)
    center = statistics.median(ordered) if q == 0.5 else pool_quantile(ordered, q)

    def share_within(limit: float) -> float:
        return bisect.bisect_right(ordered, limit) / len(ordered)

    limits = {
        "clearly_met": center * args.clear_factor,
        "clearly_violated": center / args.clear_factor,
        "close_met": pool_quantile(ordered, q + args.margin),
        "close_violated": pool_quantile(ordered, q - args.margin),
        "inside_margin_met": pool_quantile(ordered, q + args.margin / 2.0),
    }
    truths = {
        case: "pass" if share_within(limit) >= q else "fail" for case, limit in limits.items()
    }
    design_n = smallest_fixed_n(
        q,
        [(share_within(limits[c]), truths[c]) for c in ("close_met", "close_violated")],
        confidence,
    )

    cases: dict[str, Any] = {}
    for case, limit in limits.items():
        share, truth = share_within(limit), truths[case]
        draw = functools.partial(random.Random(0).choice, pool)
        runs = [
            sequential_run(draw, q, limit, args.batch, args.cap, confidence)
            for _ in range(args.repeats)
        ]
        samples = sorted(n for _, n in runs)
        mean_samples = statistics.fmean(samples)
        oracle_n = smallest_fixed_n(q, [(share, truth)], confidence)
        at_design = (
            None if design_n is None else fixed_probabilities(design_n, q, share, confidence)
        )
        bound = sequential_lower_bound(share, q, confidence)
        cases[case] = {
            "limit_ms": round(limit, 2),
            "limit_over_median": round(limit / center, 3),
            "share_within_limit": round(share, 4),
            "truth": truth,
            "sequential_mean_samples": round(mean_samples, 1),
            "sequential_p90_samples": samples[int(0.9 * (len(samples) - 1))],
            "sequential_max_samples": samples[-1],
            "sequential_wrong_rate": sum(v not in (truth, "inconclusive") for v, _ in runs)
            / len(runs),
            "sequential_inconclusive_rate": sum(v == "inconclusive" for v, _ in runs) / len(runs),
            "design_fixed_n": design_n,
            "design_fixed_right_rate": None if at_design is None else round(at_design[truth], 4),
            "sequential_over_design_fixed": None
            if design_n is None
            else round(mean_samples / design_n, 3),
            "oracle_fixed_n": oracle_n,
            "oracle_fixed_right_rate_simulated": None
            if oracle_n is None
            else simulate_fixed_rate(pool, oracle_n, q, limit, confidence, truth, 2000),
            "sequential_over_oracle_fixed": None
            if oracle_n is None
            else round(mean_samples / oracle_n, 3),
            "any_sequential_test_needs_at_least": None if bound is None else round(bound, 1),
        }

    live: dict[str, list[dict[str, Any]]] = {}
    if engine is not None:
        for case in ("clearly_met", "clearly_violated"):
            live[case] = live_runs(engine, len(pool) + 1000 * len(live), args, limits[case])
        engine.close()

    clear = [cases["clearly_met"], cases["clearly_violated"]]
    # The comparison holds only if the sequential loop, within its cap, is at least as
    # accurate as the fixed design where the design is sized: at the margin.
    boundary_error = max(
        cases[c]["sequential_wrong_rate"] + cases[c]["sequential_inconclusive_rate"]
        for c in ("close_met", "close_violated")
    )
    comparable = boundary_error <= 1.0 - confidence
    print(
        json.dumps(
            {
                "benchmark": "sequential_vs_fixed",
                "engine": DEFAULT_ENGINE_SPEC,
                "workload": f"{len(PROMPTS)} chat prompts in turn, max_new_tokens="
                f"{MAX_NEW_TOKENS}, temperature {TEMPERATURE}, a seed per request, one at a time",
                "statistic": f"p{100 * q:g} ms_per_request",
                "confidence": confidence,
                "pool_requests": len(pool),
                "pool_source": args.load_pool or "timed now",
                "pool_seconds": round(pool_seconds, 1),
                "pool_ms": {
                    "min": round(ordered[0], 1),
                    "p10": round(pool_quantile(ordered, 0.1), 1),
                    "median": round(statistics.median(ordered), 1),
                    "p90": round(pool_quantile(ordered, 0.9), 1),
                    "max": round(ordered[-1], 1),
                },
                "repeats": args.repeats,
                "batch": args.batch,
                "cap": args.cap,
                "design_margin": args.margin,
                "design_fixed_n": design_n,
                "cases": cases,
                "live_sequential_runs": live,
                "target": "sequential_over_design_fixed <= 0.5 on clearly met / clearly violated",
                "sequential_error_at_margin": round(boundary_error, 4),
                "same_error_rate": comparable,
                "target_met": comparable
                and all(
                    c["sequential_over_design_fixed"] is not None
                    and c["sequential_over_design_fixed"] <= 0.5
                    for c in clear
                ),
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
