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

This module holds the model itself: the profile (what a test run reads, saved as JSON),
its fit's result and diagnostics, and :func:`predict_ms`. A profile is fitted once per
(model, hardware) by :func:`~pytest_inferbudget.perfmodel.calibrate.calibrate`, which
times a grid of requests on an engine, and
:func:`~pytest_inferbudget.perfmodel.fit.fit_profile`, which fits ``f`` and ``g`` by
least squares. The profile then predicts any request's runtime from its token counts,
free of contention and of the machine the test happens to run on.

Only the standard library is imported here.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, final

from pytest_inferbudget.errors import ProfileError, ReportError
from pytest_inferbudget.storage import read_json, write_json_atomic

__all__ = [
    "PROFILE_SCHEMA_VERSION",
    "PROMPT_LENGTHS",
    "CalibrationRow",
    "FitDiagnostics",
    "RuntimeFit",
    "RuntimeProfile",
    "TimingSample",
    "predict_ms",
]

PROMPT_LENGTHS: Final = (1, 256, 512, 1024, 1536)
"""HELM's tabulated prompt lengths for the prompt-encoding time ``f(p)``."""

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
    """What :func:`~pytest_inferbudget.perfmodel.fit.fit_profile` found: ``f`` per
    tabulated length, ``g``, the overhead."""

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
