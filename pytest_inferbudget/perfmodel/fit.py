"""Fitting an idealized-runtime profile: ``f`` and ``g`` from timed requests.

Apart from :mod:`~pytest_inferbudget.perfmodel.profile` (the model and its saved form)
because fitting is the one numerical part: least squares by the normal equations, the
split and joint methods, the denoised variant's overhead, the fit's diagnostics. It
takes timing samples from anywhere (a calibration, a saved profile's table, a test) and
never touches an engine; :mod:`~pytest_inferbudget.perfmodel.calibrate` does the timing.
Only the standard library is imported.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pytest_inferbudget.errors import FitError
from pytest_inferbudget.perfmodel.profile import (
    PROMPT_LENGTHS,
    CalibrationRow,
    FitDiagnostics,
    RuntimeFit,
    RuntimeProfile,
    TimingSample,
    _bracket,
    _check_lengths,
    _predict,
    predict_ms,
)

__all__ = ["FIT_METHODS", "FIT_STATISTICS", "build_profile", "fit_profile"]

FIT_METHODS: Final = ("auto", "split", "joint")

FIT_STATISTICS: Final = ("median", "mean")
"""How repeats of one grid cell are combined before the fit (see :func:`fit_profile`)."""


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
