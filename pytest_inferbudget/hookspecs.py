"""Hooks other packages implement to add engines (more hooks come with meters and reports)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_inferbudget.engines import Engine, EngineSpec, Progress


@pytest.hookspec(firstresult=True)
def pytest_inferbudget_make_engine(
    spec: EngineSpec, config: pytest.Config, progress: Progress
) -> Engine | None:
    """Build the session's engine for ``spec``, or return None to leave it to others.

    The built-in engines answer last (``trylast``), so a plugin or conftest that
    implements this hook can serve any spec, its own names included.
    """
