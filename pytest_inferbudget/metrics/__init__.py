"""Pure metric functions: no pytest, no torch, no numpy.

The package is loaded once a budgeted test has run (never by ``pytest --co``), so it
imports its modules eagerly: ``from pytest_inferbudget.metrics import pass_at_k`` works
beside ``metrics.accuracy.pass_at_k``.

- :mod:`~pytest_inferbudget.metrics.stats`: the ``stat=`` statistics of samples.
- :mod:`~pytest_inferbudget.metrics.accuracy`: pass@k, eff@k, maj@k, cost-of-pass, E3.
- :mod:`~pytest_inferbudget.metrics.confidence`: order-statistic intervals, confidence
  sequences and the verdicts they give.
- :mod:`~pytest_inferbudget.metrics.entropy`: a next-token distribution's entropy, whole
  or from its top k (difficulty routing).
- :mod:`~pytest_inferbudget.metrics.significance`: Mann-Whitney U, Holm, bootstrap ratios.
- :mod:`~pytest_inferbudget.metrics.noninferiority`: tokens saved and paired
  non-inferiority of one strategy against another (the ``tokens_saved`` budget).
"""

from __future__ import annotations

from pytest_inferbudget.metrics.accuracy import (
    accuracy_per_token,
    bootstrap_ci,
    cost_of_pass,
    e3,
    eff_at_k,
    eff_at_k_problems,
    efficiency_score,
    maj_at_k,
    pass_at_k,
    pass_at_k_problems,
)
from pytest_inferbudget.metrics.confidence import (
    mean_confidence_sequence,
    mean_verdict,
    quantile_ci,
    quantile_verdict,
)
from pytest_inferbudget.metrics.entropy import entropy, top_k_entropy
from pytest_inferbudget.metrics.information import (
    bits_per_byte,
    code_length_bits,
    information_capacity,
)
from pytest_inferbudget.metrics.significance import (
    bootstrap_log_ratio,
    holm,
    mann_whitney_u,
    paired_min_p,
    paired_permutation_p,
)
from pytest_inferbudget.metrics.stats import STATISTICS, quantile, summarize

__all__ = [
    "STATISTICS",
    "accuracy_per_token",
    "bits_per_byte",
    "bootstrap_ci",
    "bootstrap_log_ratio",
    "code_length_bits",
    "cost_of_pass",
    "e3",
    "eff_at_k",
    "eff_at_k_problems",
    "efficiency_score",
    "entropy",
    "holm",
    "information_capacity",
    "maj_at_k",
    "mann_whitney_u",
    "mean_confidence_sequence",
    "mean_verdict",
    "paired_min_p",
    "paired_permutation_p",
    "pass_at_k",
    "pass_at_k_problems",
    "quantile",
    "quantile_ci",
    "quantile_verdict",
    "summarize",
    "top_k_entropy",
]
