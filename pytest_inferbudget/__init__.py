"""pytest-inferbudget: efficiency budgets for LLM inference, asserted in pytest.

The public names, loaded on first use so that pytest's start-up pays only for what it
runs. :data:`_EXPORTS` is the one table: it feeds ``__all__``, the lazy loader and (under
``TYPE_CHECKING``) the type checker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_inferbudget.engines import (
        Engine as Engine,
        EngineSpec as EngineSpec,
    )
    from pytest_inferbudget.errors import (
        BudgetSpecError as BudgetSpecError,
        CalibrationError as CalibrationError,
        CodeTaskError as CodeTaskError,
        ComparisonError as ComparisonError,
        EngineError as EngineError,
        EngineSpecError as EngineSpecError,
        EngineUnavailableError as EngineUnavailableError,
        FitError as FitError,
        FlopsError as FlopsError,
        InconclusiveBudgetWarning as InconclusiveBudgetWarning,
        InferBudgetError as InferBudgetError,
        MeterChoiceError as MeterChoiceError,
        MeterError as MeterError,
        MeterNotSupportedError as MeterNotSupportedError,
        MeterUnavailableError as MeterUnavailableError,
        ProfileError as ProfileError,
        ReferenceSolutionError as ReferenceSolutionError,
        ReportError as ReportError,
        SandboxError as SandboxError,
        ServerStartError as ServerStartError,
        StrategyConfigError as StrategyConfigError,
        StrategyError as StrategyError,
    )
    from pytest_inferbudget.recorder import Recorder as Recorder
    from pytest_inferbudget.records import (
        BudgetResult as BudgetResult,
        Generation as Generation,
        Request as Request,
        Response as Response,
        RunRecord as RunRecord,
        TestRecord as TestRecord,
    )
    from pytest_inferbudget.strategies import StrategyResult as StrategyResult

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Engine": "engines",
    "EngineSpec": "engines",
    "BudgetSpecError": "errors",
    "CalibrationError": "errors",
    "CodeTaskError": "errors",
    "ComparisonError": "errors",
    "EngineError": "errors",
    "EngineSpecError": "errors",
    "EngineUnavailableError": "errors",
    "FitError": "errors",
    "FlopsError": "errors",
    "InconclusiveBudgetWarning": "errors",
    "InferBudgetError": "errors",
    "MeterChoiceError": "errors",
    "MeterError": "errors",
    "MeterNotSupportedError": "errors",
    "MeterUnavailableError": "errors",
    "ProfileError": "errors",
    "ReferenceSolutionError": "errors",
    "ReportError": "errors",
    "SandboxError": "errors",
    "ServerStartError": "errors",
    "StrategyConfigError": "errors",
    "StrategyError": "errors",
    "Recorder": "recorder",
    "BudgetResult": "records",
    "Generation": "records",
    "Request": "records",
    "Response": "records",
    "RunRecord": "records",
    "TestRecord": "records",
    "StrategyResult": "strategies",
}
"""Public name -> the module (under ``pytest_inferbudget``) that defines it."""

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pytest_inferbudget.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pytest_inferbudget' has no attribute {name!r}")
