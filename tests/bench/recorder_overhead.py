"""Recorder overhead: the same workload through the engine directly and through `infer`.

Rounds alternate the two paths (ABBA order, so drift and warm-up hit both alike) in one
process, on one loaded engine. Prints JSON; the target is an overhead under 2% of wall time.

The recorded path meters every call as the ``infer`` fixture does (the energy meter
``--inferbudget-energy`` would pick, ``auto`` by default, and the memory meter);
``--metering none`` leaves the meters out.

Two figures: ``overhead_ratio`` compares the medians of whole rounds, which on a shared
two-core machine carries the noise of everything else running; ``bookkeeping_ratio``
times the recorder's own work exactly, as the recorded rounds' wall time less the time
spent inside the engine's ``generate`` (read by a thin wrapper around the same engine).

A watchdog prints every thread's stack to stderr if the run stalls (``--watchdog-s``).

    python tests/bench/recorder_overhead.py [--rounds 8] [--engine SPEC] [--metering none]
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence

from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, Engine, EngineSpec, create_engine
from pytest_inferbudget.meters import MemoryMeter, select_meter
from pytest_inferbudget.recorder import Metering, Recorder
from pytest_inferbudget.records import EngineInfo, Request, Response

PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "What is 3 + 4? Reply with a number only.",
    "Name a color.",
    "What is the capital of Japan? Answer in one word.",
]


class TimedEngine:
    """The engine, with the nanoseconds spent inside its ``generate`` added up."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.inside_ns = 0

    @property
    def spec(self) -> str:
        return self.engine.spec

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        start_ns = time.perf_counter_ns()
        try:
            return self.engine.generate(requests)
        finally:
            self.inside_ns += time.perf_counter_ns() - start_ns

    def describe(self) -> EngineInfo:
        return self.engine.describe()

    def close(self) -> None:
        self.engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--engine", default=DEFAULT_ENGINE_SPEC)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument(
        "--metering",
        default="auto",
        help="energy meter of the recorded path as --inferbudget-energy takes it (auto, nvml, "
        "rapl, off), with the memory meter; 'none' records with no meter at all",
    )
    parser.add_argument(
        "--watchdog-s", type=float, default=600.0, help="dump all stacks after this long"
    )
    args = parser.parse_args()
    faulthandler.dump_traceback_later(args.watchdog_s, repeat=True, file=sys.stderr)
    engine = create_engine(EngineSpec.parse(args.engine))
    timed = TimedEngine(engine)
    requests = [Request(p, max_new_tokens=args.max_new_tokens) for p in PROMPTS]
    if args.metering == "none":
        metering = Metering()
    else:
        metering = Metering(energy=select_meter(args.metering), memory=MemoryMeter())

    def direct() -> None:
        for request in requests:  # one call per request, as a test would make them
            engine.generate([request])

    def recorded() -> None:
        infer = Recorder(timed, metering=metering)
        for prompt in PROMPTS:
            infer(prompt, max_new_tokens=args.max_new_tokens)

    direct()
    recorded()  # warm both paths
    times: dict[str, list[float]] = {"direct": [], "infer": []}
    bookkeeping_s: list[float] = []
    cpu: dict[str, list[float]] = {"direct": [], "infer": []}
    load_before = os.getloadavg()
    for round_index in range(args.rounds):
        order = [("direct", direct), ("infer", recorded)]
        if round_index % 2:
            order.reverse()
        for name, workload in order:
            inside_before = timed.inside_ns
            cpu_start = time.process_time()
            start = time.perf_counter()
            workload()
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            cpu[name].append(time.process_time() - cpu_start)
            if name == "infer":
                bookkeeping_s.append(elapsed - (timed.inside_ns - inside_before) / 1e9)
    faulthandler.cancel_dump_traceback_later()
    direct_s = statistics.median(times["direct"])
    infer_s = statistics.median(times["infer"])
    paired = [i / d - 1.0 for i, d in zip(times["infer"], times["direct"], strict=True)]
    print(
        json.dumps(
            {
                "benchmark": "recorder_overhead",
                "engine": args.engine,
                "rounds": args.rounds,
                "requests_per_round": len(requests),
                "max_new_tokens": args.max_new_tokens,
                "metering": {
                    "energy": metering.energy.name if metering.energy else None,
                    "memory": metering.memory is not None,
                },
                "direct_median_s": round(direct_s, 4),
                "infer_median_s": round(infer_s, 4),
                "direct_all_s": [round(t, 4) for t in times["direct"]],
                "infer_all_s": [round(t, 4) for t in times["infer"]],
                # CPU seconds of all this process's threads per round: a round far slower
                # than its CPU time suggests was waiting for a core another process held
                "direct_cpu_s": [round(t, 3) for t in cpu["direct"]],
                "infer_cpu_s": [round(t, 3) for t in cpu["infer"]],
                "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]],
                "overhead_ratio": round(infer_s / direct_s - 1.0, 4),
                "paired_overhead_ratio_median": round(statistics.median(paired), 4),
                "bookkeeping_per_request_us": round(
                    statistics.median(bookkeeping_s) / len(requests) * 1e6, 1
                ),
                "bookkeeping_ratio": round(
                    statistics.median(
                        [b / t for b, t in zip(bookkeeping_s, times["infer"], strict=True)]
                    ),
                    6,
                ),
                "target_ratio": 0.02,
            },
            indent=2,
        )
    )
    if metering.energy is not None:
        metering.energy.close()
    if metering.memory is not None:
        metering.memory.close()
    engine.close()


if __name__ == "__main__":
    main()
