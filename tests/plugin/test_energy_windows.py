"""Energy windows the counter can resolve, through the plugin on the real model.

The engine is the real SmolLM2 engine; only NVML is replaced, at its lowest layer, by
:class:`~tests.unit.meters.nvml_doubles.TimedCounterDevice` (a test double that stands in
for NVML, which no machine here has: its counter steps every 100 ms of real time at
200 W). The inner run's conftest overrides the ``inferbudget_metering`` fixture with an
NVML meter on that device, as a conftest may; the meter measures the counter's update
period itself, and the window joining, the split, the budgets and the JSON report are
the package's real code.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import pytest

from tests.conftest import ReuseEngine

CONFTEST = """
import pytest

from pytest_inferbudget.meters import NvmlMeter
from pytest_inferbudget.recorder import Metering
from tests.unit.meters.nvml_doubles import TimedCounterDevice


@pytest.fixture(scope="session")
def inferbudget_metering():
    meter = NvmlMeter(devices=[TimedCounterDevice(0.1, watts=200.0)], idle_power_w=[20.0])
    ok, reason = meter.available()
    assert ok and "updates every" in reason, reason
    yield Metering(energy=meter)
    meter.close()
"""

TESTS = """
import pytest


@pytest.mark.budget(joules_per_token=1000, joules_per_request=1000)
def test_many_short_calls(infer):
    for i in range(12):
        infer(f"Say the number {i}.", max_new_tokens=2)


@pytest.mark.budget(joules_per_request=1000)
def test_one_tiny_call(infer):
    infer("Hi", max_new_tokens=1)
"""


def test_short_calls_join_into_resolved_windows_and_a_lone_tiny_call_stays_unmeasured(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-rs", "--inferbudget-json=r.json", plugins=[reuse_engine])
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*joules_per_request*too short for the counter*1 engine call*"]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    many, tiny = report["tests"]

    responses = [r for t in many["traces"] for r in t["responses"]]
    windows: dict[str, list[dict[str, object]]] = defaultdict(list)
    for response in responses:
        windows[response["energy"]["window_id"]].append(response["energy"])
    assert all(key.startswith("energy-window-") for key in windows)
    assert sum(len(shares) for shares in windows.values()) == 12
    assert any(len(shares) > 1 for shares in windows.values()), "no call was joined"
    for shares in windows.values():
        first = shares[0]
        assert first["window_calls"] == len(shares)
        assert math.fsum(s["share"] for s in shares) == pytest.approx(1.0)  # type: ignore[misc]
        gross = math.fsum(s["gross_energy_j"] for s in shares)  # type: ignore[misc]
        error = math.fsum(s["error_j"] for s in shares)  # type: ignore[misc]
        assert error <= 0.10 * gross  # reported only with its bound, within 10%
        # the counter ran at 200 W: the window's energy is 200 W x its length, within
        # the bound (one 100 ms update) and the reads' own timing
        assert abs(gross - 200.0 * first["window_s"]) <= error + 0.1 * gross  # type: ignore[operator]
    budgets = {b["key"]: b for b in many["budgets"]}
    assert budgets["joules_per_token"]["verdict"] == "pass"
    tokens = sum(g["completion_tokens"] for r in responses for g in r["generations"])
    gross_total = math.fsum(r["energy"]["gross_energy_j"] for r in responses)
    assert budgets["joules_per_token"]["measured"] == pytest.approx(gross_total / tokens)

    (lone,) = [r for t in tiny["traces"] for r in t["responses"]]
    assert lone["energy"]["window_calls"] == 1
    (verdict,) = tiny["budgets"]
    assert verdict["verdict"] == "unmeasured"
    assert "too short for the counter" in verdict["reason"]
