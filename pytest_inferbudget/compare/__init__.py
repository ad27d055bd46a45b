"""Comparing a run against a saved baseline: which changes are regressions.

A change is a *regression* only when it is both statistically significant and larger than
a tolerance: two-sided Mann-Whitney U on the per-request samples of each compared metric
(the rows of ``budget.KEYS`` marked ``compared``), Holm-corrected across the metrics of one
test, and a relative change of the median above the metric's threshold. Beside it:

- greedy token counts of matching requests are deterministic, so they are compared
  request by request (``exact``);
- when the samples are too few for Mann-Whitney ever to reach significance (3 against 3
  requests cannot go below p = 0.1), a deterministic quantity (token counts) is judged on
  its point change (``point``) and anything else is ``inconclusive (n too small)``, never
  silently passed;
- identical samples are ``equal``;
- accuracy (pass@k, maj@k, eff@k) is compared per problem, paired where the problems
  match (``paired``: a sign-flip permutation test); cost-of-pass and E3 on their point
  change.

The statistics are pure functions in :mod:`pytest_inferbudget.metrics.significance`; the
result is a :class:`~pytest_inferbudget.records.Comparison`; reports render it.
"""

from __future__ import annotations

from pytest_inferbudget.compare.judge import DEFAULT_THRESHOLD
from pytest_inferbudget.compare.runs import (
    check_comparable,
    compare_runs,
    compare_test,
    describe_run,
    hardware_key,
)
from pytest_inferbudget.contention import LOAD_TOLERANCE
from pytest_inferbudget.errors import ComparisonError

__all__ = [
    "DEFAULT_THRESHOLD",
    "LOAD_TOLERANCE",
    "ComparisonError",
    "check_comparable",
    "compare_runs",
    "compare_test",
    "describe_run",
    "hardware_key",
]
