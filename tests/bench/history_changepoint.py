"""Is an injected slowdown found at the right run of a history? Ten real pytest sessions
of the example efficiency suite on the default model, each saved under one storage folder
as a commit of its own; from the sixth on, the engine is made 30% slower (it spins the CPU
for that share of each call and stretches the call's timings to match). Then the history
of every test and timing metric is segmented by PELT, as ``inferbudget history`` does, and
the change points are printed beside where the slowdown began.

    flock /tmp/bench.lock python tests/bench/history_changepoint.py [--runs 10] [--at 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pytest_inferbudget.compare import hardware_key
from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, EngineSpec, create_engine
from pytest_inferbudget.records import CommitInfo, RunRecord
from pytest_inferbudget.report.history import history_series
from pytest_inferbudget.storage import load_run, save_run, saved_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from tests.bench.noise_gates import Serve

SUITE = Path(__file__).resolve().parents[2] / "examples" / "test_efficiency_suite.py"
TIMINGS = ("ms_per_request", "ttft_ms", "tpot_ms", "cpu_ms_per_request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--at", type=int, default=5, help="first slowed run (0-based)")
    parser.add_argument("--slowdown", type=float, default=0.30)
    args = parser.parse_args()
    engine = create_engine(EngineSpec.parse(DEFAULT_ENGINE_SPEC))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp, ".inferbudget")
        for i in range(args.runs):
            report = Path(tmp, f"r{i}.json")
            slow = args.slowdown if i >= args.at else 0.0
            argv = [str(SUITE), "-q", "-p", "no:cacheprovider", f"--inferbudget-json={report}"]
            with contextlib.redirect_stdout(io.StringIO()):
                pytest.main(argv, plugins=[Serve(engine, slow)])  # its xfail tests fail
            record = RunRecord.from_dict(json.loads(report.read_text()))
            record.commit = CommitInfo(f"{i:02d}" + "c" * 38, "main", f"2026-12-{i + 1:02d}", False)
            data = record.to_dict()
            save_run(storage, hardware_key(data), data, f"run{i}")
        runs = [
            RunRecord.from_dict(load_run(p))
            for key in {p.parent.name for p in storage.glob("*/*.json")}
            for p in saved_runs(storage, key)
        ]
    engine.close()
    series = [s for s in history_series(runs) if s.metric in TIMINGS]
    found = {
        f"{s.nodeid.split('::')[-1]} {s.metric}": [
            {"run": step.index, "change": round(step.factor - 1, 3)} for step in s.steps
        ]
        for s in series
    }
    at_right_run = sum(any(step.index == args.at for step in s.steps) for s in series)
    elsewhere = sum(any(step.index != args.at for step in s.steps) for s in series)
    print(
        json.dumps(
            {
                "runs": args.runs,
                "slowdown_from_run": args.at,
                "injected": args.slowdown,
                "series": len(series),
                "change_point_at_the_right_run": at_right_run,
                "series_with_a_change_elsewhere": elsewhere,
                "seconds": round(time.perf_counter() - started, 1),
                "change_points": found,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
