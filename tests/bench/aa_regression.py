"""A/A false alarms and a real slowdown, through `pytest --inferbudget-save/-compare`.

Runs a small real-model suite several times as separate pytest sessions (each saving its
run), compares every consecutive pair with the plugin's comparison (the same code that
`--inferbudget-compare` uses), then runs once more with CPU contention from busy
processes and compares that run with the last quiet one. Prints JSON: the false-alarm
rate per metric over the A/A pairs, and the verdicts for the slowed run.

    python tests/bench/aa_regression.py [--runs 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from pytest_inferbudget.compare import METRICS, compare_runs
from pytest_inferbudget.storage import load_run

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
THRESHOLD = 0.10


def run_suite(folder: Path, name: str) -> Path:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--inferbudget-save={name}",
        "test_suite.py",
    ]
    subprocess.run(command, cwd=folder, check=True, capture_output=True)
    [saved] = [p for p in (folder / ".inferbudget").glob("*/*.json") if p.stem.endswith(name)]
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--busy", type=int, default=2, help="busy processes in the slow run")
    args = parser.parse_args()
    thresholds = dict.fromkeys(METRICS, THRESHOLD)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_suite.py").write_text(SUITE)
        runs = [load_run(run_suite(folder, f"quiet{i}")) for i in range(args.runs)]
        alarms = dict.fromkeys(METRICS, 0)
        pairs = list(itertools.pairwise(runs))
        for baseline, candidate in pairs:
            for change in compare_runs(baseline, candidate, thresholds=thresholds).regressions:
                alarms[change.metric] += 1
        busy = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)
        ]
        try:
            slow = load_run(run_suite(folder, "contended"))
        finally:
            for process in busy:
                process.kill()
        slowed = compare_runs(runs[-1], slow, thresholds=thresholds)
    print(
        json.dumps(
            {
                "benchmark": "aa_regression",
                "threshold": THRESHOLD,
                "aa_pairs": len(pairs),
                "false_alarm_rate": {m: alarms[m] / len(pairs) for m in METRICS},
                "contended_run": {
                    c.metric: {
                        "verdict": c.verdict,
                        "baseline_median": c.baseline_median,
                        "candidate_median": c.candidate_median,
                        "relative_change": c.relative_change,
                    }
                    for c in slowed.changes
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
