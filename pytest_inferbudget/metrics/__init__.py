"""Pure metric functions: no pytest, no torch, no numpy."""

from __future__ import annotations

from pytest_inferbudget.metrics.stats import STATISTICS, quantile, summarize

__all__ = ["STATISTICS", "quantile", "summarize"]
