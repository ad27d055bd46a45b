"""Energy and memory budgets through the plugin, on the real model.

This machine has no RAPL and no NVML, so a joules budget is reported unmeasured. To
drive the measured path end to end, ``RaplCounterDouble`` stands in for the CPU's RAPL
counters (the lowest layer: files in a powercap tree that a thread advances at a known
power); the meter, the recorder and the budgets above it are the real code.
"""

from __future__ import annotations

import json
import threading
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


class RaplCounterDouble:
    """Stands in for RAPL, which no machine here exposes: one package zone whose
    ``energy_uj`` counter a thread advances at ``watts``, wrapping like the real one."""

    def __init__(self, root: Path, watts: float, max_range_uj: int = 10**12) -> None:
        self.zone = root / "intel-rapl:0"
        self.zone.mkdir(parents=True)
        (self.zone / "name").write_text("package-0\n")
        (self.zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        self.watts = watts
        self.max_range_uj = max_range_uj
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._write(0)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _write(self, value: int) -> None:
        temporary = self.zone / "energy_uj.tmp"
        temporary.write_text(f"{value % self.max_range_uj}\n")
        temporary.replace(self.zone / "energy_uj")

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self._write(int((time.perf_counter() - self._start) * self.watts * 1e6))

    def __enter__(self) -> RaplCounterDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def rapl_double(tmp_path: Path) -> Iterator[RaplCounterDouble]:
    with RaplCounterDouble(tmp_path / "powercap", watts=20.0) as double:
        yield double


def test_energy_budget_is_skipped_as_unmeasured_here_and_fails_when_strict(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
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
