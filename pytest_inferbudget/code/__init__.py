"""eff@k for generated code: ENAMEL-style tasks, a contained executor, and per-sample scores.

- :mod:`~pytest_inferbudget.code.task`: :class:`CodeTask` (levels of tests, reference
  solution) and its JSON form; an example lies in ``tasks/count_primes.json``
  (:func:`example_task_path`); ``is_even.json`` and ``is_prime.json`` are easier ones that
  the default model can solve, for the example suite.
- :mod:`~pytest_inferbudget.code.sandbox`: :func:`run_candidate` runs code in a contained
  child process with rlimits and parent-side CPU timing; :class:`Sandboxed` is the same as an
  executor with a fixed ``sandbox`` choice. It is built from
  :mod:`~pytest_inferbudget.code.isolation` (which containment works here: bubblewrap,
  :mod:`~pytest_inferbudget.code.bwrap`, else ``unshare``,
  :mod:`~pytest_inferbudget.code.unshare`, else a refusal; their shared vocabulary,
  :class:`Containment` and :class:`SandboxChoice`, in :mod:`~pytest_inferbudget.code.launch`),
  :mod:`~pytest_inferbudget.code.supervision` (limits, process group, wall-clock kill, CPU
  time from ``os.wait4``), :mod:`~pytest_inferbudget.code.harness` (the child's side, run as
  a file), :mod:`~pytest_inferbudget.code.protocol` (the parent's reading and judging of the
  child's records) and :mod:`~pytest_inferbudget.code.results` (:class:`Outcome`,
  :class:`ExecutionResult`, :class:`Executor`).
- :mod:`~pytest_inferbudget.code.scoring`: :func:`score_sample`, ENAMEL's per-sample
  efficiency score (:func:`score_levels` and :func:`censoring_limits` hold its arithmetic);
  feed the scores of n samples to :func:`~pytest_inferbudget.metrics.accuracy.eff_at_k`.

Standard library only; nothing here imports pytest.
"""

from __future__ import annotations

from pathlib import Path

from pytest_inferbudget.code.isolation import Isolation, probe_isolation, unprivileged_interpreter
from pytest_inferbudget.code.launch import Containment, SandboxChoice
from pytest_inferbudget.code.results import ExecutionResult, Executor, Outcome
from pytest_inferbudget.code.sandbox import Sandboxed, run_candidate
from pytest_inferbudget.code.scoring import (
    LevelReference,
    ReferenceCache,
    ReferenceTimings,
    SampleScore,
    censoring_limits,
    extract_code,
    hodges_lehmann,
    measure_reference,
    score_levels,
    score_sample,
)
from pytest_inferbudget.code.task import (
    CENSOR_RULES,
    ENAMEL_LEVEL_SIZES,
    ENAMEL_LEVEL_WEIGHTS,
    CensorRule,
    CodeTask,
    Level,
    TestCase,
    enamel_levels,
    load_task,
)
from pytest_inferbudget.errors import CodeTaskError, ReferenceSolutionError, SandboxError

__all__ = [
    "CENSOR_RULES",
    "ENAMEL_LEVEL_SIZES",
    "ENAMEL_LEVEL_WEIGHTS",
    "CensorRule",
    "CodeTask",
    "CodeTaskError",
    "Containment",
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
    "SandboxChoice",
    "SandboxError",
    "Sandboxed",
    "TestCase",
    "censoring_limits",
    "enamel_levels",
    "example_task_path",
    "extract_code",
    "hodges_lehmann",
    "load_task",
    "measure_reference",
    "probe_isolation",
    "run_candidate",
    "score_levels",
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
