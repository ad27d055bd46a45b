"""Energy windows the counter can resolve: consecutive engine calls joined into one.

NVML's energy counter moves every 20-100 ms, while one engine call on a small model
lasts 0.1-0.5 s, so a window of one call can hide a large share of its energy in the
counter's steps (its ``error_j``). :class:`EnergyWindows` keeps one meter window open
across a test's consecutive engine calls, reads it after each call, and closes it as soon
as its stated bound is within :data:`~pytest_inferbudget.records.energy.MAX_RELATIVE_ERROR`
of both the gross and the net figure, or at the end of the test (or at the last call
before an engine fault), where a tail of calls that did not resolve joins the window
before it. The window's energy is then split between all its requests by completion
tokens, as one call's energy is, and each request's share names its window
(``window_id``, ``window_calls``, ``window_s``, ``error_j``).

Only meters that are :class:`~pytest_inferbudget.meters.base.WindowReader` with a
resolution (NVML's counter) join calls; every other meter keeps one window per call.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast, final

from pytest_inferbudget.meters.base import Meter, WindowReader, now_ns
from pytest_inferbudget.records import Response, Trace
from pytest_inferbudget.records.energy import MAX_RELATIVE_ERROR, EnergyMeasurement

__all__ = ["EnergyWindows", "token_shares", "within_bound"]


def token_shares(responses: Sequence[Response]) -> list[float]:
    """Each response's share of a window: by completion tokens, equal when none has any."""
    tokens = [r.completion_tokens for r in responses]
    total = sum(tokens)
    return [count / total if total else 1 / len(responses) for count in tokens]


def within_bound(
    measurement: EnergyMeasurement, resolution_s: float, bound: float = MAX_RELATIVE_ERROR
) -> bool:
    """Whether a window resolves its energy: its error bound is at most ``bound`` of the
    gross figure and of the net one (where idle power is known), or, for a meter that
    states no bound, the window spans ``1 / bound`` counter updates."""
    gross = measurement.gross_energy_j
    if gross is None:
        return False
    error = measurement.error_j
    if error is None:
        return measurement.window_s * bound >= resolution_s
    figures = [gross] if measurement.net_energy_j is None else [gross, measurement.net_energy_j]
    return all(error <= bound * abs(figure) for figure in figures)


@dataclass(slots=True)
class _Open:
    key: str
    calls: int = 0
    busy_ns: int = 0
    pending: list[Response] = field(default_factory=list)
    last: EnergyMeasurement | None = None
    """Its reading after its latest call."""
    span: EnergyMeasurement | None = None
    """Once resolved: its reading from its start to the next window's latest call."""


@final
class EnergyWindows:
    """Joins consecutive engine calls into windows the meter's counter resolves.

    The responses a joined call returns carry a pending (unmeasured) energy naming their
    window; :meth:`settled` later gives each its share of its window. A resolved window
    stays open at the meter while the next one fills: if the test ends before the next
    one resolves, the two become one window (read from the first's start), so a short
    tail of calls is never left unresolved beside a resolved window. The recorder swaps
    the shares into its traces (``infer.close_energy_window``).
    """

    def __init__(self, meter: Meter, *, bound: float = MAX_RELATIVE_ERROR) -> None:
        self._meter = meter
        self.bound = bound
        self._ids = itertools.count()
        self._current: _Open | None = None
        self._previous: _Open | None = None
        """The last resolved window: its shares wait until the current one resolves."""
        self._final: dict[int, tuple[Response, Response]] = {}

    @property
    def resolution_s(self) -> float | None:
        """The meter's resolution when it joins calls; None when every call is its own."""
        if not isinstance(self._meter, WindowReader):
            return None
        return self._meter.resolution_s

    @property
    def joining(self) -> bool:
        return self.resolution_s is not None

    def joined(self, call: Callable[[], list[Response]]) -> list[Response]:
        """Run one engine call inside the current window (opening one if none is)."""
        reader = cast("WindowReader", self._meter)
        if self._current is None:
            key = f"energy-window-{next(self._ids)}"
            self._meter.begin_window(key)
            self._current = _Open(key)
        window = self._current
        started = now_ns()
        try:
            responses = call()
        except BaseException:
            self.close()  # at its last reading: the failed call's energy goes to no request
            raise
        window.busy_ns += now_ns() - started
        window.calls += 1
        waiting = dataclasses.replace(
            EnergyMeasurement.unmeasured(
                0.0,
                f"pending: energy window {window.key} is still open (it joins engine calls "
                "until the counter resolves them); its share is filled in when the window "
                "closes, at the latest at the end of the test",
            ),
            window_id=window.key,
        )
        placeholders = [dataclasses.replace(r, energy=waiting) for r in responses]
        window.pending.extend(placeholders)
        window.last = reader.read_window(window.key)
        if self._previous is not None:  # the two as one, should the test end here
            self._previous.span = reader.read_window(self._previous.key)
        if within_bound(window.last, self.resolution_s or 0.0, self.bound):
            if self._previous is not None:
                reader.discard_window(self._previous.key)
                self._share_out(self._previous, self._previous.last)
            self._previous, self._current = window, None
        return placeholders

    def close(self) -> None:
        """Close the open windows at their last readings and share them out: a current
        window that did not resolve joins the resolved one before it. No-op if none."""
        current, previous = self._current, self._previous
        self._current = self._previous = None
        reader = cast("WindowReader", self._meter)
        for window in (previous, current):
            if window is not None:
                reader.discard_window(window.key)
        if previous is not None and current is not None and current.calls:
            merged = _Open(
                previous.key,
                previous.calls + current.calls,
                previous.busy_ns + current.busy_ns,
                previous.pending + current.pending,
            )
            self._share_out(merged, previous.span)
            return
        for window in (previous, current):
            if window is not None:
                self._share_out(window, window.last)

    def _share_out(self, window: _Open, reading: EnergyMeasurement | None) -> None:
        """Give each of the window's responses its share of ``reading``, by tokens."""
        if reading is None or not window.pending:
            return
        whole = dataclasses.replace(
            reading,
            window_id=window.key,
            window_calls=window.calls,
            note=_join_note(window, reading, self.resolution_s),
        )
        for placeholder, share in zip(window.pending, token_shares(window.pending), strict=True):
            settled = dataclasses.replace(placeholder, energy=whole.portion(share))
            self._final[id(placeholder)] = (placeholder, settled)

    def settled(self, response: Response) -> Response:
        """The response with its window's share, once its window closed; else itself."""
        found = self._final.get(id(response))
        return found[1] if found is not None and found[0] is response else response

    def settle_trace(self, trace: Trace) -> Trace:
        responses = tuple(self.settled(r) for r in trace.responses)
        if all(a is b for a, b in zip(responses, trace.responses, strict=True)):
            return trace
        return dataclasses.replace(trace, responses=responses)

    def forget(self) -> None:
        """Drop the closed windows' shares once the recorder took them."""
        self._final.clear()


def _join_note(window: _Open, reading: EnergyMeasurement, resolution_s: float | None) -> str:
    if window.calls < 2:
        return reading.note
    joined = (
        f"one energy window over {window.calls} engine calls ({reading.window_s:.3f} s, "
        f"{window.busy_ns / 1e9:.3f} s of it inside the calls): the counter (updates about "
        f"every {resolution_s or 0:g} s) did not resolve one call, so the window's energy is "
        "split by completion tokens; gross includes what the board drew between the calls, "
        "net removes idle power over the whole window"
    )
    return "; ".join(n for n in (joined, reading.note) if n)
