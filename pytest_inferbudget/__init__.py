"""pytest-inferbudget: efficiency budgets for LLM inference, asserted in pytest."""

from __future__ import annotations

from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.errors import (
    BudgetSpecError,
    EngineError,
    EngineSpecError,
    EngineUnavailableError,
    InferBudgetError,
    ReportError,
)
from pytest_inferbudget.recorder import Recorder
from pytest_inferbudget.records import (
    BudgetResult,
    Generation,
    Request,
    Response,
    RunRecord,
    TestRecord,
)

__version__ = "0.1.0"

__all__ = [
    "BudgetResult",
    "BudgetSpecError",
    "Engine",
    "EngineError",
    "EngineSpec",
    "EngineSpecError",
    "EngineUnavailableError",
    "Generation",
    "InferBudgetError",
    "Recorder",
    "ReportError",
    "Request",
    "Response",
    "RunRecord",
    "TestRecord",
    "__version__",
]
