"""Every exception and warning class of the package, in one module: each message names
the problem and the fix. The modules that raise them import them from here."""

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


class StrategyError(InferBudgetError):
    """A strategy could not produce a trustworthy result.

    Raised when a scorer or an extractor raises (the original exception is chained),
    returns something unusable, or when the engine breaks its protocol or cannot give
    what the strategy needs (log-probabilities).
    """


class StrategyConfigError(StrategyError, ValueError):
    """A strategy was built or run with a bad parameter (``n < 1``, ``k > n``, ...)."""


class CodeTaskError(InferBudgetError, ValueError):
    """A code task is malformed: a bad field, a value that is not JSON, an unreadable file."""


class ReferenceSolutionError(InferBudgetError):
    """The task's reference solution fails its own tests: the task is broken, not the sample."""


class SandboxError(InferBudgetError):
    """The sandbox itself failed (the interpreter did not start, a limit is impossible): an
    infrastructure fault, never the candidate's verdict."""


class MeterError(InferBudgetError):
    """A meter failed, or was used wrongly (a window key opened twice, closed unopened)."""


class MeterUnavailableError(MeterError):
    """The meter cannot measure on this machine; the message says why and how to fix it."""


class MeterNotSupportedError(MeterError):
    """The hardware does not support one query (NVML's NOT_SUPPORTED), others may work."""


class MeterChoiceError(MeterError, ValueError):
    """``select_meter`` was given a name that is not one of :data:`METER_CHOICES`."""


class FlopsError(InferBudgetError, ValueError):
    """A config lacks what the count needs, or an argument is out of range."""


class ProfileError(InferBudgetError, ValueError):
    """A runtime profile is malformed, or its file is corrupt or of another version."""


class FitError(InferBudgetError, ValueError):
    """The timing samples cannot determine a profile (too few, degenerate, too noisy)."""


class CalibrationError(InferBudgetError):
    """The engine did not give what calibration needs (timings, a prompt length)."""


class ServerStartError(EngineUnavailableError):
    """The server exited or did not answer in time; the message carries its log's tail."""


class InconclusiveBudgetWarning(UserWarning):
    """A confident budget could not be settled within its samples (strict mode fails it)."""
