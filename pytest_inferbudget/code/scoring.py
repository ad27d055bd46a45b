"""ENAMEL's efficiency score of one generated solution (Qiu et al. 2024, "How Efficient is
LLM-Generated Code?", reference code ``enam/evaluate.py`` in the public repository q-rz/enamel).

For each level of a :class:`~pytest_inferbudget.code.task.CodeTask`, in order:

- the level's tests run in one sandboxed child (:func:`~pytest_inferbudget.code.sandbox.
  run_candidate`), ``task.repeats`` times for a timed level and once for a weight-0 level;
- a wrong answer, or any other error, at any level zeroes the whole sample, as does a
  timeout or out-of-memory at level 0; a timeout or out-of-memory (or ``OverflowError``, as
  ENAMEL treats it) at a later level zeroes that level and every later one;
- the level's time is the Hodges-Lehmann estimate of the children's CPU times (measured by the
  parent from ``os.wait4``), less the estimate for a baseline child that loads a do-nothing
  function and runs the same tests, which removes interpreter start-up and argument decoding;
- against the reference's time ``t_ref`` on the same level, the level scores
  ``e = max(0, T - t) / (T - t_ref)`` (:func:`score_levels`), where the censoring limit ``T``
  is, with ``task.censor == "enamel"`` (the default, ENAMEL's ``timeout_factor * ref_max``),
  ``alpha`` times the largest reference time over the timed levels, the same for every level;
  with ``"per_level"``, ``alpha`` times that level's own ``t_ref`` (:func:`censoring_limits`);
- the sample's score is the weighted mean of the level scores.

One difference from ENAMEL, by necessity of timing from outside the process: ENAMEL times each
test and takes a level's slowest test; here a level is one child, so its time is the sum over
its tests. The wall limit of a level is ``timeout_factor`` times the larger of its ``T`` and
``alpha * t_ref``, plus twice the baseline's wall time and half a second.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, final

from pytest_inferbudget.code.launch import Containment, weakest
from pytest_inferbudget.code.results import ExecutionResult, Executor, Outcome
from pytest_inferbudget.code.sandbox import run_candidate
from pytest_inferbudget.code.task import CENSOR_RULES, CensorRule, CodeTask, Level
from pytest_inferbudget.errors import ReferenceSolutionError, SandboxError

__all__ = [
    "LevelReference",
    "ReferenceCache",
    "ReferenceSolutionError",
    "ReferenceTimings",
    "SampleScore",
    "censoring_limits",
    "extract_code",
    "hodges_lehmann",
    "measure_reference",
    "score_levels",
    "score_sample",
]

MIN_REFERENCE_CPU_SECONDS: Final = 0.001
"""Floor on a level's net reference time: below it the level measures only noise. Design
timed levels so the reference spends tens of milliseconds on them."""

STARTUP_ALLOWANCE_SECONDS: Final = 0.5
"""Added to every wall limit, with twice the baseline's wall time, for process start-up."""

REFERENCE_WALL_SECONDS: Final = 120.0
"""Wall and CPU limit for the reference and baseline runs, which have no reference yet."""


def hodges_lehmann(values: Sequence[float]) -> float:
    """The Hodges-Lehmann estimate of location: the median of the Walsh averages
    ``(x_i + x_j) / 2`` over all pairs ``i <= j`` (each value paired with itself included, as
    ENAMEL's ``calc_exec_time`` does). Robust to a minority of slow outliers, and shifts
    with the data: ``hodges_lehmann([x + c for x in xs]) == hodges_lehmann(xs) + c``."""
    if len(values) == 0:
        raise ValueError("values is empty; pass at least one timing")
    checked: list[float] = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"values[{i}] must be a finite number, got {v!r}")
        checked.append(float(v))
    walsh = [
        (checked[i] + checked[j]) / 2.0 for i in range(len(checked)) for j in range(i, len(checked))
    ]
    return float(statistics.median(walsh))


def _check_levels(references: Sequence[float], weights: Sequence[float], alpha: float) -> None:
    if len(references) != len(weights):
        raise ValueError(
            f"references and weights differ in length ({len(references)} and {len(weights)})"
        )
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(w > 0 for w in weights):
        raise ValueError(f"weights must be finite, >= 0 and one > 0 at least, got {weights!r}")
    for r, w in zip(references, weights, strict=True):
        if not math.isfinite(r) or r < 0 or (w > 0 and r == 0):
            raise ValueError(
                f"reference times must be finite, and > 0 on timed levels, got {references!r}"
            )
    if isinstance(alpha, bool) or not math.isfinite(alpha) or alpha <= 1:
        raise ValueError(f"alpha must be a finite number > 1 (ENAMEL uses 2), got {alpha!r}")


def censoring_limits(
    references: Sequence[float],
    weights: Sequence[float],
    alpha: float = 2.0,
    censor: CensorRule = "enamel",
) -> tuple[float, ...]:
    """The censoring limit ``T`` of every level, at and beyond which it scores 0.

    ``"enamel"``: ``alpha * max(references[j] for the levels j with weights[j] > 0)`` for every
    level, as ENAMEL's ``Evaluator.evaluate1`` (``timeout_factor * refs.ref_max``);
    ``"per_level"``: ``alpha * references[j]``.
    """
    if censor not in CENSOR_RULES:
        raise ValueError(f"censor must be one of {CENSOR_RULES}, got {censor!r}")
    _check_levels(references, weights, alpha)
    if censor == "per_level":
        return tuple(alpha * r for r in references)
    ref_max = max(r for r, w in zip(references, weights, strict=True) if w > 0)
    return (alpha * ref_max,) * len(references)


def score_levels(
    times: Sequence[float | None],
    references: Sequence[float],
    weights: Sequence[float],
    alpha: float = 2.0,
    censor: CensorRule = "enamel",
) -> tuple[float, tuple[float, ...]]:
    """ENAMEL's score of a correct sample from its net time per level: ``(score, level scores)``.

    A timed level (weight > 0) scores ``e_j = max(0, T_j - t_j) / (T_j - t_ref_j)`` with
    ``T_j`` from :func:`censoring_limits` (ENAMEL's ``calc_eff``); a weight-0 level, and a
    level whose time is ``None`` (it did not finish: right-censored, never extrapolated),
    score 0. The score is ``sum(w_j * e_j) / sum(w_j)``.
    """
    if len(times) != len(references):
        raise ValueError(f"times and references differ in length ({len(times)}, {len(references)})")
    limits = censoring_limits(references, weights, alpha, censor)
    scores: list[float] = []
    for t, ref, weight, limit in zip(times, references, weights, limits, strict=True):
        if t is not None and (not math.isfinite(t) or t < 0):
            raise ValueError(f"a level's time must be finite and >= 0 or None, got {t!r}")
        scores.append(0.0 if t is None or weight <= 0 else max(0.0, limit - t) / (limit - ref))
    total = math.fsum(w * e for w, e in zip(weights, scores, strict=True)) / math.fsum(weights)
    return total, tuple(scores)


@final
@dataclass(frozen=True, slots=True)
class LevelReference:
    """What one level of a task costs the reference solution, in CPU seconds of the child."""

    cpu_seconds: float
    """Net reference time: HL of the reference's runs less HL of the baseline's, floored at
    :data:`MIN_REFERENCE_CPU_SECONDS`."""
    baseline_cpu_seconds: float
    """HL of the baseline child's CPU time: start-up and argument decoding, no work."""
    baseline_wall_seconds: float
    wall_limit_seconds: float
    """The wall (and CPU) limit a candidate gets on this level: ``timeout_factor`` times the
    larger of the level's censoring limit and ``alpha * cpu_seconds``, plus start-up."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_seconds": self.cpu_seconds,
            "baseline_cpu_seconds": self.baseline_cpu_seconds,
            "baseline_wall_seconds": self.baseline_wall_seconds,
            "wall_limit_seconds": self.wall_limit_seconds,
        }


@final
@dataclass(frozen=True, slots=True)
class ReferenceTimings:
    """A task's reference, level by level, and the censoring limits it sets."""

    levels: tuple[LevelReference, ...]
    censoring_seconds: tuple[float, ...]
    """``T`` per level under the task's ``censor`` rule (:func:`censoring_limits`)."""
    network_isolated: bool
    containment: Containment = Containment.NONE
    """The weakest containment any reference or baseline run had."""


def _baseline_source(entry_point: str) -> str:
    return f"def {entry_point}(*args, **kwargs):\n    return None\n"


def _repeats(task: CodeTask, level: Level) -> int:
    return task.repeats if level.timed else 1


def measure_reference(task: CodeTask, executor: Executor = run_candidate) -> ReferenceTimings:
    """Time the task's reference solution, level by level, interleaved with baseline runs.

    Raises :class:`ReferenceSolutionError` when the reference does not pass a level, and
    :class:`~pytest_inferbudget.code.sandbox.SandboxError` when the baseline cannot run.
    """
    measured: list[tuple[float, float, float]] = []  # (net reference, baseline, wall)
    isolated = True
    contained = Containment.BWRAP
    label = task.name or task.entry_point
    for j, level in enumerate(task.levels):
        ref_cpu: list[float] = []
        base_cpu: list[float] = []
        base_wall: list[float] = []
        for _ in range(_repeats(task, level)):
            base = executor(
                _baseline_source(task.entry_point),
                task.entry_point,
                level.tests,
                cpu_seconds=REFERENCE_WALL_SECONDS,
                memory_mb=task.memory_mb,
                wall_seconds=REFERENCE_WALL_SECONDS,
            )
            if base.outcome not in (Outcome.OK, Outcome.WRONG_ANSWER):
                raise SandboxError(
                    f"task {label}: the baseline run of level {j} failed ({base.outcome}: "
                    f"{base.detail}); is memory_mb={task.memory_mb} enough for the arguments?"
                )
            ref = executor(
                task.reference_solution,
                task.entry_point,
                level.tests,
                cpu_seconds=REFERENCE_WALL_SECONDS,
                memory_mb=task.memory_mb,
                wall_seconds=REFERENCE_WALL_SECONDS,
            )
            if ref.outcome is not Outcome.OK:
                raise ReferenceSolutionError(
                    f"task {label}: the reference solution fails level {j} ({ref.outcome}: "
                    f"{ref.detail}); stderr: {ref.stderr_tail[-300:]!r}"
                )
            isolated = isolated and base.network_isolated and ref.network_isolated
            contained = weakest(contained, base.containment, ref.containment)
            ref_cpu.append(ref.cpu_seconds)
            base_cpu.append(base.cpu_seconds)
            base_wall.append(base.wall_seconds)
        baseline = hodges_lehmann(base_cpu)
        measured.append(
            (
                max(MIN_REFERENCE_CPU_SECONDS, hodges_lehmann(ref_cpu) - baseline),
                baseline,
                hodges_lehmann(base_wall),
            )
        )
    nets = [net for net, _, _ in measured]
    limits = censoring_limits(nets, task.weights, task.alpha, task.censor)
    levels = [
        LevelReference(
            cpu_seconds=net,
            baseline_cpu_seconds=baseline,
            baseline_wall_seconds=wall,
            wall_limit_seconds=(
                STARTUP_ALLOWANCE_SECONDS
                + 2.0 * wall
                + task.timeout_factor * max(limit, task.alpha * net)
            ),
        )
        for (net, baseline, wall), limit in zip(measured, limits, strict=True)
    ]
    return ReferenceTimings(
        levels=tuple(levels),
        censoring_seconds=limits,
        network_isolated=isolated,
        containment=contained,
    )


class ReferenceCache:
    """Reference timings per (task, executor), measured once per process and reused.

    :func:`score_sample` uses a module-wide instance unless given one; pass a fresh one to
    re-measure (after a change of machine load, say). Evicts the oldest beyond ``max_entries``.
    """

    def __init__(self, max_entries: int = 128) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._max_entries = max_entries
        self._entries: dict[tuple[str, Executor], ReferenceTimings] = {}

    def get(self, task: CodeTask, executor: Executor = run_candidate) -> ReferenceTimings:
        key = (task.fingerprint, executor)
        found = self._entries.get(key)
        if found is None:
            found = measure_reference(task, executor)
            while len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = found
        return found

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_PROCESS_CACHE: Final = ReferenceCache()


@final
@dataclass(frozen=True, slots=True)
class SampleScore:
    """The efficiency score of one solution to one task, with how it was reached."""

    score: float
    """Weighted mean of ``level_scores``: 0 for a wrong sample, about 1 at the reference's
    speed, up to ``alpha / (alpha - 1)`` when faster than it at every level."""
    level_scores: tuple[float, ...]
    level_cpu_seconds: tuple[float | None, ...]
    """The candidate's net CPU time per level (HL, baseline subtracted); ``None`` when the
    level did not finish."""
    reference_cpu_seconds: tuple[float, ...]
    censoring_seconds: tuple[float, ...]
    """The censoring limit ``T`` of each level: a level scores 0 at this net CPU time."""
    censor: CensorRule
    """The task's rule for ``T`` (:data:`~pytest_inferbudget.code.task.CensorRule`)."""
    outcome: Outcome
    """``ok``, or the first failure met."""
    passed: bool
    """ENAMEL's correctness verdict: no wrong answer or error at any level that ran, and
    level 0 finished. A later timeout keeps ``passed`` true."""
    failed_level: int | None
    network_isolated: bool
    """Every child of this sample, and of the reference, ran without network."""
    detail: str
    containment: Containment = Containment.NONE
    """The weakest containment of the sample's runs and its reference's: ``bwrap``,
    ``unshare``, or ``none`` (uncontained, asked for with ``sandbox="none"``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "level_scores": list(self.level_scores),
            "level_cpu_seconds": list(self.level_cpu_seconds),
            "reference_cpu_seconds": list(self.reference_cpu_seconds),
            "censoring_seconds": list(self.censoring_seconds),
            "censor": self.censor,
            "outcome": str(self.outcome),
            "passed": self.passed,
            "failed_level": self.failed_level,
            "network_isolated": self.network_isolated,
            "detail": self.detail,
            "containment": str(self.containment),
        }


_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(text: str, entry_point: str) -> str:
    """The code in a model's answer: the fenced block that defines ``entry_point``, else
    the first fenced block, else the whole text (a bare answer)."""
    blocks = _FENCE.findall(text)
    for block in blocks:
        if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", block):
            return str(block)
    return str(blocks[0]) if blocks else text


def _stops_level_only(result: ExecutionResult) -> bool:
    """A resource limit (ENAMEL: timeout, MemoryError, OverflowError) ends the levels but
    keeps earlier scores; anything else zeroes the sample."""
    return result.outcome in (Outcome.TIMEOUT, Outcome.MEMORY_ERROR) or (
        result.outcome is Outcome.RUNTIME_ERROR and result.error_type == "OverflowError"
    )


def score_sample(
    task: CodeTask,
    source: str,
    executor: Executor = run_candidate,
    *,
    cache: ReferenceCache | None = None,
) -> SampleScore:
    """Score one generated ``source`` on ``task`` exactly as ENAMEL scores a sample (see the
    module docstring); the reference is timed on first use and cached (``cache``, by default
    one per process)."""
    reference = (cache if cache is not None else _PROCESS_CACHE).get(task, executor)
    n = len(task.levels)
    times: list[float | None] = [None] * n
    isolated = reference.network_isolated
    contained = reference.containment
    ref_times = tuple(lv.cpu_seconds for lv in reference.levels)

    def finish(outcome: Outcome, passed: bool, failed: int | None, detail: str) -> SampleScore:
        total, scores = score_levels(times, ref_times, task.weights, task.alpha, task.censor)
        return SampleScore(
            score=total if passed else 0.0,
            level_scores=scores if passed else (0.0,) * n,
            level_cpu_seconds=tuple(times),
            reference_cpu_seconds=ref_times,
            censoring_seconds=reference.censoring_seconds,
            censor=task.censor,
            outcome=outcome,
            passed=passed,
            failed_level=failed,
            network_isolated=isolated,
            detail=detail,
            containment=contained,
        )

    for j, level in enumerate(task.levels):
        limits = reference.levels[j]
        cpu: list[float] = []
        stopped: ExecutionResult | None = None
        for _ in range(_repeats(task, level)):
            result = executor(
                source,
                task.entry_point,
                level.tests,
                cpu_seconds=limits.wall_limit_seconds,
                memory_mb=task.memory_mb,
                wall_seconds=limits.wall_limit_seconds,
            )
            isolated = isolated and result.network_isolated
            contained = weakest(contained, result.containment)
            if result.outcome is not Outcome.OK:
                stopped = result
                break
            cpu.append(result.cpu_seconds)
        if stopped is not None:
            detail = f"level {j}: {stopped.detail}"
            if j == 0 or not _stops_level_only(stopped):
                return finish(stopped.outcome, False, j, detail)
            # Right-censored: this level and the later ones keep no time and score 0.
            return finish(stopped.outcome, True, j, detail + "; this and later levels score 0")
        # A weight-0 level only checks correctness; ENAMEL gives it no reference time, so
        # its efficiency is 0 there too (and it carries no weight either way).
        times[j] = max(0.0, hodges_lehmann(cpu) - limits.baseline_cpu_seconds)
    return finish(Outcome.OK, True, None, "every level passed")
