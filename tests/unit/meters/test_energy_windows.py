"""Energy windows the counter can resolve: a test's engine calls joined into one window.

NVML is replaced at its lowest layer by :class:`SteppingCounterDevice` (a test double
that stands in for NVML: a counter stepping every 100 ms of a :class:`SimulatedClock`,
which stands in for the clock the meter reads), and the GPU engine by
:class:`GpuEngineDouble`, whose calls take a fixed time on that clock (no GPU here). The
meter, the window joining, the recorder, the split and the budgets above them are the
package's real code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from pytest_inferbudget.budget import BudgetLimit
from pytest_inferbudget.meters import EnergyMeasurement, NvmlMeter, nvml as nvml_module, windows
from pytest_inferbudget.recorder import Metering, Recorder
from pytest_inferbudget.records import EngineInfo, Generation, Request, Response, Trace
from pytest_inferbudget.records.energy import MAX_RELATIVE_ERROR
from pytest_inferbudget.verdicts import evaluate, samples_of
from pytest_inferbudget.vocabulary import EnergyMethod, Verdict
from tests.unit.meters.nvml_doubles import (
    RecordedNvmlDevice,
    SimulatedClock,
    SteppingCounterDevice,
)

PERIOD_S = 0.1
WATTS = 200.0


class GpuEngineDouble:
    """Stands in for an engine on a GPU (none here): each call takes ``call_s`` of the
    simulated clock and returns one completion per request of ``tokens[i]`` tokens,
    cycling through them."""

    spec = "gpu-engine-double"

    def __init__(self, clock: SimulatedClock, call_s: float, tokens: Sequence[int]) -> None:
        self.clock = clock
        self.call_s = call_s
        self.tokens = list(tokens)
        self.calls = 0

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        self.clock.advance(self.call_s)
        responses = []
        for request in requests:
            count = self.tokens[self.calls % len(self.tokens)]
            self.calls += 1
            generation = Generation("x " * count, 4, count, "stop")
            responses.append(Response(request, (generation,), self.spec))
        return responses

    def describe(self) -> EngineInfo:
        return {"engine": self.spec}

    def close(self) -> None:
        pass


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimulatedClock:
    simulated = SimulatedClock()
    monkeypatch.setattr(nvml_module, "now_ns", simulated)
    monkeypatch.setattr(windows, "now_ns", simulated)
    return simulated


def measured_meter(clock: SimulatedClock, **options: object) -> NvmlMeter:
    """A meter that measures the counter's update period on the device when it opens."""
    device = SteppingCounterDevice(clock, period_s=PERIOD_S, watts=WATTS, phase_s=0.03)
    meter = NvmlMeter(devices=[device], **options)  # type: ignore[arg-type]
    clock.tick_s = 0.002  # the probe polls the counter; each read moves the clock 2 ms
    ok, reason = meter.available()
    clock.tick_s = 0.0
    assert ok, reason
    return meter


def recorder_on(meter: NvmlMeter, engine: GpuEngineDouble) -> Recorder:
    return Recorder(engine, metering=Metering(energy=meter))


def by_window(responses: Sequence[Response]) -> dict[str, list[EnergyMeasurement]]:
    groups: dict[str, list[EnergyMeasurement]] = {}
    for response in responses:
        assert response.energy is not None and response.energy.window_id is not None
        groups.setdefault(response.energy.window_id, []).append(response.energy)
    return groups


def test_the_update_period_is_measured_and_joins_calls_shorter_than_it_resolves(
    clock: SimulatedClock,
) -> None:
    meter = measured_meter(clock)
    assert meter.counter_update_period_s == pytest.approx(PERIOD_S)
    assert meter.resolution_s == pytest.approx(PERIOD_S)
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[3, 7, 12])
    infer = recorder_on(meter, engine)
    for _ in range(40):
        infer("q")
    infer.close_energy_window()

    groups = by_window(infer.responses)
    closed = [g for g in groups.values() if g[0].relative_error is not None]
    resolved = [g for g in closed if g[0].relative_error <= MAX_RELATIVE_ERROR]  # type: ignore[operator]
    assert len(resolved) >= 2, "40 calls of one update each hold several resolved windows"
    one_call_bound = PERIOD_S * WATTS  # the counter may hide one update at full power
    for shares in resolved:
        whole_window = shares[0]
        assert whole_window.window_calls == len(shares)
        # a bound within 10% needs about 1 / 0.10 updates of energy: ten calls of 0.1 s
        assert len(shares) >= math.floor(1 / MAX_RELATIVE_ERROR)
        gross = math.fsum(s.gross_energy_j for s in shares)  # type: ignore[misc]
        error = math.fsum(s.error_j for s in shares)  # type: ignore[misc]
        assert error == pytest.approx(one_call_bound)
        assert error <= MAX_RELATIVE_ERROR * gross
        # the counter's steps: the window's energy is the true one within its bound
        assert abs(gross - WATTS * whole_window.window_s) <= error + 1e-9
        assert whole_window.window_s == pytest.approx(len(shares) * 0.1)
        assert math.fsum(s.share for s in shares) == pytest.approx(1.0)  # type: ignore[misc]
        assert all(s.method is EnergyMethod.COUNTER for s in shares)
    # every resolved request is judged, with its window's bound
    judged = [r for r in infer.responses if r.energy and r.energy.relative_error is not None]
    assert samples_of("joules_per_request", infer.traces) == [
        r.energy_j
        for r in judged
        if r.energy.relative_error <= MAX_RELATIVE_ERROR  # type: ignore[union-attr,operator]
    ]


def test_a_window_is_split_by_completion_tokens_and_its_shares_sum_to_it(
    clock: SimulatedClock,
) -> None:
    meter = measured_meter(clock)
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[2, 5, 11, 1])
    infer = recorder_on(meter, engine)
    for _ in range(15):
        infer.generate(["a", "b"])  # batches of two requests per call
    infer.close_energy_window()

    for window_id, shares in by_window(infer.responses).items():
        members = [r for r in infer.responses if r.energy and r.energy.window_id == window_id]
        tokens = [r.completion_tokens for r in members]
        gross = math.fsum(r.energy_j for r in members)  # type: ignore[misc]
        for response, count in zip(members, tokens, strict=True):
            assert response.energy_j == pytest.approx(gross * count / sum(tokens))
        assert shares[0].window_calls == len(members) // 2


def test_idle_power_is_subtracted_over_the_whole_window_gaps_included(
    clock: SimulatedClock,
) -> None:
    meter = measured_meter(clock, idle_power_w=[50.0])
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[4])
    infer = recorder_on(meter, engine)
    for _ in range(30):
        infer("q")
        clock.advance(0.05)  # the test's own code between calls
    infer.close_energy_window()

    for shares in by_window(infer.responses).values():
        whole = shares[0]
        gross = math.fsum(s.gross_energy_j for s in shares)  # type: ignore[misc]
        net = math.fsum(s.net_energy_j for s in shares)  # type: ignore[misc]
        # a joined window spans the gaps between calls: idle power over all of it
        assert whole.window_s == pytest.approx(len(shares) * 0.15 - 0.05)
        assert net == pytest.approx(gross - 50.0 * whole.window_s)
        if len(shares) > 1:
            assert "between the calls" in whole.note


def test_net_energy_needs_its_own_bound_and_says_so(clock: SimulatedClock) -> None:
    # the board draws 200 W and idled at 190 W: net is a twentieth of gross, so the
    # counter's one-update bound is far over 10% of it in any window this test makes
    meter = measured_meter(clock, idle_power_w=[190.0])
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[4])
    infer = recorder_on(meter, engine)
    for _ in range(12):
        infer("q")
    infer.close_energy_window()
    assert len(by_window(infer.responses)) == 1  # gross resolved, net not: still joining
    gross = evaluate([BudgetLimit("joules_per_request", 1e6, "mean")], infer.traces)[0]
    net_limit = BudgetLimit("joules_per_request", 1e6, "mean", energy="net")
    net = evaluate([net_limit], infer.traces)[0]
    assert gross.verdict is Verdict.PASS
    assert net.verdict is Verdict.UNMEASURED
    assert "net energy is not resolved" in net.reason


def test_calls_too_short_and_too_few_stay_unmeasured_with_the_reason(
    clock: SimulatedClock,
) -> None:
    meter = measured_meter(clock)
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[5])
    infer = recorder_on(meter, engine)
    for _ in range(3):
        infer("q")
    pending = infer.responses[0].energy
    assert pending is not None and not pending.measured and "pending" in pending.note
    infer.close_energy_window()

    (shares,) = by_window(infer.responses).values()
    assert shares[0].window_calls == 3 and shares[0].measured
    assert shares[0].relative_error is not None
    assert shares[0].relative_error > MAX_RELATIVE_ERROR
    results = evaluate(
        [
            BudgetLimit("joules_per_request", 1e6, "mean"),
            BudgetLimit("joules_per_token", 1e6, "total"),
        ],
        infer.traces,
    )
    for result in results:
        assert result.verdict is Verdict.UNMEASURED
        assert "too short for the counter" in result.reason
        assert "3 engine calls" in result.reason


def test_a_window_left_open_by_an_earlier_test_is_not_joined(clock: SimulatedClock) -> None:
    meter = measured_meter(clock)
    metering = Metering(energy=meter)
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[5])
    first = Recorder(engine, metering=metering)
    first("q")  # never closed: the test errored before the plugin recorded it
    second = Recorder(engine, metering=metering)
    for _ in range(12):
        second("q")
    second.close_energy_window()
    windows_seen = by_window(second.responses)
    left_open = first.responses[0].energy
    assert left_open is not None and left_open.window_id not in windows_seen
    assert sum(s[0].window_calls or 0 for s in windows_seen.values()) == 12


def test_an_engine_fault_closes_the_window_at_its_last_reading(clock: SimulatedClock) -> None:
    meter = measured_meter(clock)
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[5])
    infer = recorder_on(meter, engine)
    infer("q")
    infer("q")
    engine.tokens = []  # the next call fails inside the engine
    with pytest.raises(Exception, match="engine gpu-engine-double failed"):
        infer("q")
    infer.close_energy_window()
    (shares,) = by_window(infer.responses).values()
    assert shares[0].window_calls == 2
    assert shares[0].window_s == pytest.approx(0.2)  # not the failed call's time


def test_interleaved_calls_and_power_sampling_keep_one_window_per_call(
    clock: SimulatedClock,
) -> None:
    device = SteppingCounterDevice(clock, period_s=PERIOD_S, watts=WATTS)
    meter = NvmlMeter(devices=[device], counter_update_period_s=PERIOD_S)
    assert meter.available()[0]
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[5])
    metering = Metering(energy=meter)
    metering.call(engine, [Request("q")], join=False)  # an A/B call: never joined
    response = metering.call(engine, [Request("q")], join=False)[0]
    assert response.energy is not None and response.energy.window_calls == 1
    assert response.energy.window_id is not None
    assert response.energy.window_id.startswith("engine-call-")
    # a GPU without the counter is power-sampled: no steps to beat, nothing joined
    sampled = NvmlMeter(devices=[RecordedNvmlDevice(energy_mj=None)])
    assert sampled.available()[0] and sampled.resolution_s is None
    sampled_metering = Metering(energy=sampled)
    assert sampled_metering.energy_windows is not None
    assert not sampled_metering.energy_windows.joining
    sampled.close()


def test_window_fields_survive_json() -> None:
    whole = EnergyMeasurement(
        10.0, 4.0, 6.0, 1.2, EnergyMethod.COUNTER, error_j=0.5, window_id="w-1", window_calls=7
    )
    assert EnergyMeasurement.from_dict(whole.to_dict()) == whole
    share = whole.portion(0.25)
    assert (share.window_id, share.window_calls, share.window_s) == ("w-1", 7, 1.2)
    assert Trace((Response(Request("q"), (), "e", energy=share),)).bounded_energy() == 2.5
    with pytest.raises(Exception, match="window_calls"):
        EnergyMeasurement(1.0, None, None, 1.0, EnergyMethod.COUNTER, window_calls=0)


def test_a_tail_too_short_to_resolve_joins_the_window_before_it(clock: SimulatedClock) -> None:
    meter = measured_meter(clock)
    engine = GpuEngineDouble(clock, call_s=0.1, tokens=[6])
    infer = recorder_on(meter, engine)
    for _ in range(25):  # ten calls resolve a window: 10, 10 and a tail of 5
        infer("q")
    infer.close_energy_window()

    groups = list(by_window(infer.responses).values())
    assert [len(g) for g in groups] == [g[0].window_calls for g in groups]
    assert sum(len(g) for g in groups) == 25
    assert min(len(g) for g in groups) >= math.floor(1 / MAX_RELATIVE_ERROR)
    assert all(g[0].relative_error <= MAX_RELATIVE_ERROR for g in groups)  # type: ignore[operator]
    (per_token,) = evaluate([BudgetLimit("joules_per_token", 1e6, "total")], infer.traces)
    assert per_token.verdict is Verdict.PASS and per_token.samples == 25
    total = math.fsum(r.energy_j for r in infer.responses)  # type: ignore[misc]
    assert per_token.measured == pytest.approx(total / (25 * 6))


def test_the_measured_update_period_goes_in_the_runs_meter_info(
    clock: SimulatedClock, pytester: pytest.Pytester
) -> None:
    from pytest_inferbudget.config import Settings
    from pytest_inferbudget.meters import NullMeter
    from pytest_inferbudget.run import InferBudgetRun

    run = InferBudgetRun(pytester.parseconfig(), Settings(engine="e", json_path=None))
    run.note_meter(measured_meter(clock))
    assert run.meters["energy"] == "nvml" and run.meters["energy_available"] is True
    assert run.meters["energy_update_period_s"] == pytest.approx(PERIOD_S)
    run.note_meter(NullMeter("off"))
    assert "energy_update_period_s" not in run.meters
