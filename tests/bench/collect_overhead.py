"""What the plugin adds to `pytest --co` start-up: with it, and with `-p no:inferbudget`.

Runs each variant as a fresh process, interleaved, many times, and prints JSON with the
median difference. Target: at most 20 ms (pytest-benchmark adds 43 ms here).

Beside wall time it reports the processes' CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)``), which the other work on a shared machine disturbs far
less than it does wall time.

Two settings of Python's bytecode cache are measured, since they differ by the time it
takes to compile the plugin's sources: ``as_run`` inherits this environment (where
``PYTHONDONTWRITEBYTECODE=1`` is set, every start parses, assertion-rewrites and compiles
each plugin module again), and ``cached_bytecode`` gives the processes a warm private
``PYTHONPYCACHEPREFIX``, as an ordinary installation has.

    python tests/bench/collect_overhead.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

SUITE = textwrap.dedent(
    """
    import pytest

    @pytest.mark.budget(max_tokens=32, ms_per_request=1500)
    def test_capital(infer):
        assert "Paris" in infer("What is the capital of France?").text

    @pytest.mark.budget(tokens_per_request=300, stat="p95")
    def test_batch(infer):
        infer.generate(["a", "b"])
    """
)
VARIANTS = {"with_plugin": (), "without_plugin": ("-p", "no:inferbudget")}


def time_collect(folder: Path, env: Mapping[str, str], *extra: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``pytest --co`` process."""
    command = [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(folder: Path, env: Mapping[str, str], runs: int) -> dict[str, float]:
    """Median and fastest start-up of each variant, in ms, ABAB... then BABA... order."""
    for extra in VARIANTS.values():
        time_collect(folder, env, *extra)  # warm the file cache (and the bytecode cache)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for run in range(runs):
        names = list(VARIANTS) if run % 2 == 0 else list(reversed(VARIANTS))
        for name in names:
            wall_s, cpu_s = time_collect(folder, env, *VARIANTS[name])
            times[name].append(wall_s * 1000)
            cpu[name].append(cpu_s * 1000)
    with_ms = statistics.median(times["with_plugin"])
    without_ms = statistics.median(times["without_plugin"])
    with_cpu_ms = statistics.median(cpu["with_plugin"])
    without_cpu_ms = statistics.median(cpu["without_plugin"])
    return {
        "with_plugin_median_ms": round(with_ms, 1),
        "without_plugin_median_ms": round(without_ms, 1),
        "plugin_added_ms": round(with_ms - without_ms, 1),
        "plugin_added_min_ms": round(min(times["with_plugin"]) - min(times["without_plugin"]), 1),
        "plugin_added_cpu_ms": round(with_cpu_ms - without_cpu_ms, 1),
        "plugin_added_min_cpu_ms": round(min(cpu["with_plugin"]) - min(cpu["without_plugin"]), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as pycache:
        Path(folder, "test_suite.py").write_text(SUITE)
        Path(folder, "pytest.ini").write_text("[pytest]\nmarkers = budget\n")
        as_run = dict(os.environ)
        cached = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)} | {
            "PYTHONPYCACHEPREFIX": pycache
        }
        results = {
            "as_run": measure(Path(folder), as_run, args.runs),
            "cached_bytecode": measure(Path(folder), cached, args.runs),
        }
    print(
        json.dumps(
            {
                "benchmark": "collect_overhead",
                "runs": args.runs,
                "environment_writes_bytecode": not os.environ.get("PYTHONDONTWRITEBYTECODE"),
                **results,
                "target_ms": 20,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
