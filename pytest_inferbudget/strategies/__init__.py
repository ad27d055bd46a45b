"""Inference-time strategies as plain, cost-accounted objects.

Every strategy has a ``name`` and ``run(engine, prompt, *, max_new_tokens, seed)``
returning a :class:`StrategyResult` that holds the chosen answer and every engine
response it cost. Strategies use only the Engine protocol and the records: no torch,
no pytest. See ``docs/strategies.md``.
"""

from __future__ import annotations

from pytest_inferbudget.errors import StrategyConfigError, StrategyError
from pytest_inferbudget.strategies.adaptive import (
    AdaptiveConsistency,
    beta_stop_probability,
    dirichlet_stop_probability,
)
from pytest_inferbudget.strategies.base import (
    Candidate,
    Extractor,
    Normalizer,
    Scorer,
    Strategy,
    StrategyResult,
    derive_seed,
)
from pytest_inferbudget.strategies.extract import (
    boxed,
    first_word,
    last_number,
    normalize_number,
    regex,
)
from pytest_inferbudget.strategies.route import ROUTE_SIGNALS, Route, RouteSignal
from pytest_inferbudget.strategies.sampling import BestOfN, Greedy, Sample
from pytest_inferbudget.strategies.sequential import DEFAULT_CRITIQUE, Revise, TokenBudget
from pytest_inferbudget.strategies.voting import BestOfMajority, SelfConsistency

__all__ = [
    "DEFAULT_CRITIQUE",
    "ROUTE_SIGNALS",
    "AdaptiveConsistency",
    "BestOfMajority",
    "BestOfN",
    "Candidate",
    "Extractor",
    "Greedy",
    "Normalizer",
    "Revise",
    "Route",
    "RouteSignal",
    "Sample",
    "Scorer",
    "SelfConsistency",
    "Strategy",
    "StrategyConfigError",
    "StrategyError",
    "StrategyResult",
    "TokenBudget",
    "beta_stop_probability",
    "boxed",
    "derive_seed",
    "dirichlet_stop_probability",
    "first_word",
    "last_number",
    "normalize_number",
    "regex",
]
