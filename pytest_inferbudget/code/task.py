"""A code-efficiency task: a prompt, an entry point, graded test levels and an expert reference.

The shape follows ENAMEL (Qiu et al. 2024, "How Efficient is LLM-Generated Code?", public
repository q-rz/enamel): tests come in levels of rising input size; level 0 checks correctness
only (weight 0) and the later levels are timed against the reference solution. Every value
here is JSON (``to_dict`` / ``from_dict`` / :func:`load_task`), so a task file can be read by
hand and a test's arguments cross to the sandboxed child unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, final, get_args

from pytest_inferbudget.errors import CodeTaskError

__all__ = [
    "CENSOR_RULES",
    "ENAMEL_LEVEL_SIZES",
    "ENAMEL_LEVEL_WEIGHTS",
    "CensorRule",
    "CodeTask",
    "CodeTaskError",
    "Level",
    "TestCase",
    "enamel_levels",
    "load_task",
]

ENAMEL_LEVEL_SIZES: Final = (8, 4, 4, 4)
"""Tests per level in ENAMEL's default setting (``--n_tests 8,4,4,4``)."""

ENAMEL_LEVEL_WEIGHTS: Final = (0.0, 3.0, 3.0, 4.0)
"""Level weights in ENAMEL's default setting (``--hardness 0,3,3,4``): level 0 is not timed."""

CensorRule = Literal["enamel", "per_level"]
"""Where a level's score reaches 0 (see :func:`~pytest_inferbudget.code.scoring.
censoring_limits`): ``"enamel"``, at ``alpha`` times the largest reference time over the timed
levels, for every level (ENAMEL's ``Evaluator.evaluate1``); ``"per_level"``, at ``alpha`` times
that level's own reference time."""

CENSOR_RULES: Final[tuple[CensorRule, ...]] = get_args(CensorRule)

SCHEMA_VERSION: Final = 1


def _to_json(value: object, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CodeTaskError(
            f"{what} must be plain JSON (None, bool, int, finite float, str, list, dict with "
            f"str keys), got {value!r}: {exc}"
        ) from None


def _close(got: object, want: object, tolerance: float | None) -> bool:
    """Structural equality of two decoded JSON values; numbers within ``tolerance`` (relative
    and absolute, as ``math.isclose``) when one is given. ``True`` never equals ``1`` here."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, int | float) and isinstance(got, int | float):
        if tolerance is None:
            return got == want
        return math.isclose(got, want, rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(
            _close(g, w, tolerance) for g, w in zip(got, want, strict=True)
        )
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(_close(got[k], want[k], tolerance) for k in want)
    return type(got) is type(want) and got == want


@final
@dataclass(frozen=True, slots=True)
class TestCase:
    """One call ``entry_point(*args)`` and the value it must return.

    ``args`` and ``expected`` are JSON values. The candidate's return value is sent back as
    JSON and compared in the parent process (tuples arrive as lists), by equality, or with
    ``tolerance`` on every number when it is set (``math.isclose`` with that rel_tol and
    abs_tol), for float answers.
    """

    __test__ = False  # not a pytest test class, despite the name

    args: tuple[Any, ...]
    expected: Any
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.args, list):
            object.__setattr__(self, "args", tuple(self.args))
        if not isinstance(self.args, tuple):
            raise CodeTaskError(f"args must be a tuple of JSON values, got {self.args!r}")
        _to_json(list(self.args), "args")
        # Keep expected in its decoded-JSON form, so comparison sees lists where the
        # candidate's tuples arrive as lists too.
        object.__setattr__(self, "expected", json.loads(_to_json(self.expected, "expected")))
        if self.tolerance is not None and (
            isinstance(self.tolerance, bool)
            or not isinstance(self.tolerance, int | float)
            or not math.isfinite(self.tolerance)
            or self.tolerance < 0
        ):
            raise CodeTaskError(
                f"tolerance must be None or a finite number >= 0, got {self.tolerance!r}"
            )

    def check(self, value: object) -> bool:
        """Whether a decoded return value answers this test."""
        return _close(value, self.expected, self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"args": list(self.args), "expected": self.expected}
        if self.tolerance is not None:
            data["tolerance"] = self.tolerance
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestCase:
        _check_keys(data, required={"args", "expected"}, optional={"tolerance"}, what="a test")
        if not isinstance(data["args"], list | tuple):
            raise CodeTaskError(f"a test's args must be a list, got {data['args']!r}")
        return cls(
            args=tuple(data["args"]), expected=data["expected"], tolerance=data.get("tolerance")
        )


@final
@dataclass(frozen=True, slots=True)
class Level:
    """Tests of one hardness, run together in one child process and timed as a whole.

    ``weight`` is the level's share of the sample's score; weight 0 (ENAMEL's level 0) means
    correctness only: the level is run once and its time is not scored.
    """

    tests: tuple[TestCase, ...]
    weight: float

    def __post_init__(self) -> None:
        if isinstance(self.tests, list):
            object.__setattr__(self, "tests", tuple(self.tests))
        if not self.tests:
            raise CodeTaskError("a level needs at least one test")
        if not all(isinstance(t, TestCase) for t in self.tests):
            raise CodeTaskError("a level's tests must be TestCase objects")
        if (
            isinstance(self.weight, bool)
            or not isinstance(self.weight, int | float)
            or not math.isfinite(self.weight)
            or self.weight < 0
        ):
            raise CodeTaskError(
                f"a level's weight must be a finite number >= 0, got {self.weight!r}"
            )

    @property
    def timed(self) -> bool:
        return self.weight > 0

    def to_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "tests": [t.to_dict() for t in self.tests]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Level:
        _check_keys(data, required={"tests", "weight"}, optional=set(), what="a level")
        tests = data["tests"]
        if not isinstance(tests, list):
            raise CodeTaskError(f"a level's tests must be a list, got {tests!r}")
        return cls(tests=tuple(TestCase.from_dict(t) for t in tests), weight=data["weight"])


def enamel_levels(
    groups: Sequence[Sequence[TestCase]], *, check_sizes: bool = True
) -> tuple[Level, ...]:
    """Four levels with ENAMEL's default weights 0, 3, 3, 4, from four groups of tests of
    rising size; with ``check_sizes`` the groups must hold 8, 4, 4 and 4 tests as ENAMEL's."""
    if len(groups) != len(ENAMEL_LEVEL_WEIGHTS):
        raise CodeTaskError(f"ENAMEL uses 4 levels, got {len(groups)} groups of tests")
    sizes = tuple(len(g) for g in groups)
    if check_sizes and sizes != ENAMEL_LEVEL_SIZES:
        raise CodeTaskError(
            f"ENAMEL's levels hold {ENAMEL_LEVEL_SIZES} tests, got {sizes}; "
            "pass check_sizes=False to keep other sizes"
        )
    return tuple(
        Level(tests=tuple(g), weight=w) for g, w in zip(groups, ENAMEL_LEVEL_WEIGHTS, strict=True)
    )


def _check_keys(
    data: Mapping[str, Any], *, required: set[str], optional: set[str], what: str
) -> None:
    if not isinstance(data, Mapping):
        raise CodeTaskError(f"{what} must be a JSON object, got {data!r}")
    missing = required - data.keys()
    unknown = data.keys() - required - optional
    if missing:
        raise CodeTaskError(f"{what} lacks the keys {sorted(missing)}")
    if unknown:
        raise CodeTaskError(
            f"{what} has unknown keys {sorted(unknown)}; known: {sorted(required | optional)}"
        )


@final
@dataclass(frozen=True, slots=True)
class CodeTask:
    """A problem whose generated solutions are scored for correctness and efficiency.

    - ``prompt``: what the model is asked (often a signature and docstring).
    - ``entry_point``: the function a solution must define.
    - ``levels``: graded tests (:class:`Level`); ENAMEL's default is four levels of 8, 4, 4, 4
      tests weighted 0, 3, 3, 4 (:func:`enamel_levels`).
    - ``reference_solution``: Python source defining ``entry_point``, the expert bar. It must
      pass every test.
    - ``alpha``: the censoring factor (ENAMEL's ``timeout_factor``, 2 by default): a level scores
      0 at ``alpha`` times the reference's time, the largest over the timed levels by default.
    - ``censor``: which reference time ``alpha`` multiplies (:data:`CensorRule`): ``"enamel"``
      (the default, ENAMEL's rule) the largest over the timed levels, ``"per_level"`` the
      level's own.
    - ``repeats``: runs per timed level, summarised by the Hodges-Lehmann estimator.
    - ``timeout_factor``: the wall limit of a level is ``timeout_factor`` times its censoring
      limit (plus the measured start-up time of a child), so the kill comes after the score
      has already reached 0 and contention cannot turn a slow run into a timeout. Not ENAMEL's
      ``timeout_factor``, which is ``alpha`` here.
    - ``memory_mb``: the address-space limit of the child, in MiB.
    - ``name``: a label for reports.
    """

    prompt: str
    entry_point: str
    levels: tuple[Level, ...]
    reference_solution: str
    alpha: float = 2.0
    repeats: int = 3
    timeout_factor: float = 2.0
    memory_mb: int = 1024
    name: str = ""
    censor: CensorRule = "enamel"
    _fingerprint: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        if isinstance(self.levels, list):
            object.__setattr__(self, "levels", tuple(self.levels))
        problems: list[str] = []
        for key in ("prompt", "reference_solution", "name"):
            if not isinstance(getattr(self, key), str):
                problems.append(f"{key} must be a string")
        if not isinstance(self.entry_point, str) or not self.entry_point.isidentifier():
            problems.append(f"entry_point must be a Python identifier, got {self.entry_point!r}")
        if not self.levels or not all(isinstance(lv, Level) for lv in self.levels):
            problems.append("levels must be a non-empty tuple of Level")
        elif not any(lv.timed for lv in self.levels):
            problems.append("at least one level needs a weight > 0, or nothing is scored")
        if not _real(self.alpha) or not self.alpha > 1:
            problems.append(f"alpha must be a number > 1 (ENAMEL uses 2), got {self.alpha!r}")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            problems.append(f"repeats must be an integer >= 1, got {self.repeats!r}")
        if not _real(self.timeout_factor) or not self.timeout_factor >= 1:
            problems.append(f"timeout_factor must be a number >= 1, got {self.timeout_factor!r}")
        if isinstance(self.memory_mb, bool) or not isinstance(self.memory_mb, int):
            problems.append(f"memory_mb must be an integer, got {self.memory_mb!r}")
        elif self.memory_mb < 64:
            problems.append(
                f"memory_mb must be >= 64 (Python itself needs some), got {self.memory_mb}"
            )
        if self.censor not in CENSOR_RULES:
            problems.append(f"censor must be one of {CENSOR_RULES}, got {self.censor!r}")
        if problems:
            raise CodeTaskError("; ".join(problems))
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "_fingerprint", canonical)

    @property
    def fingerprint(self) -> str:
        """The task's canonical JSON: equal tasks, and only those, share it (a cache key)."""
        return self._fingerprint

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(lv.weight for lv in self.levels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "reference_solution": self.reference_solution,
            "alpha": self.alpha,
            "repeats": self.repeats,
            "timeout_factor": self.timeout_factor,
            "memory_mb": self.memory_mb,
            "censor": self.censor,
            "levels": [lv.to_dict() for lv in self.levels],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodeTask:
        _check_keys(
            data,
            required={"prompt", "entry_point", "reference_solution", "levels"},
            optional={
                "schema_version",
                "name",
                "alpha",
                "repeats",
                "timeout_factor",
                "memory_mb",
                "censor",
            },
            what="a code task",
        )
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise CodeTaskError(
                f"code task schema_version {version!r} is not supported (this version reads "
                f"{SCHEMA_VERSION})"
            )
        levels = data["levels"]
        if not isinstance(levels, list):
            raise CodeTaskError(f"a code task's levels must be a list, got {levels!r}")
        defaults = cls.__dataclass_fields__
        return cls(
            prompt=data["prompt"],
            entry_point=data["entry_point"],
            reference_solution=data["reference_solution"],
            levels=tuple(Level.from_dict(lv) for lv in levels),
            alpha=data.get("alpha", defaults["alpha"].default),
            repeats=data.get("repeats", defaults["repeats"].default),
            timeout_factor=data.get("timeout_factor", defaults["timeout_factor"].default),
            memory_mb=data.get("memory_mb", defaults["memory_mb"].default),
            name=data.get("name", ""),
            censor=data.get("censor", defaults["censor"].default),
        )


def _real(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def load_task(path: str | Path) -> CodeTask:
    """Read a task from a JSON file; any problem is a :class:`CodeTaskError` naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CodeTaskError(f"cannot read code task {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CodeTaskError(f"code task {path} is not valid JSON: {exc}") from exc
    try:
        task = CodeTask.from_dict(data)
    except CodeTaskError as exc:
        raise CodeTaskError(f"code task {path}: {exc}") from exc
    if not task.name:
        task = CodeTask.from_dict({**task.to_dict(), "name": path.stem})
    return task
