"""Speculative decoding on this machine: vLLM's n-gram proposer against plain decoding.

Runs a generated suite through the plugin with ``--inferbudget-ab`` (interleaved A/B in
one session, each engine call served by both engines in a random order): A is the plain
vLLM engine, B the same with ``speculative=ngram``. Two workloads: a repetitive one
(repeat a list, edit code: the answer copies the prompt, which n-gram lookup drafts) and
the shipped chat questions (``examples/data/short_questions.json``). Prints JSON per
workload: acceptance rate, accept length and what the i.i.d. model expects at that rate,
whether the greedy outputs were identical, and the paired ratio of ms_per_request B/A
(geometric mean of per-request ratios, bootstrap interval) with the speed-up A/B.

    flock /tmp/bench.lock python tests/bench/speculative.py [--rounds 2] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pytest_inferbudget.metrics.speculative import (
    accept_length,
    acceptance_rate,
    expected_tokens_per_step,
)

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ROOT / "examples" / "data" / "short_questions.json"

SUITE = """
import json
import pytest

REPETITIVE = {repetitive!r}
QUESTIONS = [q["prompt"] for q in json.load(open({questions!r}))["questions"]]

@pytest.mark.budget(ms_per_request=600000)
def test_repetitive(infer):
    for _ in range({rounds}):
        for prompt in REPETITIVE:
            infer(prompt, max_new_tokens=96)

@pytest.mark.budget(ms_per_request=600000)
def test_chat(infer):
    for prompt in QUESTIONS:
        infer(prompt, max_new_tokens=64)
"""

CODE = """def total_price(items):
    result = 0
    for item in items:
        result = result + item.price * item.count
    return result"""

REPETITIVE = [
    "Repeat this list exactly three times, comma separated: apple, banana, cherry, date, "
    "elderberry, fig, grape.",
    "Copy this sentence twice: The quick brown fox jumps over the lazy dog near the river bank.",
    f"Rename the variable result to total in this Python function and print the whole "
    f"function:\n\n{CODE}",
    f"Add a docstring to this Python function and print the whole function:\n\n{CODE}",
    "Write the numbers from 1 to 30, separated by commas.",
    "Repeat after me, word for word: red green blue, red green blue, red green blue.",
]


def speculation_of(traces: list[dict[str, Any]]) -> dict[str, Any]:
    drafted = accepted = steps = 0
    gamma = 0
    for trace in traces:
        for response in trace["responses"]:
            for generation in response["generations"]:
                counted = generation["speculation"]
                drafted += counted["drafted"]
                accepted += counted["accepted"]
                steps += counted["steps"]
                gamma = max(gamma, counted["gamma"])
    alpha = acceptance_rate(accepted, drafted)
    return {
        "drafted": drafted,
        "accepted": accepted,
        "steps": steps,
        "gamma": gamma,
        "acceptance_rate": alpha,
        "accept_length": accept_length(accepted, steps),
        "iid_expected_tokens_per_step": (
            None if alpha is None else expected_tokens_per_step(alpha, gamma)
        ),
    }


def texts(traces: list[dict[str, Any]]) -> list[str]:
    return [g["text"] for t in traces for r in t["responses"] for g in r["generations"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the repetitive set")
    parser.add_argument(
        "--dtype", default="bfloat16", help="vLLM dtype (bfloat16: its CPU default)"
    )
    args = parser.parse_args()
    plain = f"vllm:smollm2-135m-instruct?dtype={args.dtype}"
    ngram = plain + "&speculative=ngram&num_speculative_tokens=4"
    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        (where / "test_spec_bench.py").write_text(
            SUITE.format(repetitive=REPETITIVE, questions=str(QUESTIONS), rounds=args.rounds)
        )
        out = where / "out.json"
        command = [
            sys.executable, "-m", "pytest", "test_spec_bench.py", "-q", "-p", "no:cacheprovider",
            f"--inferbudget-engine={plain}", f"--inferbudget-ab={ngram}",
            f"--inferbudget-json={out}",
        ]  # fmt: skip
        done = subprocess.run(
            command, cwd=where, capture_output=True, text=True, env=dict(os.environ), check=False
        )
        if not out.exists():
            sys.exit(f"the suite wrote no report (exit {done.returncode}):\n{done.stdout[-3000:]}")
        report = json.loads(out.read_text())
    changes = {
        (t["nodeid"].split("::")[1], c["metric"]): c
        for t in report["ab_comparison"]["tests"]
        for c in t["changes"]
    }
    results: dict[str, Any] = {"a": plain, "b": ngram, "pytest_exit": done.returncode}
    for test in report["tests"]:
        name = test["nodeid"].split("::")[1]
        ms = changes.get((name, "ms_per_request"), {})
        ratio = None if not ms else 1.0 + ms["relative_change"]
        low = None if ms.get("ci_low") is None else 1.0 + ms["ci_low"]
        high = None if ms.get("ci_high") is None else 1.0 + ms["ci_high"]
        a_texts, b_texts = texts(test["traces"]), texts(test["ab_traces"])
        results[name] = {
            "requests": len(a_texts),
            "completion_tokens_a": sum(
                g["completion_tokens"]
                for t in test["traces"]
                for r in t["responses"]
                for g in r["generations"]
            ),
            "greedy_identical": sum(a == b for a, b in zip(a_texts, b_texts, strict=True)),
            **speculation_of(test["ab_traces"]),
            "ms_per_request_median_a": ms.get("baseline_median"),
            "ms_per_request_median_b": ms.get("candidate_median"),
            "ms_ratio_b_over_a": ratio,
            "ms_ratio_interval_95": [low, high],
            "speedup_a_over_b": None if ratio is None else 1.0 / ratio,
            "speedup_interval_95": [
                None if high is None else 1.0 / high,
                None if low is None else 1.0 / low,
            ],
            "p_value": ms.get("p_value"),
            "method": ms.get("method"),
            "verdict": ms.get("verdict"),
        }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
