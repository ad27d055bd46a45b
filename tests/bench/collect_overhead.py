"""What the plugin adds to `pytest --co` start-up: with it, and with `-p no:inferbudget`.

Runs each variant as a fresh process, interleaved, many times, and prints JSON with the
median difference. Target: at most 20 ms (pytest-benchmark adds 43 ms here).

    python tests/bench/collect_overhead.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
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


def time_collect(folder: Path, *extra: str) -> float:
    command = [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *extra]
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "test_suite.py").write_text(SUITE)
        Path(folder, "pytest.ini").write_text("[pytest]\nmarkers = budget\n")
        variants = {"with_plugin": (), "without_plugin": ("-p", "no:inferbudget")}
        for extra in variants.values():
            time_collect(Path(folder), *extra)  # warm the file cache
        times: dict[str, list[float]] = {name: [] for name in variants}
        for run in range(args.runs):
            names = list(variants) if run % 2 == 0 else list(reversed(variants))
            for name in names:
                times[name].append(time_collect(Path(folder), *variants[name]))
    with_ms = statistics.median(times["with_plugin"]) * 1000
    without_ms = statistics.median(times["without_plugin"]) * 1000
    print(
        json.dumps(
            {
                "benchmark": "collect_overhead",
                "runs": args.runs,
                "with_plugin_median_ms": round(with_ms, 1),
                "without_plugin_median_ms": round(without_ms, 1),
                "plugin_added_ms": round(with_ms - without_ms, 1),
                "target_ms": 20,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
