"""A/A false alarms and a real slowdown, through `pytest --inferbudget-save/-compare`.

Runs the example efficiency suite (``examples/test_efficiency_suite.py``) beside a suite of
30 short greedy requests, several times, each as its own pytest session on the real model
that saves its run and gates against the previous one with ``--inferbudget-compare`` and
``--inferbudget-compare-fail``. Then every pair of those quiet runs is compared with the
plugin's own comparison (the code ``--inferbudget-compare`` runs), which gives the A/A
false-alarm rate per metric. Last, one more session runs while busy processes contend
for the CPU, gated against the last quiet run: its ms_per_request must be flagged and its
greedy token counts reported unchanged. Prints the figures as JSON.

This machine may be shared: each session also records how much CPU other processes used
while it ran (from /proc/stat, less the session's own CPU time). A "quiet" pair is two
sessions during which other processes used less than ``--quiet-cores`` cores; the
false-alarm rate is given over all pairs and over quiet pairs, since a session slowed by
someone else's work is a real slowdown, which the comparison is meant to flag.

    flock /tmp/inferbudget-cpu.lock python tests/bench/aa_regression.py [--runs 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from pytest_inferbudget.budget import COMPARED_KEYS
from pytest_inferbudget.compare import compare_runs
from pytest_inferbudget.storage import load_run

METRICS = [m for m, key in COMPARED_KEYS.items() if not key.accuracy]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "test_efficiency_suite.py"
SUITE = textwrap.dedent(
    """
    import pytest

    PROMPTS = ["Say hi.", "Name a color.", "Say yes.", "Name a fruit.", "Say no."]

    @pytest.mark.budget(ms_per_request=60000)
    def test_requests(infer):
        for _ in range(6):
            for prompt in PROMPTS:
                infer(prompt, max_new_tokens=6)
    """
)
TIMING_THRESHOLD = 0.10
"""Tolerated slowdown of a timing median, as CI would set it (--inferbudget-compare-fail)."""
THRESHOLDS = {
    "ms_per_request": TIMING_THRESHOLD,
    "ttft_ms": TIMING_THRESHOLD,
    "tpot_ms": TIMING_THRESHOLD,
    "tokens_per_request": 0.0,
}
GATES = [f"--inferbudget-compare-fail={metric}:{value}" for metric, value in THRESHOLDS.items()]


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_suite(folder: Path, name: str, *, compare: bool) -> tuple[Path, int, float, float]:
    """One pytest session saving its run as ``name``; with ``compare``, gated against the
    latest saved run. Returns the saved file, pytest's exit code, the wall time and the
    cores other processes kept busy meanwhile."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--inferbudget-save={name}",
        *(["--inferbudget-compare", *GATES] if compare else []),
        "test_suite.py",
        "test_efficiency_suite.py",
    ]
    start, busy, own = time.perf_counter(), busy_seconds(), children_cpu_seconds()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - start
    others = (busy_seconds() - busy) - (children_cpu_seconds() - own)
    if done.returncode not in (0, 1):
        raise SystemExit(f"pytest failed to run ({done.returncode}):\n{done.stdout}{done.stderr}")
    saved = [p for p in (folder / ".inferbudget").glob("*/*.json") if p.stem.endswith(name)]
    if len(saved) != 1:
        raise SystemExit(f"expected one saved run named {name}, found {saved}:\n{done.stdout}")
    return saved[0], done.returncode, wall_s, max(0.0, others) / wall_s


def rate(regressions: int, compared: int) -> float | None:
    return regressions / compared if compared else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=8, help="quiet sessions (A/A)")
    parser.add_argument("--busy", type=int, default=2, help="busy processes in the slow run")
    parser.add_argument(
        "--quiet-cores", type=float, default=0.15, help="other load of a quiet session, in cores"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_suite.py").write_text(SUITE)
        shutil.copy(EXAMPLE, folder / "test_efficiency_suite.py")
        quiet: list[dict[str, Any]] = []
        gated_exit_codes = []
        wall_s = []
        other_cores = []
        for i in range(args.runs):
            path, code, seconds, others = run_suite(folder, f"quiet{i}", compare=i > 0)
            quiet.append(load_run(path))
            wall_s.append(seconds)
            other_cores.append(others)
            if i > 0:
                gated_exit_codes.append(code)
        calm = [load <= args.quiet_cores for load in other_cores]
        tally: dict[str, dict[str, int]] = {
            scope: {f"{m}:{k}": 0 for m in METRICS for k in ("compared", "regressions")}
            for scope in ("all", "quiet")
        }
        alarms_seen = []
        for (i, baseline), (j, candidate) in itertools.combinations(enumerate(quiet), 2):
            comparison = compare_runs(baseline, candidate, thresholds=THRESHOLDS, resamples=0)
            for change in comparison.changes:
                regressed = change.verdict == "regression"
                for scope in ("all", "quiet") if calm[i] and calm[j] else ("all",):
                    tally[scope][f"{change.metric}:compared"] += 1
                    tally[scope][f"{change.metric}:regressions"] += regressed
                if regressed:
                    alarms_seen.append(
                        f"quiet{i}->quiet{j} {change.nodeid} {change.metric} "
                        f"{change.relative_change:+.0%} (p_holm {change.p_adjusted:.2g})"
                    )
        busy = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)
        ]
        try:
            slow_path, slow_code, slow_s, slow_others = run_suite(folder, "contended", compare=True)
        finally:
            for process in busy:
                process.kill()
                process.wait()
        slowed = compare_runs(quiet[-1], load_run(slow_path), thresholds=THRESHOLDS)
    print(
        json.dumps(
            {
                "benchmark": "aa_regression",
                "suites": ["30 greedy requests", "examples/test_efficiency_suite.py"],
                "thresholds": THRESHOLDS,
                "quiet_runs": args.runs,
                "quiet_run_wall_s": [round(s, 1) for s in wall_s],
                "quiet_run_other_load_cores": [round(c, 2) for c in other_cores],
                "quiet_cores_limit": args.quiet_cores,
                "aa_pairs": {
                    "all": len(quiet) * (len(quiet) - 1) // 2,
                    "quiet": sum(calm) * (sum(calm) - 1) // 2,
                },
                "false_alarm_rate": {
                    scope: {
                        m: rate(counts[f"{m}:regressions"], counts[f"{m}:compared"])
                        for m in METRICS
                    }
                    for scope, counts in tally.items()
                },
                "comparisons_per_metric": {
                    scope: counts[f"{next(iter(METRICS))}:compared"]
                    for scope, counts in tally.items()
                },
                "aa_alarms": alarms_seen,
                "aa_gated_pytest_exit_codes": gated_exit_codes,
                "contended_run": {
                    "busy_processes": args.busy,
                    "wall_s": round(slow_s, 1),
                    "other_load_cores": round(slow_others, 2),
                    "gated_pytest_exit_code": slow_code,
                    "changes": [
                        {
                            "test": c.nodeid,
                            "metric": c.metric,
                            "verdict": c.verdict,
                            "baseline_median": round(c.baseline_median, 2),
                            "candidate_median": round(c.candidate_median, 2),
                            "relative_change": round(c.relative_change, 3),
                            "p_adjusted": c.p_adjusted,
                        }
                        for c in slowed.changes
                    ],
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
