"""Idealized runtime: a request's latency predicted from its token counts alone.

The model is HELM's (Narayanan et al. 2023, "Cheaply Evaluating Inference Efficiency
Metrics for Autoregressive Transformer APIs"; ``efficiency_metrics.py`` in HELM)::

    runtime(p, o) = f(p) + g * (o - 1)        for o > 0 output tokens
    runtime(p, 0) = f(p)                      (HELM's convention: nothing decoded)

``f(p)`` is the time to encode a prompt of ``p`` tokens and emit the first output
token; ``g`` is the time of each further output token. ``f`` is tabulated at a few
prompt lengths (HELM's: 1, 256, 512, 1024, 1536) and read by scaling the entry of
the next tabulated length at or above ``p`` linearly: ``f(p) = f(k) * p / k`` with
``k`` the smallest tabulated length ``>= p``. Beyond the largest tabulated length
``K`` the same scaling is applied to ``f(K)`` (HELM does the same): prompt encoding
is assumed to run at the throughput measured at ``K``, which ignores attention's
growth with context and so underestimates very long prompts a little.

The *denoised* variant adds a fixed per-request ``overhead_ms`` (tokenization,
scheduling, an HTTP round trip) that is not scaled with the prompt:
``runtime = overhead + f(p) + g * (o - 1)``.

A profile is fitted once per (model, hardware) by :func:`calibrate`, which times a
grid of requests on an engine, and :func:`fit_profile`, which fits ``f`` and ``g`` by
least squares (see its docstring for the method and why). The profile then predicts
any request's runtime from its token counts (:func:`predict_ms`), free of contention
and of the machine the test happens to run on.

Only the standard library is imported here; the engine is whatever the caller passes.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from pytest_inferbudget import hardware
from pytest_inferbudget.engines import EngineSpec, Progress
from pytest_inferbudget.errors import (
    CalibrationError,
    EngineSpecError,
    FitError,
    ProfileError,
    ReportError,
)
from pytest_inferbudget.records import Request
from pytest_inferbudget.storage import read_json, write_json_atomic

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine

__all__ = [
    "DEFAULT_OUTPUT_LENGTHS",
    "DEFAULT_REPEATS",
    "FIT_METHODS",
    "FIT_STATISTICS",
    "PROFILE_SCHEMA_VERSION",
    "PROMPT_LENGTHS",
    "QUICK_OUTPUT_LENGTHS",
    "QUICK_PROMPT_LENGTHS",
    "QUICK_REPEATS",
    "CalibrationError",
    "CalibrationRow",
    "FitDiagnostics",
    "FitError",
    "ProfileError",
    "RuntimeFit",
    "RuntimeProfile",
    "TimingSample",
    "build_profile",
    "calibrate",
    "fit_profile",
    "hardware_key",
    "predict_ms",
]

PROMPT_LENGTHS: Final = (1, 256, 512, 1024, 1536)
"""HELM's tabulated prompt lengths for the prompt-encoding time ``f(p)``."""

QUICK_PROMPT_LENGTHS: Final = (1, 64, 256)
"""Prompt lengths of a quick calibration: seconds instead of minutes on a CPU."""

DEFAULT_OUTPUT_LENGTHS: Final = (8, 32)
QUICK_OUTPUT_LENGTHS: Final = (8, 32)
DEFAULT_REPEATS: Final = 3
QUICK_REPEATS: Final = 2

FIT_METHODS: Final = ("auto", "split", "joint")

FIT_STATISTICS: Final = ("median", "mean")
"""How repeats of one grid cell are combined before the fit (see :func:`fit_profile`)."""

PROFILE_SCHEMA_VERSION: Final = 1
"""Version of the saved profile layout; bumped on any incompatible change."""


@final
@dataclass(frozen=True, slots=True)
class TimingSample:
    """One timed request: its token counts and latencies in milliseconds.

    ``ttft_ms`` (time to the first output token) is ``None`` where the engine does not
    stream; the fit then uses ``e2e_ms`` alone.
    """

    prompt_tokens: int
    output_tokens: int
    ttft_ms: float | None
    e2e_ms: float

    def __post_init__(self) -> None:
        problems = []
        if _not_int(self.prompt_tokens) or self.prompt_tokens < 1:
            problems.append(f"prompt_tokens must be an integer >= 1, got {self.prompt_tokens!r}")
        if _not_int(self.output_tokens) or self.output_tokens < 1:
            problems.append(f"output_tokens must be an integer >= 1, got {self.output_tokens!r}")
        if not _finite_nonnegative(self.e2e_ms):
            problems.append(f"e2e_ms must be a finite number >= 0, got {self.e2e_ms!r}")
        if self.ttft_ms is not None:
            if not _finite_nonnegative(self.ttft_ms):
                problems.append(f"ttft_ms must be a finite number >= 0, got {self.ttft_ms!r}")
            elif _finite_nonnegative(self.e2e_ms) and self.ttft_ms > self.e2e_ms:
                problems.append(f"ttft_ms {self.ttft_ms} is after e2e_ms {self.e2e_ms}")
        if problems:
            raise ValueError("; ".join(problems))


@final
@dataclass(frozen=True, slots=True)
class FitDiagnostics:
    """How well the fitted model explains the samples it was fitted on.

    ``residuals_ms`` are ``measured e2e - predicted`` per sample, in the samples' order;
    ``r_squared`` is for the end-to-end latency (``None`` when the samples' latencies do
    not vary, so it is undefined). With the ``split`` method ``r_squared_prompt`` and
    ``r_squared_decode`` score the two parts apart (TTFT against ``f``, the decode time
    ``e2e - ttft`` against ``g * (o - 1)``); with ``joint`` they are ``None``.
    """

    method: str
    """``split`` (f from TTFT, g from the decode time) or ``joint`` (both from e2e)."""
    samples: int
    samples_per_length: dict[int, int]
    """Samples that fell in each tabulated length's bracket ``(previous, length]``."""
    residuals_ms: tuple[float, ...]
    rmse_ms: float
    max_abs_residual_ms: float
    r_squared: float | None
    r_squared_prompt: float | None = None
    r_squared_decode: float | None = None
    statistic: str = "mean"
    """``median``: fitted to each grid cell's median; ``mean``: to every sample (least
    squares, which a profile saved before the choice existed used)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "statistic": self.statistic,
            "samples": self.samples,
            "samples_per_length": {str(k): v for k, v in self.samples_per_length.items()},
            "residuals_ms": list(self.residuals_ms),
            "rmse_ms": self.rmse_ms,
            "max_abs_residual_ms": self.max_abs_residual_ms,
            "r_squared": self.r_squared,
            "r_squared_prompt": self.r_squared_prompt,
            "r_squared_decode": self.r_squared_decode,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitDiagnostics:
        return cls(
            method=str(data["method"]),
            samples=int(data["samples"]),
            samples_per_length={int(k): int(v) for k, v in data["samples_per_length"].items()},
            residuals_ms=tuple(float(r) for r in data["residuals_ms"]),
            rmse_ms=float(data["rmse_ms"]),
            max_abs_residual_ms=float(data["max_abs_residual_ms"]),
            r_squared=_optional_float(data["r_squared"]),
            r_squared_prompt=_optional_float(data.get("r_squared_prompt")),
            r_squared_decode=_optional_float(data.get("r_squared_decode")),
            statistic=str(data.get("statistic", "mean")),
        )


@final
@dataclass(frozen=True, slots=True)
class RuntimeFit:
    """What :func:`fit_profile` found: ``f`` per tabulated length, ``g``, the overhead."""

    prompt_ms: dict[int, float]
    """``f(length)`` in ms for each tabulated prompt length, ascending."""
    per_output_token_ms: float
    """``g``: the time of each output token after the first, in ms."""
    overhead_ms: float | None
    """The denoised variant's fixed per-request time; ``None`` when not fitted."""
    diagnostics: FitDiagnostics

    @property
    def prompt_lengths(self) -> tuple[int, ...]:
        return tuple(self.prompt_ms)


@final
@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """One timed calibration request beside the profile's prediction: ready to plot."""

    prompt_tokens: int
    output_tokens: int
    measured_ms: float
    """The end-to-end latency measured."""
    predicted_ms: float
    ttft_ms: float | None = None
    """The time to first token measured (``None``: the engine does not stream); kept so a
    saved profile can be fitted again (:meth:`RuntimeProfile.samples`) without timing."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "measured_ms": self.measured_ms,
            "predicted_ms": self.predicted_ms,
            "ttft_ms": self.ttft_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationRow:
        return cls(
            prompt_tokens=int(data["prompt_tokens"]),
            output_tokens=int(data["output_tokens"]),
            measured_ms=float(data["measured_ms"]),
            predicted_ms=float(data["predicted_ms"]),
            ttft_ms=_optional_float(data.get("ttft_ms")),
        )


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@final
@dataclass(frozen=True, slots=True)
class RuntimeProfile:
    """An idealized-runtime profile of one model on one machine, saved as JSON.

    Times are milliseconds. ``prompt_ms`` maps each tabulated prompt length to
    ``f(length)``; ``per_output_token_ms`` is ``g``; ``overhead_ms`` is the denoised
    variant's fixed term (``None``: not fitted, the plain idealized model).
    """

    model: str
    hardware_key: str
    engine_spec: str
    prompt_ms: dict[int, float]
    per_output_token_ms: float
    overhead_ms: float | None = None
    diagnostics: FitDiagnostics | None = None
    """The fit's residuals and R-squared; ``None`` for a profile written by hand."""
    table: tuple[CalibrationRow, ...] = ()
    """Every calibration request, measured against predicted."""
    engine_info: dict[str, Any] = field(default_factory=dict)
    """The engine's ``describe()``: model folder, device, dtype, parameters."""
    calibration: dict[str, Any] = field(default_factory=dict)
    """How it was calibrated: grid, repeats, warm-up, quick mode, duration."""
    created_at: str = field(default_factory=_utc_now)
    schema_version: int = PROFILE_SCHEMA_VERSION

    def __post_init__(self) -> None:
        try:
            checked = _check_prompt_ms(self.prompt_ms)
        except ValueError as exc:
            raise ProfileError(str(exc)) from exc
        object.__setattr__(self, "prompt_ms", checked)
        problems = []
        if not _finite_nonnegative(self.per_output_token_ms):
            problems.append(
                f"per_output_token_ms must be a finite number >= 0, "
                f"got {self.per_output_token_ms!r}"
            )
        if self.overhead_ms is not None and not _finite_nonnegative(self.overhead_ms):
            problems.append(f"overhead_ms must be a finite number >= 0, got {self.overhead_ms!r}")
        if self.schema_version != PROFILE_SCHEMA_VERSION:
            problems.append(
                f"schema_version {self.schema_version!r} is not {PROFILE_SCHEMA_VERSION}, the "
                f"version this pytest-inferbudget reads"
            )
        if problems:
            raise ProfileError("; ".join(problems))

    @property
    def prompt_lengths(self) -> tuple[int, ...]:
        return tuple(self.prompt_ms)

    def samples(self) -> tuple[TimingSample, ...]:
        """The calibration requests as timing samples, to fit again (another method, the
        overhead term) without timing the engine again. Empty for a hand-written profile."""
        return tuple(
            TimingSample(
                prompt_tokens=row.prompt_tokens,
                output_tokens=row.output_tokens,
                ttft_ms=row.ttft_ms,
                e2e_ms=row.measured_ms,
            )
            for row in self.table
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "model": self.model,
            "hardware_key": self.hardware_key,
            "engine_spec": self.engine_spec,
            "created_at": self.created_at,
            "prompt_ms": {str(k): v for k, v in self.prompt_ms.items()},
            "per_output_token_ms": self.per_output_token_ms,
            "overhead_ms": self.overhead_ms,
            "diagnostics": None if self.diagnostics is None else self.diagnostics.to_dict(),
            "table": [row.to_dict() for row in self.table],
            "engine_info": self.engine_info,
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RuntimeProfile:
        """Rebuild a profile; anything missing, mistyped or of another version is a
        :class:`ProfileError` that says what."""
        if not isinstance(data, Mapping):
            raise ProfileError(f"a runtime profile is a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != PROFILE_SCHEMA_VERSION:
            raise ProfileError(
                f"profile schema_version {version!r} is not {PROFILE_SCHEMA_VERSION}, the version "
                f"this pytest-inferbudget reads"
                + (
                    "; upgrade pytest-inferbudget"
                    if isinstance(version, int) and version > PROFILE_SCHEMA_VERSION
                    else "; calibrate again"
                )
            )
        try:
            diagnostics = data.get("diagnostics")
            return cls(
                model=_require_str(data, "model"),
                hardware_key=_require_str(data, "hardware_key"),
                engine_spec=_require_str(data, "engine_spec"),
                created_at=_require_str(data, "created_at"),
                prompt_ms={int(k): float(v) for k, v in data["prompt_ms"].items()},
                per_output_token_ms=float(data["per_output_token_ms"]),
                overhead_ms=_optional_float(data.get("overhead_ms")),
                diagnostics=None if diagnostics is None else FitDiagnostics.from_dict(diagnostics),
                table=tuple(CalibrationRow.from_dict(row) for row in data.get("table", ())),
                engine_info=dict(data.get("engine_info", {})),
                calibration=dict(data.get("calibration", {})),
            )
        except ProfileError:
            raise
        except KeyError as exc:
            raise ProfileError(f"the profile lacks the key {exc.args[0]!r}") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(f"the profile has a malformed value ({exc})") from exc

    def save(self, path: Path | str) -> None:
        """Write atomically: a reader sees the old file or the new one, never a mix."""
        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: Path | str) -> RuntimeProfile:
        """Read a saved profile; a missing, corrupt or incompatible file is a
        :class:`ProfileError` naming it (never skipped)."""
        path = Path(path)
        try:
            data = read_json(path)
        except ReportError as exc:
            raise ProfileError(f"cannot load runtime profile: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ProfileError as exc:
            raise ProfileError(f"{path} is not a usable runtime profile: {exc}") from exc


def predict_ms(
    profile: RuntimeProfile | RuntimeFit,
    prompt_tokens: int,
    output_tokens: int,
    *,
    overhead: bool = True,
) -> float:
    """The idealized runtime of one request, in ms: ``f(p) + g * (o - 1)``.

    ``f(p) = f(k) * p / k`` with ``k`` the smallest tabulated length ``>= p``, or the
    largest tabulated length when ``p`` exceeds them all. ``o = 0`` gives ``f(p)``
    alone (HELM's convention). The profile's overhead, when it has one, is added
    unless ``overhead=False`` (which gives the idealized part of a denoised profile).
    """
    if _not_int(prompt_tokens) or prompt_tokens < 0:
        raise ValueError(f"prompt_tokens must be an integer >= 0, got {prompt_tokens!r}")
    if _not_int(output_tokens) or output_tokens < 0:
        raise ValueError(f"output_tokens must be an integer >= 0, got {output_tokens!r}")
    return _predict(
        profile.prompt_ms,
        profile.per_output_token_ms,
        profile.overhead_ms if overhead else None,
        prompt_tokens,
        output_tokens,
    )


def _predict(
    prompt_ms: Mapping[int, float],
    per_output_token_ms: float,
    overhead_ms: float | None,
    prompt_tokens: int,
    output_tokens: int,
) -> float:
    key = _bracket(sorted(prompt_ms), prompt_tokens)
    runtime = prompt_ms[key] * (prompt_tokens / key)
    if output_tokens > 0:
        runtime += per_output_token_ms * (output_tokens - 1)
    if overhead_ms is not None:
        runtime += overhead_ms
    return runtime


def fit_profile(
    samples: Sequence[TimingSample],
    prompt_lengths: Sequence[int] = PROMPT_LENGTHS,
    *,
    overhead: bool = False,
    method: str = "auto",
    statistic: str = "median",
) -> RuntimeFit:
    """Fit ``f`` at each tabulated length and ``g`` by least squares.

    ``statistic="median"`` (the default) first reduces the repeats of each grid cell
    (same prompt and output tokens) to one point, their median (with ``split``, the
    median TTFT and the median decode time apart), and fits those points. A calibration
    on a shared machine sees stalls: measured here, one request of 26 s among repeats
    of 2.7 s took the least-squares ``g`` of SmolLM2 on a CPU from 43 to 92 ms and the
    held-out error from 6% to 65%. The median ignores an outlier among three repeats
    (fewer than half of any number). ``statistic="mean"`` fits every sample, the plain
    least squares (the cell means, where cells are equally repeated). Diagnostics are
    always over every sample, so an outlier still shows in the residuals and R-squared.

    Every sample is read the way :func:`predict_ms` predicts it: a sample of ``p``
    prompt tokens informs ``f(k)`` for ``k`` the next tabulated length at or above
    ``p``, through the regressor ``x = p / k`` (1 for a sample at ``k`` itself). So
    the fit minimises exactly the error of the predictions it will make, and samples
    taken between the tabulated lengths are used, not dropped.

    Methods:

    ``split`` (the default where every sample has a TTFT). ``f(k)`` is fitted to the
    time to first token and ``g`` to the decode time ``e2e - ttft`` against ``o - 1``,
    each a one-unknown least-squares problem with a closed form:
    ``f(k) = sum(ttft * x) / sum(x**2)`` over the bracket's samples and
    ``g = sum((e2e - ttft) * (o - 1)) / sum((o - 1)**2)``. The model's two terms are
    measured directly (``runtime(p, 1) = f(p)`` is the TTFT; ``g * (o - 1)`` is the
    time after it), so noise in one phase does not leak into the other, and ``f`` is
    read where it is observed instead of extrapolated to ``o = 1`` from longer
    generations, which is the joint fit's weak point: its intercept's variance grows
    with the spread of the decode times it extrapolates from.

    ``joint`` (used where any sample lacks a TTFT, e.g. a non-streaming server; HELM's
    regression of runtime on output tokens, whose slope is ``g`` and intercepts are
    ``f``). One least-squares problem on ``e2e``, unknowns ``f(k)`` for every length
    and ``g``, solved by the normal equations. ``g`` then needs samples of at least two
    output lengths.

    ``overhead=True`` (the denoised variant) first fits a straight line
    ``c + a * p`` (``split``: to the TTFT; ``joint``: ``c + a * p + b * (o - 1)`` to
    e2e): its intercept ``c``, the time of an empty request, is the fixed overhead,
    clamped to ``[0, c_max]``, ``c_max`` the largest overhead that leaves every ``f(k)``
    and ``g`` non-negative (``min f(k)`` when the samples lie at the tabulated lengths).
    ``f`` and ``g`` are then fitted as above to the times less ``c``. For samples at the
    tabulated lengths the predictions there are unchanged (``c + f(k)`` is the plain
    fit's ``f(k)``); between them only the part above the overhead is scaled with ``p``.
    It needs at least two distinct prompt lengths.
    """
    if method not in FIT_METHODS:
        raise ValueError(f"method must be one of {', '.join(FIT_METHODS)}, got {method!r}")
    if statistic not in FIT_STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(FIT_STATISTICS)}, got {statistic!r}")
    lengths = _check_lengths(prompt_lengths)
    samples = list(samples)
    if not samples:
        raise FitError("no timing samples to fit")
    has_ttft = all(s.ttft_ms is not None for s in samples)
    if method == "auto":
        method = "split" if has_ttft else "joint"
    elif method == "split" and not has_ttft:
        raise FitError("the split fit needs a ttft_ms on every sample; use method='joint'")

    per_length = {k: 0 for k in lengths}
    for s in samples:
        per_length[_bracket(lengths, s.prompt_tokens)] += 1
    empty = [k for k, n in per_length.items() if n == 0]
    if empty:
        raise FitError(
            f"no samples for the tabulated prompt length(s) {', '.join(map(str, empty))}: "
            f"f(k) needs a sample with k' < p <= k prompt tokens (k' the length below k)"
        )
    if not any(s.output_tokens > 1 for s in samples):
        raise FitError("every sample has a single output token, so g cannot be fitted")

    points = _cell_medians(samples, method == "split") if statistic == "median" else samples
    fit_parts = _fit_split if method == "split" else _fit_joint
    prompt_ms, g = fit_parts(points, lengths, 0.0)
    overhead_ms: float | None = None
    if overhead:
        # The fitted coefficients are linear in the shift c: with those at c = 0 and c = 1,
        # find the largest c that keeps every f(k) and g >= 0, and clamp the intercept to it.
        unit_ms, unit_g = fit_parts(points, lengths, 1.0)
        base = [*prompt_ms.values(), g]
        slopes = [b - u for b, u in zip(base, [*unit_ms.values(), unit_g], strict=True)]
        ceiling = min(
            (b / slope for b, slope in zip(base, slopes, strict=True) if slope > 0.0),
            default=math.inf,
        )
        overhead_ms = min(_fit_overhead(points, method), max(0.0, ceiling))
        prompt_ms, g = fit_parts(points, lengths, overhead_ms)
        # At the ceiling one coefficient is zero in exact arithmetic; rounding can leave it
        # a hair below (-1e-15 ms): that is zero, not a negative time.
        tolerance = 1e-9 * max(1.0, overhead_ms, *base)
        prompt_ms = {k: 0.0 if -tolerance < v < 0.0 else v for k, v in prompt_ms.items()}
        g = 0.0 if -tolerance < g < 0.0 else g
    negative = {k: v for k, v in prompt_ms.items() if v < 0.0}
    if negative or g < 0.0:
        what = [f"f({k}) = {v:.3g} ms" for k, v in negative.items()]
        if g < 0.0:
            what.append(f"g = {g:.3g} ms")
        raise FitError(
            f"the least-squares fit gives negative times ({', '.join(what)}): the samples are "
            f"too few or too noisy; take more repeats or longer outputs"
        )
    return RuntimeFit(
        prompt_ms=prompt_ms,
        per_output_token_ms=g,
        overhead_ms=overhead_ms,
        diagnostics=_diagnose(prompt_ms, g, overhead_ms, samples, method, per_length, statistic),
    )


def _cell_medians(samples: Sequence[TimingSample], split: bool) -> list[TimingSample]:
    """One point per (prompt tokens, output tokens) cell: its repeats' median.

    For the split fit the TTFT and the decode time ``e2e - ttft`` take their medians
    apart (the fit reads them apart); for the joint fit the e2e time alone."""
    cells: dict[tuple[int, int], list[TimingSample]] = {}
    for s in samples:
        cells.setdefault((s.prompt_tokens, s.output_tokens), []).append(s)
    points = []
    for (p, o), group in cells.items():
        if split:
            ttft = statistics.median(float(s.ttft_ms or 0.0) for s in group)
            decode = statistics.median(s.e2e_ms - float(s.ttft_ms or 0.0) for s in group)
            points.append(TimingSample(p, o, ttft_ms=ttft, e2e_ms=ttft + decode))
        else:
            points.append(
                TimingSample(p, o, ttft_ms=None, e2e_ms=statistics.median(s.e2e_ms for s in group))
            )
    return points


def _fit_split(
    samples: Sequence[TimingSample], lengths: tuple[int, ...], shift: float
) -> tuple[dict[int, float], float]:
    sums: dict[int, list[float]] = {k: [0.0, 0.0] for k in lengths}
    decode_xy = decode_xx = 0.0
    for s in samples:
        if s.ttft_ms is None:  # checked by the caller; keeps the types honest
            raise FitError("the split fit needs a ttft_ms on every sample")
        key = _bracket(lengths, s.prompt_tokens)
        x = s.prompt_tokens / key
        sums[key][0] += (s.ttft_ms - shift) * x
        sums[key][1] += x * x
        steps = s.output_tokens - 1
        decode_xy += (s.e2e_ms - s.ttft_ms) * steps
        decode_xx += steps * steps
    prompt_ms = {k: xy / xx for k, (xy, xx) in sums.items()}
    return prompt_ms, decode_xy / decode_xx


def _fit_joint(
    samples: Sequence[TimingSample], lengths: tuple[int, ...], shift: float
) -> tuple[dict[int, float], float]:
    if len({s.output_tokens for s in samples}) < 2:
        raise FitError(
            "the joint fit needs samples of at least two output lengths to separate f from g"
        )
    rows = []
    for s in samples:
        row = [0.0] * (len(lengths) + 1)
        key = _bracket(lengths, s.prompt_tokens)
        row[lengths.index(key)] = s.prompt_tokens / key
        row[-1] = float(s.output_tokens - 1)
        rows.append(row)
    solution = _least_squares(rows, [s.e2e_ms - shift for s in samples])
    return dict(zip(lengths, solution[:-1], strict=True)), solution[-1]


def _fit_overhead(samples: Sequence[TimingSample], method: str) -> float:
    if len({s.prompt_tokens for s in samples}) < 2:
        raise FitError("the overhead fit needs samples of at least two distinct prompt lengths")
    if method == "split":
        rows = [[1.0, float(s.prompt_tokens)] for s in samples]
        targets = [float(s.ttft_ms or 0.0) for s in samples]
    else:
        if len({s.output_tokens for s in samples}) < 2:
            raise FitError("the joint overhead fit needs samples of at least two output lengths")
        rows = [[1.0, float(s.prompt_tokens), float(s.output_tokens - 1)] for s in samples]
        targets = [s.e2e_ms for s in samples]
    return max(0.0, _least_squares(rows, targets)[0])


def _diagnose(
    prompt_ms: dict[int, float],
    g: float,
    overhead_ms: float | None,
    samples: Sequence[TimingSample],
    method: str,
    per_length: dict[int, int],
    statistic: str,
) -> FitDiagnostics:
    def predict(s: TimingSample, output_tokens: int) -> float:
        return _predict(prompt_ms, g, overhead_ms, s.prompt_tokens, output_tokens)

    measured = [s.e2e_ms for s in samples]
    predicted = [predict(s, s.output_tokens) for s in samples]
    residuals = tuple(m - p for m, p in zip(measured, predicted, strict=True))
    r_prompt = r_decode = None
    if method == "split":
        r_prompt = _r_squared(
            [float(s.ttft_ms or 0.0) for s in samples], [predict(s, 1) for s in samples]
        )
        r_decode = _r_squared(
            [s.e2e_ms - float(s.ttft_ms or 0.0) for s in samples],
            [g * (s.output_tokens - 1) for s in samples],
        )
    return FitDiagnostics(
        method=method,
        samples=len(samples),
        samples_per_length=dict(per_length),
        residuals_ms=residuals,
        rmse_ms=math.sqrt(sum(r * r for r in residuals) / len(residuals)),
        max_abs_residual_ms=max(abs(r) for r in residuals),
        r_squared=_r_squared(measured, predicted),
        r_squared_prompt=r_prompt,
        r_squared_decode=r_decode,
        statistic=statistic,
    )


def _r_squared(measured: Sequence[float], predicted: Sequence[float]) -> float | None:
    """``1 - SS_res / SS_tot``; ``None`` when the measurements do not vary."""
    mean = sum(measured) / len(measured)
    total = sum((m - mean) ** 2 for m in measured)
    if total <= 1e-12 * max(1.0, mean * mean):
        return None
    residual = sum((m - p) ** 2 for m, p in zip(measured, predicted, strict=True))
    return 1.0 - residual / total


def _least_squares(rows: Sequence[Sequence[float]], targets: Sequence[float]) -> list[float]:
    """Solve ``min |A x - y|`` by the normal equations ``A^T A x = A^T y``.

    Gaussian elimination with partial pivoting on a few unknowns; a (near-)singular
    system means the samples do not determine every unknown, a :class:`FitError`.
    """
    n = len(rows[0])
    normal = [[0.0] * (n + 1) for _ in range(n)]
    for row, y in zip(rows, targets, strict=True):
        for i in range(n):
            if row[i] == 0.0:
                continue
            for j in range(n):
                normal[i][j] += row[i] * row[j]
            normal[i][n] += row[i] * y
    scale = max(abs(normal[i][i]) for i in range(n)) or 1.0
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(normal[r][col]))
        if abs(normal[pivot][col]) <= 1e-12 * scale:
            raise FitError(
                "the samples do not determine every unknown of the fit (a singular system): "
                "vary the prompt and output lengths"
            )
        normal[col], normal[pivot] = normal[pivot], normal[col]
        for r in range(n):
            if r != col and normal[r][col] != 0.0:
                factor = normal[r][col] / normal[col][col]
                for c in range(col, n + 1):
                    normal[r][c] -= factor * normal[col][c]
    return [normal[i][n] / normal[i][i] for i in range(n)]


def build_profile(
    fit: RuntimeFit,
    samples: Sequence[TimingSample],
    *,
    model: str,
    hardware_key: str,
    engine_spec: str,
    engine_info: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> RuntimeProfile:
    """A profile from a fit and the samples it came from (which become its table)."""
    table = tuple(
        CalibrationRow(
            prompt_tokens=s.prompt_tokens,
            output_tokens=s.output_tokens,
            measured_ms=s.e2e_ms,
            predicted_ms=predict_ms(fit, s.prompt_tokens, s.output_tokens),
            ttft_ms=s.ttft_ms,
        )
        for s in samples
    )
    return RuntimeProfile(
        model=model,
        hardware_key=hardware_key,
        engine_spec=engine_spec,
        prompt_ms=dict(fit.prompt_ms),
        per_output_token_ms=fit.per_output_token_ms,
        overhead_ms=fit.overhead_ms,
        diagnostics=fit.diagnostics,
        table=table,
        engine_info=dict(engine_info or {}),
        calibration=dict(calibration or {}),
    )


def calibrate(
    engine: Engine,
    *,
    prompt_lengths: Sequence[int] | None = None,
    output_lengths: Sequence[int] | None = None,
    repeats: int | None = None,
    warmup: int = 1,
    quick: bool = False,
    overhead: bool = False,
    method: str = "auto",
    statistic: str = "median",
    word: str = "the",
    progress: Progress | None = None,
) -> RuntimeProfile:
    """Time a grid of requests on ``engine`` and fit its runtime profile.

    The grid is every prompt length x every output length, ``repeats`` times, one
    request at a time (no batching: the profile is a single request's latency). Each
    request is raw text (``chat=False``), greedy, made of ``word`` repeated, which a
    language model keeps continuing, so it usually generates the full
    ``max_new_tokens``; where it stops early the fit uses the ``completion_tokens`` the
    engine reports, never the length asked for.

    Prompts of an exact token count: the engine reports ``prompt_tokens``, so each
    length is probed with a one-token request and the word count corrected until it
    matches (a tokenizer that adds a BOS token takes one word fewer). Where no word
    count matches exactly, the closest count below the target is used and the sample
    is fitted at its real length. The probes are untimed.

    No two timed requests share a prefix: each starts with a different common word
    checked to take as many tokens as ``word`` (:func:`_salt_words`), so an engine's
    prefix cache (vLLM caches prompt blocks by default) cannot serve a repeated
    calibration prompt, or the shared start of a longer one, from cache; the profile
    times prompt encoding, not cache hits.

    Warm-up: ``warmup`` untimed requests of the largest prompt and output lengths
    before timing (allocators, caches, kernels). Timing runs round-robin over the grid,
    one repeat of every cell before the next, so slow drift (heat, other processes)
    spreads over all cells instead of biasing some.

    Defaults: ``prompt_lengths`` :data:`PROMPT_LENGTHS`, ``output_lengths`` (8, 32),
    ``repeats`` 3. ``quick=True`` changes the defaults (explicit arguments still win)
    to prompt lengths (1, 64, 256) and 2 repeats: about 15 requests, tens of seconds
    for SmolLM2-135M on a CPU, enough for a rough profile but not for prompts much
    longer than 256 tokens (they are scaled from ``f(256)``).
    """
    if isinstance(repeats, bool) or (repeats is not None and repeats < 1):
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if statistic not in FIT_STATISTICS:  # checked before the engine is timed, not after
        raise ValueError(f"statistic must be one of {', '.join(FIT_STATISTICS)}, got {statistic!r}")
    if not word.strip() or any(c.isspace() for c in word):
        raise ValueError(f"word must be one word without spaces, got {word!r}")
    lengths = _check_lengths(
        prompt_lengths
        if prompt_lengths is not None
        else (QUICK_PROMPT_LENGTHS if quick else PROMPT_LENGTHS)
    )
    outputs = tuple(
        output_lengths
        if output_lengths is not None
        else (QUICK_OUTPUT_LENGTHS if quick else DEFAULT_OUTPUT_LENGTHS)
    )
    if not outputs or any(_not_int(o) or o < 1 for o in outputs):
        raise ValueError(f"output_lengths must be integers >= 1, got {outputs!r}")
    n_repeats = repeats if repeats is not None else (QUICK_REPEATS if quick else DEFAULT_REPEATS)
    say = progress or (lambda line: None)
    started_ns = time.perf_counter_ns()
    info = dict(engine.describe())
    prompts = {p: _exact_prompt(engine, p, word, say) for p in lengths}
    timed_requests = warmup + n_repeats * len(lengths) * len(outputs)
    starts = _salt_words(engine, word, timed_requests, say)
    salts = itertools.cycle(starts)
    for index in range(warmup):
        say(f"warm-up {index + 1}/{warmup}: {lengths[-1]} prompt tokens, {max(outputs)} output")
        _timed(engine, _salted(prompts[lengths[-1]], next(salts)), max(outputs))
    samples: list[TimingSample] = []
    for repeat in range(n_repeats):
        for p in lengths:
            for o in outputs:
                sample = _timed(engine, _salted(prompts[p], next(salts)), o)
                samples.append(sample)
                say(
                    f"repeat {repeat + 1}/{n_repeats}: p={sample.prompt_tokens} "
                    f"o={sample.output_tokens}: {sample.e2e_ms:.1f} ms"
                )
    fit = fit_profile(samples, lengths, overhead=overhead, method=method, statistic=statistic)
    duration_s = (time.perf_counter_ns() - started_ns) / 1e9
    try:
        model = EngineSpec.parse(engine.spec).target
    except EngineSpecError:
        model = str(info.get("model", engine.spec))
    say(f"calibrated in {duration_s:.1f} s: R-squared {fit.diagnostics.r_squared}")
    return build_profile(
        fit,
        samples,
        model=model,
        hardware_key=hardware_key(hardware.fingerprint(), info),
        engine_spec=engine.spec,
        engine_info=info,
        calibration={
            "prompt_lengths": list(lengths),
            "output_lengths": list(outputs),
            "repeats": n_repeats,
            "warmup": warmup,
            "distinct_prompt_starts": len(starts),
            "quick": quick,
            "overhead": overhead,
            "method": fit.diagnostics.method,
            "statistic": statistic,
            "duration_s": round(duration_s, 3),
        },
    )


def _timed(engine: Engine, prompt: str, output_tokens: int) -> TimingSample:
    response = engine.generate([Request(prompt, max_new_tokens=output_tokens, chat=False)])[0]
    generation = response.generations[0]
    if generation.e2e_ms is None:
        raise CalibrationError(
            f"engine {engine.spec} reported no e2e_ms, so it cannot be calibrated"
        )
    if generation.completion_tokens < 1:
        raise CalibrationError(f"engine {engine.spec} generated no token for a calibration prompt")
    return TimingSample(
        prompt_tokens=generation.prompt_tokens,
        output_tokens=generation.completion_tokens,
        ttft_ms=generation.ttft_ms,
        e2e_ms=generation.e2e_ms,
    )


_SALT_WORDS: Final = (
    "a", "an", "and", "as", "at", "be", "but", "by", "do", "for", "from", "go", "has", "he",
    "her", "his", "how", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "now",
    "of", "on", "one", "or", "our", "out", "so", "some", "than", "that", "them", "then",
    "there", "they", "this", "to", "two", "up", "us", "was", "we", "were", "what", "when",
    "which", "who", "will", "with", "you", "your", "all", "any", "can", "day", "did", "get",
    "had", "him", "may", "new", "old", "see", "way", "use", "man",
)  # fmt: skip
"""Common short words, most of them one token in any BPE vocabulary, to start prompts."""


def _salt_words(engine: Engine, word: str, needed: int, say: Progress) -> list[str]:
    """Up to ``needed`` first words that tokenize like ``word`` does in front of it.

    Every timed prompt starts with a different one of them, so no two timed requests
    share a prefix and an engine's prefix cache (vLLM's automatic prefix caching) cannot
    serve a prompt from cache: the profile times prefill, not a cache hit. Each candidate
    is checked with an untimed two-word request, ``"<salt> <word>"`` against
    ``"<word> <word>"``, so the prompt lengths stay exact.
    """

    def tokens(text: str) -> int:
        response = engine.generate([Request(text, max_new_tokens=1, chat=False)])[0]
        return response.generations[0].prompt_tokens

    reference = tokens(f"{word} {word}")
    found: list[str] = []
    for salt in _SALT_WORDS:
        if len(found) >= needed:
            break
        if salt != word and tokens(f"{salt} {word}") == reference:
            found.append(salt)
    if len(found) < needed:
        say(
            f"only {len(found)} distinct prompt starts for {needed} timed requests: some "
            f"prompts repeat and an engine's prefix cache may shorten their prefill"
        )
    return found or [word]


def _salted(prompt: str, salt: str) -> str:
    """``prompt`` with its first word replaced by ``salt``."""
    _, _, rest = prompt.partition(" ")
    return f"{salt} {rest}" if rest else salt


def _exact_prompt(engine: Engine, target: int, word: str, say: Progress) -> str:
    """Raw text of exactly ``target`` tokens where one exists, found by probing."""

    def text(words: int) -> str:
        return " ".join([word] * words)

    def tokens(words: int) -> int:
        response = engine.generate([Request(text(words), max_new_tokens=1, chat=False)])[0]
        return response.generations[0].prompt_tokens

    tried: dict[int, int] = {}
    words = target
    for _ in range(6):
        words = max(1, words)
        if words in tried:
            break
        tried[words] = tokens(words)
        if tried[words] == target:
            return text(words)
        words += target - tried[words]
    below = [w for w, n in tried.items() if n <= target]
    best = (
        max(below, key=lambda w: tried[w])
        if below
        else min(tried, key=lambda w: tried[w])  # even one word is too long: the shortest
    )
    say(f"no prompt of exactly {target} tokens from {word!r}; using {tried[best]} tokens")
    return text(best)


def hardware_key(fingerprint: Mapping[str, Any], engine_info: Mapping[str, Any]) -> str:
    """A short, stable, readable key for the machine a profile belongs to.

    The accelerator (the engine's ``gpu``, else the CPU model) as a slug, then a hash
    of what makes timings differ: architecture, OS, CPU model and count, device, GPU.
    """
    device = str(engine_info.get("gpu") or fingerprint.get("cpu_model") or "unknown")
    canonical = {
        "machine": fingerprint.get("machine"),
        "system": fingerprint.get("system"),
        "cpu_model": fingerprint.get("cpu_model"),
        "cpu_count": fingerprint.get("cpu_count"),
        "device": engine_info.get("device"),
        "gpu": engine_info.get("gpu"),
    }
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")[:40] or "unknown"
    return f"{slug}-{digest}"


def _bracket(lengths: Sequence[int], prompt_tokens: int) -> int:
    """The smallest tabulated length ``>= prompt_tokens``, else the largest."""
    index = bisect.bisect_left(lengths, prompt_tokens)
    return lengths[min(index, len(lengths) - 1)]


def _check_lengths(prompt_lengths: Sequence[int]) -> tuple[int, ...]:
    lengths = tuple(prompt_lengths)
    if not lengths or any(_not_int(k) or k < 1 for k in lengths):
        raise ValueError(f"prompt lengths must be integers >= 1, got {lengths!r}")
    if any(a >= b for a, b in itertools.pairwise(lengths)):
        raise ValueError(f"prompt lengths must be strictly increasing, got {lengths!r}")
    return lengths


def _check_prompt_ms(prompt_ms: Mapping[int, float]) -> dict[int, float]:
    if not isinstance(prompt_ms, Mapping) or not prompt_ms:
        raise ValueError(f"prompt_ms must map tabulated prompt lengths to ms, got {prompt_ms!r}")
    lengths = _check_lengths(sorted(prompt_ms))
    for k in lengths:
        if not _finite_nonnegative(prompt_ms[k]):
            raise ValueError(f"prompt_ms[{k}] must be a finite number >= 0, got {prompt_ms[k]!r}")
    return {k: float(prompt_ms[k]) for k in lengths}


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _finite_nonnegative(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _require_str(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ProfileError(f"{key} must be a string, got {value!r}")
    return value
