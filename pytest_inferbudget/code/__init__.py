"""eff@k for generated code: ENAMEL-style tasks, a contained executor, and per-sample scores.

- :mod:`~pytest_inferbudget.code.task`: :class:`CodeTask` (levels of tests, reference
  solution) and its JSON form; an example lies in ``tasks/count_primes.json``
  (:func:`example_task_path`); ``is_even.json`` and ``is_prime.json`` are easier ones that
  the default model can solve, for the example suite.
- :mod:`~pytest_inferbudget.code.sandbox`: :func:`run_candidate` runs code in a child process
  with rlimits, namespaces and parent-side CPU timing.
- :mod:`~pytest_inferbudget.code.scoring`: :func:`score_sample`, ENAMEL's per-sample
  efficiency score; feed the scores of n samples to
  :func:`~pytest_inferbudget.metrics.accuracy.eff_at_k`.

Standard library only; nothing here imports pytest.
"""

from __future__ import annotations

from pathlib import Path

from pytest_inferbudget.code.sandbox import (
    ExecutionResult,
    Executor,
    Isolation,
    Outcome,
    SandboxError,
    probe_isolation,
    run_candidate,
    unprivileged_interpreter,
)
from pytest_inferbudget.code.scoring import (
    LevelReference,
    ReferenceCache,
    ReferenceSolutionError,
    ReferenceTimings,
    SampleScore,
    extract_code,
    hodges_lehmann,
    measure_reference,
    score_sample,
)
from pytest_inferbudget.code.task import (
    ENAMEL_LEVEL_SIZES,
    ENAMEL_LEVEL_WEIGHTS,
    CodeTask,
    CodeTaskError,
    Level,
    TestCase,
    enamel_levels,
    load_task,
)

__all__ = [
    "ENAMEL_LEVEL_SIZES",
    "ENAMEL_LEVEL_WEIGHTS",
    "CodeTask",
    "CodeTaskError",
    "ExecutionResult",
    "Executor",
    "Isolation",
    "Level",
    "LevelReference",
    "Outcome",
    "ReferenceCache",
    "ReferenceSolutionError",
    "ReferenceTimings",
    "SampleScore",
    "SandboxError",
    "TestCase",
    "enamel_levels",
    "example_task_path",
    "extract_code",
    "hodges_lehmann",
    "load_task",
    "measure_reference",
    "probe_isolation",
    "run_candidate",
    "score_sample",
    "unprivileged_interpreter",
]


def example_task_path(name: str = "count_primes") -> Path:
    """Path of a task file shipped in ``pytest_inferbudget/code/tasks/``."""
    path = Path(__file__).parent / "tasks" / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.json"))
        raise CodeTaskError(f"no shipped code task {name!r}; available: {available}")
    return path
