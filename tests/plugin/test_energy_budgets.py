"""Energy and memory budgets through the plugin, on the real model.

Where no meter works (this project's CI: no RAPL, no NVML), a joules budget is reported
unmeasured; the tests of that path skip on a machine where NVML measures. To
drive the measured path end to end, ``RaplCounterDouble`` stands in for the CPU's RAPL
counters (the lowest layer: files in a powercap tree that a separate process advances at
a known power); the meter, the recorder and the budgets above it are the real code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ReuseEngine

ENERGY_TEST = """
import pytest

@pytest.mark.budget(joules_per_token=50, joules_per_request=500, peak_memory_mb=100000)
def test_energy(infer):
    infer.generate(["Name a color.", "Name a fruit."], max_new_tokens=16)
    infer("What is the capital of France? Answer in one word.", max_new_tokens=16)
"""


COUNTER_WRITER = """
import os, sys, time
zone, start, watts, max_range = sys.argv[1], *map(float, sys.argv[2:4]), int(sys.argv[4])
while True:
    value = int((time.monotonic() - start) * watts * 1e6) % max_range
    with open(os.path.join(zone, "energy_uj.tmp"), "w") as out:
        out.write(f"{value}\\n")
    os.replace(os.path.join(zone, "energy_uj.tmp"), os.path.join(zone, "energy_uj"))
    time.sleep(0.002)
"""


class RaplCounterDouble:
    """Stands in for RAPL, which no machine here exposes: one package zone whose
    ``energy_uj`` counter advances at ``watts``, wrapping like the real one. A separate
    process writes it (from the system-wide monotonic clock), so the model's threads in
    the test process cannot hold it back and make the counter lag the wall clock."""

    def __init__(self, root: Path, watts: float, max_range_uj: int = 10**12) -> None:
        self.zone = root / "intel-rapl:0"
        self.zone.mkdir(parents=True)
        (self.zone / "name").write_text("package-0\n")
        (self.zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (self.zone / "energy_uj").write_text("0\n")
        self.watts = watts
        self.max_range_uj = max_range_uj
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RaplCounterDouble:
        start = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-c", COUNTER_WRITER, str(self.zone), repr(start),
             repr(self.watts), str(self.max_range_uj)]
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()


@pytest.fixture
def rapl_double(tmp_path: Path) -> Iterator[RaplCounterDouble]:
    with RaplCounterDouble(tmp_path / "powercap", watts=20.0) as double:
        yield double


def skip_where_nvml_measures() -> None:
    """The unmeasured path needs a machine where NVML cannot measure (no NVIDIA GPU)."""
    from pytest_inferbudget.meters import NvmlMeter

    meter = NvmlMeter()
    try:
        measures, why = meter.available()
    finally:
        meter.close()
    if measures:
        pytest.skip(f"NVML measures on this machine ({why}): energy is not unmeasured here")


def test_energy_budget_is_skipped_as_unmeasured_here_and_fails_when_strict(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    skip_where_nvml_measures()
    pytester.makepyfile(ENERGY_TEST)
    result = pytester.runpytest("-rs", "--inferbudget-json=r.json", plugins=[reuse_engine])
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*joules_per_token*UNMEASURED*",
            "SKIPPED*inferbudget: unmeasured on this machine: joules_per_token, "
            "joules_per_request: energy unmeasured: no energy meter works here. NVML: *RAPL: *",
        ]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["meters"]["energy"] == "off"
    assert report["meters"]["energy_available"] is False
    verdicts = {b["key"]: b["verdict"] for b in report["tests"][0]["budgets"]}
    # memory is measured here; energy is not, and is not reported as zero
    assert verdicts == {
        "joules_per_token": "unmeasured",
        "joules_per_request": "unmeasured",
        "peak_memory_mb": "pass",
    }
    strict = pytester.runpytest("--inferbudget-strict", plugins=[reuse_engine])
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*joules_per_token*UNMEASURED*"])


def test_explicit_meter_that_cannot_measure_is_a_test_error(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    skip_where_nvml_measures()
    pytester.makepyfile(ENERGY_TEST)
    result = pytester.runpytest("--inferbudget-energy=nvml", plugins=[reuse_engine])
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*energy meter 'nvml'*cannot measure here*"])


def test_rapl_energy_flows_into_joules_budgets(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, rapl_double: RaplCounterDouble
) -> None:
    pytester.makeini(f"[pytest]\ninferbudget_rapl_root = {rapl_double.zone.parent}\n")
    pytester.makepyfile(ENERGY_TEST)
    result = pytester.runpytest(
        "--inferbudget-energy=rapl", "--inferbudget-json=r.json", plugins=[reuse_engine]
    )
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["meters"]["energy"] == "rapl"
    test = report["tests"][0]
    responses = [r for t in test["traces"] for r in t["responses"]]
    gross = sum(r["energy"]["gross_energy_j"] for r in responses)
    tokens = sum(g["completion_tokens"] for r in responses for g in r["generations"])
    budgets = {b["key"]: b for b in test["budgets"]}
    assert budgets["joules_per_token"]["measured"] == pytest.approx(gross / tokens)
    # the counter ran at 20 W: each call's energy is 20 W x its window, shared by tokens
    batch = responses[:2]
    window_s = batch[0]["energy"]["window_s"]
    assert sum(r["energy"]["gross_energy_j"] for r in batch) == pytest.approx(
        20.0 * window_s, rel=0.15
    )
    assert {r["energy"]["method"] for r in responses} == {"rapl"}
    # idle power was the same 20 W, so the net energy is close to zero
    assert abs(sum(r["energy"]["net_energy_j"] for r in responses)) < 0.2 * gross


def test_hardware_specific_limits_pick_this_machine(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(
            max_tokens=1000,
            hardware={"cuda:*H100*": {"max_tokens": 1}, "cpu:*": {"max_tokens": 2}},
        )
        def test_cpu_limit_applies(infer):
            infer("What is the capital of France? Answer in one word.", max_new_tokens=8)
        """
    )
    result = pytester.runpytest(plugins=[reuse_engine])
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*max_tokens*2 tokens*FAIL*"])
    result.stdout.no_fnmatch_line("*1000 tokens*")
