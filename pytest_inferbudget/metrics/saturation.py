"""When repeated sampling stops paying: the coverage curve and the sample count past which
one more sample is worth less than ``epsilon``. Pure functions.

- Coverage (pass@k over problems) grows with the number of samples k roughly as
  ``exp(a * k**b)`` with ``a < 0`` and ``b < 0`` (Brown et al. 2024, "Large Language
  Monkeys: Scaling Inference Compute with Repeated Sampling", eq. 2). Taking ``log(-log(coverage))``
  makes it a line in ``log k``: ``log(-a) + b * log k``, fitted by least squares.
- A parallel strategy whose samples each succeed with probability ``p`` gains
  ``p * (1 - p)**N`` from sample ``N + 1``; that falls below ``epsilon`` after
  ``N* = ceil(ln(epsilon / p) / ln(1 - p))`` samples ("Scaling over Scaling", the
  saturation point of parallel scaling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_inferbudget.metrics.accuracy import pass_at_k_problems

__all__ = [
    "CoverageFit",
    "Saturation",
    "coverage_curve",
    "fit_coverage",
    "samples_for_coverage",
    "saturation",
    "saturation_samples",
]


@dataclass(frozen=True, slots=True)
class CoverageFit:
    """``coverage(k) = exp(a * k**b)``, fitted on ``points`` (k, coverage) pairs."""

    a: float
    b: float
    points: int

    def coverage(self, k: float) -> float:
        return math.exp(self.a * k**self.b)


def coverage_curve(counts: Sequence[tuple[int, int]]) -> list[tuple[int, float]]:
    """pass@k over problems for k = 1 .. the fewest samples any problem has, each problem
    given as ``(n, c)`` (samples, correct): the unbiased estimator, not a resampling."""
    if not counts:
        raise ValueError("counts is empty; pass one (n, c) pair per problem")
    most = min(n for n, _ in counts)
    return [(k, pass_at_k_problems(counts, k)) for k in range(1, most + 1)]


def fit_coverage(curve: Sequence[tuple[float, float]]) -> CoverageFit | None:
    """Least squares of ``log(-log(coverage))`` on ``log k`` over the points with coverage
    strictly between 0 and 1 (at 0 or 1 the transform is infinite); None when fewer than
    two such points at different k remain."""
    usable = [(math.log(k), math.log(-math.log(c))) for k, c in curve if 0.0 < c < 1.0 and k > 0]
    if len({x for x, _ in usable}) < 2:
        return None
    mean_x = math.fsum(x for x, _ in usable) / len(usable)
    mean_y = math.fsum(y for _, y in usable) / len(usable)
    sxx = math.fsum((x - mean_x) ** 2 for x, _ in usable)
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in usable)
    b = sxy / sxx
    a = -math.exp(mean_y - b * mean_x)
    return CoverageFit(a, b, len(usable))


def samples_for_coverage(fit: CoverageFit, target: float) -> float:
    """Samples the fitted curve needs to reach ``target`` coverage (``inf`` when it never
    does: a curve that does not grow)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target coverage must be in (0, 1), got {target!r}")
    if fit.b >= 0 or fit.a >= 0:
        return math.inf
    return float((math.log(target) / fit.a) ** (1.0 / fit.b))


def saturation_samples(p: float, epsilon: float = 0.01) -> int:
    """``N*``: samples after which one more adds less than ``epsilon`` success
    probability, for per-sample success ``p``. ``p >= 1`` needs 1, ``p <= epsilon`` 1 too
    (even the first sample's gain is under epsilon); ``p == 0`` gives 0 (none helps)."""
    if not 0.0 < epsilon < 1.0:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability, got {p!r}")
    if p == 0.0:
        return 0
    if p >= 1.0 or p <= epsilon:
        return 1
    return max(1, math.ceil(math.log(epsilon / p) / math.log(1.0 - p)))


@dataclass(frozen=True, slots=True)
class Saturation:
    """What a test's scored samples say about sampling more or less."""

    drawn: int
    """Samples per problem (the most any problem got)."""
    pass_at_1: float
    needed: int
    """``N*`` for the measured pass@1."""
    fit: CoverageFit | None
    epsilon: float

    @property
    def wasted(self) -> int:
        """Samples per problem past ``N*``: each added less than ``epsilon``."""
        return max(0, self.drawn - self.needed) if self.needed else 0

    def describe(self) -> str:
        text = (
            f"{self.drawn} samples per problem, pass@1 {self.pass_at_1:.2f}: one more sample "
            f"adds under {self.epsilon:g} after N* = {self.needed}"
        )
        if self.fit is not None:
            text += f"; coverage ~ exp({self.fit.a:.3g} k^{self.fit.b:.3g})"
            if self.fit.b < 0 and self.fit.a < 0:
                text += f", 90% at k ~ {samples_for_coverage(self.fit, 0.9):.3g}"
        return text


def saturation(counts: Sequence[tuple[int, int]], epsilon: float = 0.01) -> Saturation | None:
    """From ``(n, c)`` per problem: N* for the pooled pass@1, and the coverage fit; None
    with fewer than two samples per problem (nothing was repeated)."""
    if not counts or max(n for n, _ in counts) < 2:
        return None
    total = sum(n for n, _ in counts)
    p = sum(c for _, c in counts) / total
    return Saturation(
        drawn=max(n for n, _ in counts),
        pass_at_1=p,
        needed=saturation_samples(p, epsilon),
        fit=fit_coverage(coverage_curve(counts)),
        epsilon=epsilon,
    )
