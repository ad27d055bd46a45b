"""Arrival schedules fixed by a seed: when each request is due and which prompt it sends.

Open loop, as ``vllm bench serve --request-rate`` draws it: the gaps between arrivals are
exponential at rate λ (``poisson``), gamma with shape ``burstiness`` and mean 1/λ
(``gamma``: vLLM's ``--burstiness``; 1 is Poisson, below 1 burstier, above 1 steadier), or
exactly 1/λ (``constant``); the first request is due at 0. Closed loop (``closed``):
``concurrency`` requests in flight, each sent when one finishes, so no times are drawn.
A schedule is pure data: the same arguments give the same schedule on any machine.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import TypeVar

from pytest_inferbudget.errors import InferBudgetError

_E = TypeVar("_E", bound=enum.StrEnum)

MAX_REQUESTS = 100_000
"""A schedule longer than this is a typo (a rate in requests per hour?), not a test."""


class Arrival(enum.StrEnum):
    """How requests arrive."""

    POISSON = "poisson"
    GAMMA = "gamma"
    CONSTANT = "constant"
    CLOSED = "closed"
    """A fixed number in flight (``concurrency=``), each sent as one finishes."""


class PromptOrder(enum.StrEnum):
    CYCLE = "cycle"
    """Prompt i of the run is prompt ``i % len(prompts)``."""
    SAMPLE = "sample"
    """Prompts drawn uniformly with the run's seed."""


class LoadSpecError(InferBudgetError, ValueError):
    """A load run was asked for with arguments that cannot make a schedule."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """Who is due when: ``times[i]`` (seconds from the start; empty in a closed loop) and
    ``prompts[i]``, the first ``warmup`` of them warming the engine up."""

    arrival: Arrival
    rate: float | None
    concurrency: int | None
    burstiness: float
    seed: int
    warmup: int
    times: tuple[float, ...]
    prompts: tuple[int, ...]
    duration_s: float | None
    """A closed loop runs this long after its warm-up (None: for ``len(prompts)`` requests)."""
    order: PromptOrder = PromptOrder.CYCLE

    @property
    def open_loop(self) -> bool:
        return self.arrival is not Arrival.CLOSED

    def __len__(self) -> int:
        return len(self.prompts)


def gaps(
    count: int, rate: float, arrival: Arrival, burstiness: float, rng: random.Random
) -> list[float]:
    """``count`` gaps between arrivals with mean ``1 / rate`` seconds."""
    if arrival is Arrival.CONSTANT:
        return [1.0 / rate] * count
    shape = 1.0 if arrival is Arrival.POISSON else burstiness
    return [rng.gammavariate(shape, 1.0 / (rate * shape)) for _ in range(count)]


def build_schedule(
    prompt_count: int,
    *,
    rate: float | None = None,
    concurrency: int | None = None,
    arrival: str = "poisson",
    burstiness: float = 1.0,
    duration_s: float | None = None,
    num_requests: int | None = None,
    warmup: int = 0,
    seed: int = 0,
    order: str = "cycle",
) -> Schedule:
    """The schedule of one load run; a bad argument raises :class:`LoadSpecError` naming it."""
    kind = _choice(Arrival, arrival, "arrival")
    prompt_order = _choice(PromptOrder, order, "order")
    if prompt_count < 1:
        raise LoadSpecError("load.run needs at least one prompt")
    if (duration_s is None) == (num_requests is None):
        raise LoadSpecError(
            "give exactly one of duration_s= (seconds of load) or num_requests= (how many)"
        )
    if duration_s is not None and not (_is_number(duration_s) and 0 < duration_s < math.inf):
        raise LoadSpecError(f"duration_s must be a number of seconds > 0, got {duration_s!r}")
    if num_requests is not None and not (_is_int(num_requests) and num_requests >= 1):
        raise LoadSpecError(f"num_requests must be an integer >= 1, got {num_requests!r}")
    if not (_is_int(warmup) and warmup >= 0):
        raise LoadSpecError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not (_is_number(burstiness) and burstiness > 0):
        raise LoadSpecError(f"burstiness must be a number > 0, got {burstiness!r}")
    if burstiness != 1.0 and kind is not Arrival.GAMMA:
        raise LoadSpecError(f"burstiness= applies to arrival='gamma' only, not {kind.value!r}")
    if not _is_int(seed):
        raise LoadSpecError(f"seed must be an integer, got {seed!r}")
    rng = random.Random(seed)
    if kind is Arrival.CLOSED:
        if rate is not None:
            raise LoadSpecError("a closed loop takes concurrency=, not rate=; drop one")
        if concurrency is None or not (_is_int(concurrency) and concurrency >= 1):
            raise LoadSpecError(
                f"arrival='closed' needs concurrency= an integer >= 1, got {concurrency!r}"
            )
        count = warmup + (num_requests or 0)
        times: tuple[float, ...] = ()
    else:
        if concurrency is not None:
            raise LoadSpecError(
                f"arrival={kind.value!r} is open loop and takes rate=; for a fixed number in "
                "flight use arrival='closed' with concurrency="
            )
        if rate is None or not (_is_number(rate) and 0 < rate < math.inf):
            raise LoadSpecError(
                f"arrival={kind.value!r} needs rate= in requests per second > 0, got {rate!r}"
            )
        times = _open_times(
            kind, float(rate), float(burstiness), warmup, num_requests, duration_s, rng
        )
        count = len(times)
    if count > MAX_REQUESTS:
        raise LoadSpecError(
            f"the schedule holds {count} requests, over {MAX_REQUESTS}; lower rate or duration_s"
        )
    prompt_rng = random.Random(f"prompts-{seed}")
    if prompt_order is PromptOrder.CYCLE:
        prompts = tuple(i % prompt_count for i in range(count))
    else:
        prompts = tuple(prompt_rng.randrange(prompt_count) for _ in range(count))
    return Schedule(
        arrival=kind,
        rate=None if rate is None else float(rate),
        concurrency=concurrency,
        burstiness=float(burstiness),
        seed=seed,
        warmup=warmup,
        times=times,
        prompts=prompts,
        duration_s=duration_s if kind is Arrival.CLOSED else None,
        order=prompt_order,
    )


def prompt_of(schedule: Schedule, index: int, prompt_count: int) -> int:
    """The prompt of request ``index``; past the drawn ones (a closed loop run for a
    duration has no length in advance) cycled, or drawn with the run's seed."""
    if index < len(schedule.prompts):
        return schedule.prompts[index]
    if schedule.order is PromptOrder.CYCLE:
        return index % prompt_count
    return random.Random(f"prompts-{schedule.seed}-{index}").randrange(prompt_count)


def _open_times(
    kind: Arrival,
    rate: float,
    burstiness: float,
    warmup: int,
    num_requests: int | None,
    duration_s: float | None,
    rng: random.Random,
) -> tuple[float, ...]:
    """Warm-up arrivals first, then the measured ones: ``num_requests`` of them, or all
    that fall within ``duration_s`` of the first measured arrival."""
    times = [0.0]
    wanted = warmup + (num_requests or 0)
    while len(times) <= MAX_REQUESTS and (num_requests is None or len(times) < wanted):
        gap = gaps(1, rate, kind, burstiness, rng)[0]
        if (
            duration_s is not None
            and len(times) > warmup
            and times[-1] + gap - times[warmup] >= duration_s
        ):
            break
        times.append(times[-1] + gap)
    if num_requests is not None:
        times = times[: warmup + num_requests]
    return tuple(times)


def _choice(kind: type[_E], value: object, name: str) -> _E:
    options = ", ".join(repr(m.value) for m in kind)
    if not isinstance(value, str) or value not in {m.value for m in kind}:
        raise LoadSpecError(f"{name}={value!r} is not one of {options}")
    return kind(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
