"""The package's own exceptions: each message names the problem and the fix."""

from __future__ import annotations


class InferBudgetError(Exception):
    """Base of every error this package raises on purpose."""


class BudgetSpecError(InferBudgetError, ValueError):
    """A ``budget`` marker has an unknown key, a bad value or a conflict."""


class EngineSpecError(InferBudgetError, ValueError):
    """An engine spec names no known engine or has malformed options."""


class EngineUnavailableError(InferBudgetError):
    """An engine's extra is not installed, or its model cannot be had."""


class EngineError(InferBudgetError):
    """The engine failed while generating: an infrastructure fault, not a budget violation."""


class ReportError(InferBudgetError):
    """A report or saved run could not be written or read."""


class ComparisonError(InferBudgetError, ValueError):
    """Two runs cannot be compared: different hardware, a malformed run or bad settings."""


class InconclusiveBudgetWarning(UserWarning):
    """A confident budget could not be settled within its samples (strict mode fails it)."""
