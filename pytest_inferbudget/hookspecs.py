"""Hooks other packages implement to add engines (more hooks come with meters and reports).

PYTEST_DONT_REWRITE: loaded at start-up and holds no asserts; this skips pytest's pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine, EngineSpec, Progress
    from pytest_inferbudget.meters import Meter


@pytest.hookspec(firstresult=True)
def pytest_inferbudget_make_engine(
    spec: EngineSpec, config: pytest.Config, progress: Progress
) -> Engine | None:
    """Build the session's engine for ``spec``, or return None to leave it to others.

    The built-in engines answer last (``trylast``), so a plugin or conftest that
    implements this hook can serve any spec, its own names included.
    """


@pytest.hookspec(firstresult=True)
def pytest_inferbudget_make_meter(choice: str, config: pytest.Config) -> Meter | None:
    """Build the session's energy meter for ``choice`` (``auto``, ``nvml``, ``rapl``,
    ``off`` or a name of your own), or return None to leave it to others. The built-in
    meters answer last."""
