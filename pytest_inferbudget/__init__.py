"""pytest-inferbudget: efficiency budgets for LLM inference, asserted in pytest.

Names are loaded on first use, so that pytest's start-up pays only for what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_EXPORTS = {
    "Engine": "engines",
    "EngineSpec": "engines",
    "BudgetSpecError": "errors",
    "EngineError": "errors",
    "EngineSpecError": "errors",
    "EngineUnavailableError": "errors",
    "InferBudgetError": "errors",
    "ReportError": "errors",
    "Recorder": "recorder",
    "BudgetResult": "records",
    "Generation": "records",
    "Request": "records",
    "Response": "records",
    "RunRecord": "records",
    "TestRecord": "records",
}

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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pytest_inferbudget.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pytest_inferbudget' has no attribute {name!r}")
