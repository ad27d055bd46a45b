"""Arrival schedules: seeded, with the mean gap and spread each process promises."""

from __future__ import annotations

import itertools
import statistics

import pytest

from pytest_inferbudget.load.schedule import (
    Arrival,
    LoadSpecError,
    build_schedule,
    prompt_of,
)


def gaps(times: tuple[float, ...]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    first = build_schedule(3, rate=4.0, num_requests=50, seed=7)
    assert first == build_schedule(3, rate=4.0, num_requests=50, seed=7)
    assert first.times != build_schedule(3, rate=4.0, num_requests=50, seed=8).times
    assert first.times[0] == 0.0 and len(first) == 50


@pytest.mark.parametrize(
    ("arrival", "burstiness", "cv"),
    [("poisson", 1.0, 1.0), ("gamma", 0.25, 2.0), ("gamma", 4.0, 0.5), ("constant", 1.0, 0.0)],
)
def test_gaps_have_mean_one_over_rate_and_the_spread_of_their_process(
    arrival: str, burstiness: float, cv: float
) -> None:
    # gamma(shape k, mean 1/rate) has coefficient of variation 1/sqrt(k); Poisson k = 1
    schedule = build_schedule(
        1, rate=5.0, num_requests=4001, arrival=arrival, burstiness=burstiness, seed=1
    )
    observed = gaps(schedule.times)
    mean = statistics.fmean(observed)
    assert mean == pytest.approx(0.2, rel=0.08)
    assert statistics.pstdev(observed) / mean == pytest.approx(cv, abs=0.1)


def test_duration_counts_measured_arrivals_after_the_warmup() -> None:
    schedule = build_schedule(2, rate=10.0, duration_s=3.0, warmup=4, seed=0)
    measured = schedule.times[schedule.warmup :]
    assert schedule.warmup == 4
    assert measured[-1] - measured[0] < 3.0
    assert 15 <= len(measured) <= 50  # about 30 at 10/s


def test_prompts_cycle_or_are_sampled_with_the_seed() -> None:
    cycled = build_schedule(3, rate=1.0, num_requests=7)
    assert cycled.prompts == (0, 1, 2, 0, 1, 2, 0)
    sampled = build_schedule(3, rate=1.0, num_requests=60, order="sample", seed=3)
    assert set(sampled.prompts) == {0, 1, 2}
    assert (
        sampled.prompts
        == build_schedule(3, rate=1.0, num_requests=60, order="sample", seed=3).prompts
    )
    assert prompt_of(cycled, 10, 3) == 1  # past the drawn ones: still cycled


def test_a_closed_loop_draws_no_times() -> None:
    schedule = build_schedule(2, arrival="closed", concurrency=4, duration_s=5.0, warmup=2)
    assert schedule.arrival is Arrival.CLOSED and not schedule.open_loop
    assert schedule.times == () and schedule.duration_s == 5.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 1.0}, "exactly one of duration_s"),
        ({"rate": 1.0, "duration_s": 1, "num_requests": 3}, "exactly one of duration_s"),
        ({"rate": 0, "num_requests": 3}, "needs rate= in requests per second"),
        ({"num_requests": 3}, "needs rate="),
        ({"rate": 1.0, "num_requests": 3, "arrival": "bursty"}, "arrival='bursty' is not one of"),
        ({"rate": 1.0, "num_requests": 3, "burstiness": 0.5}, "applies to arrival='gamma' only"),
        ({"rate": 1.0, "num_requests": 3, "concurrency": 2}, "arrival='closed' with concurrency"),
        ({"arrival": "closed", "num_requests": 3}, "needs concurrency="),
        ({"arrival": "closed", "concurrency": 2, "rate": 1.0, "num_requests": 3}, "not rate="),
        ({"rate": 1.0, "num_requests": 0}, "num_requests must be an integer >= 1"),
        ({"rate": 1.0, "num_requests": 2, "warmup": -1}, "warmup must be"),
        ({"rate": 1.0, "num_requests": 2, "order": "random"}, "order='random' is not one of"),
        ({"rate": 1e9, "duration_s": 1e3}, "over 100000"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LoadSpecError, match=message):
        build_schedule(2, **kwargs)  # type: ignore[arg-type]
