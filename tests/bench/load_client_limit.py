"""The load client's own limit: the highest open-loop rate it keeps with p99 lateness
under 5 ms, against a loopback stub server that answers at once.

The stub (tests/unit/load/stub_server.py) runs in a process of its own, streaming each
answer's 8 tokens over SSE without delay, so the server is never the bottleneck and what
falls behind is the client: its event loop sending, streaming and parsing. Rates double
from ``--start`` for ``--seconds`` of Poisson load each until p99 lateness passes 5 ms
(or requests fail). Prints JSON: every rate's lateness and throughput, and the limit.

    flock /tmp/heavy.lock python tests/bench/load_client_limit.py [--start 25] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.load.tester import LoadTester
from pytest_inferbudget.recorder import Recorder

ROOT = Path(__file__).resolve().parents[2]
LATENESS_LIMIT_MS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--max-rate", type=float, default=3200.0)
    args = parser.parse_args()
    stub = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.load.stub_server"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stub.stdout is not None
        url = stub.stdout.readline().strip()
        engine = OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{url}?model=stub"), print)
        tester = LoadTester(engine, Recorder(engine))
        rows = []
        limit = None
        rate = args.start
        while rate <= args.max_rate:
            result = tester.run(
                ["hello"], rate=rate, duration_s=args.seconds, warmup=20, seed=0, max_new_tokens=8
            )
            late = result.lateness
            row = {
                "rate_rps": rate,
                "requests": len(result.requests),
                "errors": result.errors,
                "achieved_rate_rps": round(result.achieved_rate_rps or 0.0, 1),
                "request_throughput": round(result.request_throughput or 0.0, 1),
                "lateness_p50_ms": round(late.p50_ms or 0.0, 3),
                "lateness_p99_ms": round(late.p99_ms or 0.0, 3),
                "lateness_max_ms": round(late.max_ms or 0.0, 3),
                "median_ttft_ms": round(result.percentile("ttft_ms", 0.5) or 0.0, 3),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            kept = late.p99_ms is not None and late.p99_ms < LATENESS_LIMIT_MS
            if not kept or result.errors:
                break
            limit = rate
            rate *= 2
        engine.close()
    finally:
        if stub.stdin is not None:
            stub.stdin.close()
        stub.wait(timeout=30)
    print(
        json.dumps(
            {
                "stub": "loopback SSE, 8 tokens, no delay, own process",
                "seconds_per_rate": args.seconds,
                "p99_lateness_limit_ms": LATENESS_LIMIT_MS,
                "highest_rate_kept_rps": limit,
                "rates": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
