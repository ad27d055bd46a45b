"""Start-up cost of containment per candidate run: bubblewrap, the ``unshare`` recipe and none.

Each round runs, under every containment in a rotating order (so drift and warm-up hit all
alike), a do-nothing candidate (the scorer's baseline: start-up, argument decoding, no work)
and a candidate that does a fixed amount of work. Reported per containment: the medians of
the parent-side wall time and of the child's CPU time (``os.wait4``) of the do-nothing run,
their excess over ``none`` (the per-run overhead of the sandbox), and the net CPU time of the
work (Hodges-Lehmann of work less Hodges-Lehmann of do-nothing, as ``score_sample``
subtracts it), which should not depend on the containment if the baseline absorbs the
start-up. Prints JSON. Run it alone: other load on the machine shows up in the figures.

    python tests/bench/sandbox_overhead.py [--rounds 20] [--work 2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

from pytest_inferbudget.code import (
    Containment,
    ExecutionResult,
    TestCase,
    hodges_lehmann,
    probe_isolation,
    run_candidate,
)

NOTHING = "def f(*args):\n    return None\n"


def work_source(n: int) -> str:
    loop = f"    total = 0\n    for i in range({n}):\n        total += i\n"
    return "def f(*args):\n" + loop + "    return None\n"


def once(source: str, sandbox: str) -> ExecutionResult:
    result = run_candidate(
        source,
        "f",
        (TestCase((1,), None),),
        cpu_seconds=60,
        memory_mb=512,
        wall_seconds=60,
        sandbox=sandbox,
    )
    if result.outcome.value != "ok":
        raise SystemExit(f"{sandbox}: {result.outcome}: {result.detail} {result.stderr_tail}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--work", type=int, default=2_000_000, help="loop iterations of work")
    args = parser.parse_args(argv)
    choices = ["none"]
    recipes: dict[str, str] = {"none": "none"}
    for choice in ("bwrap", "unshare"):
        iso = probe_isolation(None, choice)
        if iso.containment is Containment(choice):
            choices.append(choice)
            recipes[choice] = str(iso.recipe)
        else:
            print(f"skipping {choice}: {iso.note}", file=sys.stderr)
    for choice in choices:  # warm-up: the probe, the page cache
        once(NOTHING, choice)
    wall: dict[str, list[float]] = {c: [] for c in choices}
    cpu: dict[str, list[float]] = {c: [] for c in choices}
    work_cpu: dict[str, list[float]] = {c: [] for c in choices}
    work = work_source(args.work)
    for r in range(args.rounds):
        order = choices[r % len(choices) :] + choices[: r % len(choices)]
        for choice in order:
            base = once(NOTHING, choice)
            wall[choice].append(base.wall_seconds)
            cpu[choice].append(base.cpu_seconds)
            work_cpu[choice].append(once(work, choice).cpu_seconds)
    startup = {
        c: {
            "wall_ms_median": round(1e3 * statistics.median(wall[c]), 2),
            "wall_ms_iqr": [round(1e3 * q, 2) for q in _quartiles(wall[c])],
            "cpu_ms_median": round(1e3 * statistics.median(cpu[c]), 2),
        }
        for c in choices
    }
    overhead = {
        c: {
            "wall_ms": round(
                1e3 * (statistics.median(wall[c]) - statistics.median(wall["none"])), 2
            ),
            "cpu_ms": round(1e3 * (statistics.median(cpu[c]) - statistics.median(cpu["none"])), 2),
        }
        for c in choices
        if c != "none"
    }
    net = {
        c: round(1e3 * (hodges_lehmann(work_cpu[c]) - hodges_lehmann(cpu[c])), 2) for c in choices
    }
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "kernel": platform.release(),
                "python": sys.version.split()[0],
                "root": os.geteuid() == 0,
                "rounds": args.rounds,
                "recipes": recipes,
                "startup_do_nothing_run": startup,
                "overhead_vs_none": overhead,
                "net_work_cpu_ms_after_baseline": net,
            },
            indent=2,
        )
    )


def _quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


if __name__ == "__main__":
    main()
