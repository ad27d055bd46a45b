"""Body of the ``load`` fixture: a :class:`LoadTester` on the session's engine, with the
budget marker's SLO as its default.

PYTEST_DONT_REWRITE: holds no asserts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_inferbudget.budget import LOAD_KEYS, item_budget
from pytest_inferbudget.load.slo import Slo
from pytest_inferbudget.load.tester import LoadTester, LoadUnsupportedError

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine
    from pytest_inferbudget.recorder import Recorder


def make_load_tester(
    request: pytest.FixtureRequest, recorder: Recorder, engine: Engine
) -> LoadTester:
    """The marker's first SLO (and its attainment floor and confidence) become the
    defaults of ``load.run`` and ``load.find_max_rate``."""
    slo = None
    confidence = attainment = None
    for limit in item_budget(request.node).limits:
        if limit.key in LOAD_KEYS and limit.slo and slo is None:
            slo = Slo.parse(limit.slo, require_correct=limit.requires_correct)
        if limit.key == "attainment":
            attainment = attainment or limit.limit
            confidence = confidence or limit.confidence
    try:
        return LoadTester(engine, recorder, slo=slo, confidence=confidence, attainment=attainment)
    except LoadUnsupportedError as exc:
        pytest.fail(f"inferbudget: {exc}", pytrace=False)
