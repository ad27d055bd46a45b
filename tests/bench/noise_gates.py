"""Do the regression gates tell a slower build from a busier machine? A/A false alarms and
the detection of an injected 25% slowdown, with and without bursty background load.

Real pytest sessions on the real default model (loaded once, served to every session
through the ``pytest_inferbudget_make_engine`` hook), each making the same greedy requests
and writing its JSON report. Sessions of the unchanged engine (A) and of an engine made 25%
slower (B: after each call it spins the CPU for a quarter of the call's time and stretches
the call's timings to match, so both wall and CPU time grow, as slower code's would) run in
a shuffled order; half of each are run while ``../shared/tools/cpu-noise`` loads the
machine. Then every pair is compared with the plugin's own comparison, in two modes:

- ``per-request``: Mann-Whitney on the requests, Holm across metrics, no load awareness
  (``load_tolerance=1.0``), as the plugin judged before machine load was measured;
- ``load-aware``: the default (``contention.LOAD_TOLERANCE``);
- ``history``: load-aware, and held against the run-to-run variation of up to 8 other
  sessions of the unchanged engine (as saved runs on one hardware key would give).

A/A pairs (A against A) give the false-alarm rate per metric (a ``regression`` is a false
alarm); A against B pairs give the detection rate (a ``regression`` is a detection). Each
rate is split by the noise of the two sessions (quiet-quiet, noisy-noisy, mixed).

    flock /tmp/bench.lock python tests/bench/noise_gates.py [--sessions 8] [--requests 12]
        [--keep DIR]         # keep every session's JSON report there
    python tests/bench/noise_gates.py --analyze DIR    # recompute the rates from kept reports
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_inferbudget.compare import compare_runs
from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, Engine, EngineSpec, create_engine
from pytest_inferbudget.records import Request, Response

NOISE = Path(__file__).resolve().parents[3] / "shared" / "tools" / "cpu-noise"
METRICS = ("ms_per_request", "ttft_ms", "tpot_ms", "cpu_ms_per_request")
THRESHOLD = 0.10
"""Gate threshold on every timed metric, as CI would set it (--inferbudget-compare-fail)."""
SLOWDOWN = 0.25

SUITE = """
import pytest

PROMPTS = {prompts!r}

@pytest.mark.budget(ms_per_request=600000)
def test_requests(infer):
    for prompt in PROMPTS:
        infer(prompt, max_new_tokens=12)
"""


class SlowerEngine:
    """The real engine, 25% slower: spins the CPU for a quarter of each call's time."""

    def __init__(self, engine: Engine, slowdown: float) -> None:
        self._engine = engine
        self._slowdown = slowdown
        self.spec = engine.spec
        self.describe = engine.describe

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        start = time.perf_counter()
        responses = self._engine.generate(requests)
        extra_s = (time.perf_counter() - start) * self._slowdown
        end = time.process_time() + extra_s
        while time.process_time() < end:
            pass
        factor = 1.0 + self._slowdown
        return [
            dataclasses.replace(
                r,
                generations=tuple(
                    dataclasses.replace(
                        g,
                        e2e_ms=None if g.e2e_ms is None else g.e2e_ms * factor,
                        ttft_ms=None if g.ttft_ms is None else g.ttft_ms * factor,
                        tpot_ms=None if g.tpot_ms is None else g.tpot_ms * factor,
                    )
                    for g in r.generations
                ),
            )
            for r in responses
        ]

    def close(self) -> None:
        pass


class Serve:
    """Serves the loaded engine (or its slower twin) to a session through the hook."""

    def __init__(self, engine: Engine, slowdown: float) -> None:
        self.engine = engine
        self.slowdown = slowdown

    def pytest_inferbudget_make_engine(self, spec: EngineSpec) -> Engine | None:
        return SlowerEngine(self.engine, self.slowdown)


B_SPEC = DEFAULT_ENGINE_SPEC + "?device=cpu"
"""The second engine of the interleaved sessions: the same model, by another spec."""


class ServeAB:
    """Interleaved sessions: the session's engine unchanged, ``B_SPEC`` slowed or not."""

    def __init__(self, engine: Engine, slowdown: float) -> None:
        self.engine = engine
        self.slowdown = slowdown

    def pytest_inferbudget_make_engine(self, spec: EngineSpec) -> Engine | None:
        twin = SlowerEngine(self.engine, self.slowdown if str(spec) == B_SPEC else 0.0)
        twin.spec = str(spec)
        return twin


@contextlib.contextmanager
def noise(on: bool) -> Iterator[None]:
    """cpu-noise started outside this process tree (its shell exits at once, so init
    adopts it): the machine-load meter must see it as another job, not as our work."""
    if not on:
        yield
        return
    started = subprocess.run(
        [
            "sh",
            "-c",
            f'"{sys.executable}" "{NOISE}" --seconds 600 --workers 1 >/dev/null 2>&1 & echo $!',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(started.stdout.split()[-1])
    try:
        time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.2)


def run_session(
    engine: Engine, folder: Path, prompts: list[str], slow: bool, noisy: bool, ab: bool = False
) -> Any:
    folder.mkdir(parents=True)
    # one node id in every session, so that runs compare test by test; importlib mode
    # lets pytest.main import a same-named module from another folder in this process
    (folder / "test_session.py").write_text(SUITE.format(prompts=prompts))
    report = folder / "r.json"
    args = [
        str(folder),
        f"--rootdir={folder}",
        "--import-mode=importlib",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--inferbudget-json={report}",
    ]
    slowdown = SLOWDOWN if slow else 0.0
    plugin: Any = ServeAB(engine, slowdown) if ab else Serve(engine, slowdown)
    if ab:  # the same 10% on each timing as the run-against-run modes, not gating
        args.append(f"--inferbudget-ab={B_SPEC}")
        args += [f"--inferbudget-compare-fail={m}:{THRESHOLD}" for m in METRICS]
    with noise(noisy), contextlib.redirect_stdout(io.StringIO()) as output:
        code = pytest.main(args, plugins=[plugin])
    if code != 0 and not ab:
        sys.stderr.write(output.getvalue())
    if code != 0 and not (ab and code == 1):  # an interleaved gate may fail the test
        raise SystemExit(f"session in {folder} failed with exit code {code}")
    data = json.loads(report.read_text())
    if [t["nodeid"] for t in data["tests"]] != ["test_session.py::test_requests"]:
        raise SystemExit(f"unexpected tests in {report}: the runs would not compare")
    return data


def noise_kind(a: bool, b: bool) -> str:
    return "noisy-noisy" if a and b else "quiet-quiet" if not a and not b else "mixed"


HISTORY_RUNS = 8


def rates(
    pairs: list[tuple[Any, Any, str]], tolerance: float, history: list[Any] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    counts: dict[str, dict[str, list[int]]] = {}
    for baseline, candidate, kind in pairs:
        past = []
        if history is not None:  # other unchanged sessions, the baseline among them
            others = [r for r in history if r is not candidate and r is not baseline]
            past = [*others[: HISTORY_RUNS - 1], baseline]
        comparison = compare_runs(
            baseline,
            candidate,
            thresholds=dict.fromkeys(METRICS, THRESHOLD),
            resamples=0,
            load_tolerance=tolerance,
            history=past,
        )
        flagged = {c.metric for c in comparison.regressions}
        for group in (kind, "all"):
            per_metric = counts.setdefault(group, {m: [0, 0] for m in METRICS})
            for metric in METRICS:
                per_metric[metric][0] += metric in flagged
                per_metric[metric][1] += 1
    return {
        group: {m: {"rate": hits / n, "of": n} for m, (hits, n) in per_metric.items()}
        for group, per_metric in counts.items()
    }


def interleaved_rates(sessions: list[tuple[bool, bool, Any]]) -> dict[str, Any]:
    """Per noise setting, how often B was called a regression against A within one
    session: a false alarm when B is A unchanged, a detection when B is slower."""
    found: dict[str, dict[str, dict[str, list[int]]]] = {}
    for slow, noisy, report in sessions:
        kind = "detection" if slow else "false_alarms"
        flagged = {
            c["metric"]
            for t in report["ab_comparison"]["tests"]
            for c in t["changes"]
            if c["verdict"] == "regression"
        }
        for group in ("noisy" if noisy else "quiet", "all"):
            per_metric = found.setdefault(kind, {}).setdefault(group, {m: [0, 0] for m in METRICS})
            for metric in METRICS:
                per_metric[metric][0] += metric in flagged
                per_metric[metric][1] += 1
    return {
        kind: {
            group: {m: {"rate": hits / n, "of": n} for m, (hits, n) in per_metric.items()}
            for group, per_metric in groups.items()
        }
        for kind, groups in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=8, help="A sessions per noise setting")
    parser.add_argument("--slow-sessions", type=int, default=6, help="B sessions per setting")
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ab-sessions", type=int, default=6, help="interleaved sessions per setting (A/A, A/B)"
    )
    parser.add_argument("--only-ab", action="store_true", help="run the interleaved part only")
    parser.add_argument("--keep", type=Path, help="keep every session's report in this folder")
    parser.add_argument("--analyze", type=Path, help="only recompute from a --keep folder")
    args = parser.parse_args()
    if args.analyze:
        kept = json.loads((args.analyze / "sessions.json").read_text())
        print_rates(args, [(s["slow"], s["noisy"], s["report"]) for s in kept], kept_seconds=0.0)
        return
    rng = random.Random(args.seed)
    words = ["hi", "yes", "no", "a color", "a fruit", "a number", "an animal", "a day"]
    prompts = [f"Say {words[i % len(words)]}." for i in range(args.requests)]
    plan = [
        (slow, noisy)
        for slow, n in ((False, args.sessions), (True, args.slow_sessions))
        for noisy in (False, True)
        for _ in range(n)
    ]
    rng.shuffle(plan)
    ab_plan = [(slow, noisy) for slow in (False, True) for noisy in (False, True)]
    ab_plan = [p for p in ab_plan for _ in range(args.ab_sessions)]
    rng.shuffle(ab_plan)
    engine = create_engine(EngineSpec.parse(DEFAULT_ENGINE_SPEC))
    started = time.perf_counter()
    sessions: list[tuple[bool, bool, Any]] = []
    interleaved: list[tuple[bool, bool, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (slow, noisy) in enumerate([] if args.only_ab else plan):
            report = run_session(engine, Path(tmp, f"s{i}"), prompts, slow, noisy)
            sessions.append((slow, noisy, report))
        for i, (slow, noisy) in enumerate(ab_plan):
            report = run_session(engine, Path(tmp, f"ab{i}"), prompts, slow, noisy, ab=True)
            interleaved.append((slow, noisy, report))
    engine.close()
    print(json.dumps({"interleaved": interleaved_rates(interleaved)}, indent=2))
    if args.only_ab:
        return
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        kept = [{"slow": slow, "noisy": noisy, "report": r} for slow, noisy, r in sessions]
        (args.keep / "sessions.json").write_text(json.dumps(kept))
    print_rates(args, sessions, time.perf_counter() - started)


def print_rates(
    args: argparse.Namespace, sessions: list[tuple[bool, bool, Any]], kept_seconds: float
) -> None:
    a = [(noisy, r) for slow, noisy, r in sessions if not slow]
    b = [(noisy, r) for slow, noisy, r in sessions if slow]
    aa = [(x, y, noise_kind(nx, ny)) for (nx, x), (ny, y) in itertools.combinations(a, 2)]
    ab = [(x, y, noise_kind(nx, ny)) for (nx, x), (ny, y) in itertools.product(a, b)]
    loads = {
        "quiet": [r["machine"]["other_cpu_share"] for slow, noisy, r in sessions if not noisy],
        "noisy": [r["machine"]["other_cpu_share"] for slow, noisy, r in sessions if noisy],
    }
    modes = {"per-request": 1.0, "load-aware": None}
    result = {
        "sessions": len(sessions),
        "requests_per_session": args.requests,
        "threshold": THRESHOLD,
        "injected_slowdown": SLOWDOWN,
        "noise": f"{NOISE.name} --workers 1 (bursty, about half of one core)",
        "other_cpu_share": {k: sorted(round(v, 3) for v in vs) for k, vs in loads.items()},
        "seconds": round(kept_seconds, 1),
        "false_alarms": {},
        "detection": {},
    }
    from pytest_inferbudget.contention import LOAD_TOLERANCE

    for mode, tolerance in modes.items():
        tol = LOAD_TOLERANCE if tolerance is None else tolerance
        result["false_alarms"][mode] = rates(aa, tol)
        result["detection"][mode] = rates(ab, tol)
    unchanged = [r for _, r in a]
    result["false_alarms"]["history"] = rates(aa, LOAD_TOLERANCE, unchanged)
    result["detection"]["history"] = rates(ab, LOAD_TOLERANCE, unchanged)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
