"""What the plugin adds to `pytest --co` start-up: with it, and with `-p no:inferbudget`.

Runs each variant as a fresh process, interleaved, many times, and prints JSON with the
median difference. Target: at most 20 ms.

Beside wall time it reports the processes' CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)``), which the other work on a shared machine disturbs far
less than it does wall time.

Two settings of Python's bytecode cache are measured, since they differ by the time it
takes to compile the plugin's sources: ``as_run`` inherits this environment (where
``PYTHONDONTWRITEBYTECODE=1`` is set, every start parses, assertion-rewrites and compiles
each plugin module again), and ``cached_bytecode`` gives the processes a warm private
``PYTHONPYCACHEPREFIX``, as an ordinary installation has.

With ``--references DIR`` (default ``/tmp/refplugins``) it measures pytest-benchmark and
pytest-codspeed in the same run, interleaved with ours, so that the plugin's cost can be
quoted as a ratio against theirs. Install them beside, not into, the environment:
``pip install --no-deps --target /tmp/refplugins pytest-benchmark pytest-codspeed`` (their
own dependencies, py-cpuinfo, rich, cffi and filelock, come from the venv; ``--no-deps``
keeps a second pytest out of the folder). Every variant then runs with DIR on
``PYTHONPATH``, the other plugins blocked with ``-p no:NAME``. A missing folder is skipped
and said so in the JSON.

    python tests/bench/collect_overhead.py [--runs 30] [--references DIR]
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
from typing import Any

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
REFERENCES = {"pytest_benchmark": "benchmark", "pytest_codspeed": "codspeed"}
"""Reference plugins: JSON name -> pytest11 entry-point name."""


def reference_variants() -> dict[str, tuple[str, ...]]:
    """Each plugin (ours and the references) alone, and none of them."""
    names = {"with_plugin": "inferbudget", **REFERENCES}
    blocked = {name: ("-p", f"no:{name}") for name in names.values()}

    def only(keep: str | None) -> tuple[str, ...]:
        return tuple(arg for name, args in blocked.items() if name != keep for arg in args)

    return {"without_plugin": only(None), **{key: only(name) for key, name in names.items()}}


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


def measure(
    folder: Path, env: Mapping[str, str], runs: int, variants: Mapping[str, tuple[str, ...]]
) -> dict[str, Any]:
    """Median and fastest start-up of each variant, in ms, ABC... then ...CBA order."""
    for extra in variants.values():
        time_collect(folder, env, *extra)  # warm the file cache (and the bytecode cache)
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for run in range(runs):
        names = list(variants) if run % 2 == 0 else list(reversed(list(variants)))
        for name in names:
            wall_s, cpu_s = time_collect(folder, env, *variants[name])
            times[name].append(wall_s * 1000)
            cpu[name].append(cpu_s * 1000)
    without_ms = statistics.median(times["without_plugin"])
    without_cpu_ms = statistics.median(cpu["without_plugin"])
    result: dict[str, Any] = {"without_plugin_median_ms": round(without_ms, 1)}
    for name in variants:
        if name == "without_plugin":
            continue
        with_ms = statistics.median(times[name])
        with_cpu_ms = statistics.median(cpu[name])
        prefix = "plugin" if name == "with_plugin" else name
        result |= {
            f"{name}_median_ms": round(with_ms, 1),
            f"{prefix}_added_ms": round(with_ms - without_ms, 1),
            f"{prefix}_added_min_ms": round(min(times[name]) - min(times["without_plugin"]), 1),
            f"{prefix}_added_cpu_ms": round(with_cpu_ms - without_cpu_ms, 1),
            f"{prefix}_added_min_cpu_ms": round(min(cpu[name]) - min(cpu["without_plugin"]), 1),
        }
    for reference in REFERENCES:
        theirs = result.get(f"{reference}_added_ms")
        if theirs is not None and theirs > 0:
            result[f"ratio_to_{reference}"] = round(result["plugin_added_ms"] / theirs, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--references",
        type=Path,
        default=Path("/tmp/refplugins"),
        help="folder holding pytest-benchmark and pytest-codspeed (pip install --target)",
    )
    args = parser.parse_args()
    references: dict[str, Any]
    variants: Mapping[str, tuple[str, ...]] = VARIANTS
    extra_env: dict[str, str] = {}
    missing = [name for name in REFERENCES if not (args.references / name).is_dir()]
    if missing:
        references = {
            "skipped": f"{', '.join(missing)} not found in {args.references}; install with "
            f"pip install --no-deps --target {args.references} pytest-benchmark pytest-codspeed"
        }
    else:
        variants = reference_variants()
        path = os.pathsep.join(filter(None, [str(args.references), os.environ.get("PYTHONPATH")]))
        extra_env = {"PYTHONPATH": path}
        references = {"folder": str(args.references), "measured": list(REFERENCES)}
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as pycache:
        Path(folder, "test_suite.py").write_text(SUITE)
        Path(folder, "pytest.ini").write_text("[pytest]\nmarkers = budget\n")
        as_run = dict(os.environ) | extra_env
        cached = {k: v for k, v in as_run.items() if k not in ("PYTHONDONTWRITEBYTECODE",)} | {
            "PYTHONPYCACHEPREFIX": pycache
        }
        results = {
            "as_run": measure(Path(folder), as_run, args.runs, variants),
            "cached_bytecode": measure(Path(folder), cached, args.runs, variants),
        }
    print(
        json.dumps(
            {
                "benchmark": "collect_overhead",
                "runs": args.runs,
                "environment_writes_bytecode": not os.environ.get("PYTHONDONTWRITEBYTECODE"),
                "references": references,
                **results,
                "target_ms": 20,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
