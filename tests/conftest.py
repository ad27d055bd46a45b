"""Shared fixtures: one real engine for the whole test session, reused by inner runs.

Every test that uses the real model or a real server, through one of
:data:`MODEL_FIXTURES`, is marked ``model`` here, so ``pytest -m "not model"`` is the fast
loop (unit and plugin logic) without anyone having to remember the marker; a test that
loads the model another way (a subprocess) carries ``@pytest.mark.model`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, Engine, EngineSpec, create_engine
from pytest_inferbudget.models import cache_root

pytest_plugins = ["pytester"]

MODEL_FIXTURES = frozenset(
    {
        "smollm_engine",
        "reuse_engine",
        "vllm_server",
        "vllm_engine",
        "http_engine",
        "llamacpp_server",
        "llamacpp_engine",
    }
)
"""Fixtures that load the real model or start a real server (directly or through others)."""

MODEL_CACHE = cache_root()
"""Resolved before pytester points HOME at a temporary folder for inner runs."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(autouse=True)
def _shared_model_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner pytest runs find the provisioned model instead of converting it again."""
    monkeypatch.setenv("INFERBUDGET_CACHE_DIR", str(MODEL_CACHE))


class ReuseEngine:
    """Serves an already loaded engine to pytester's inner sessions through the
    make-engine hook, so each inner run does not load the model again."""

    def __init__(self, engine: Engine, spec: str = DEFAULT_ENGINE_SPEC) -> None:
        self.engine = engine
        self.spec = spec

    def pytest_inferbudget_make_engine(self, spec: EngineSpec) -> Engine | None:
        if str(spec) != self.spec:
            return None
        return _Unclosable(self.engine)


class _Unclosable:
    """The inner session closes its engine at its end; the outer session still needs it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.spec = engine.spec
        self.generate = engine.generate
        self.describe = engine.describe

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        """The Engine protocol's optional parts (``text_logprobs``) come through."""
        return getattr(self._engine, name)


@pytest.fixture(scope="session")
def smollm_engine() -> Iterator[Engine]:
    engine = create_engine(EngineSpec.parse(DEFAULT_ENGINE_SPEC))
    yield engine
    engine.close()


@pytest.fixture
def reuse_engine(smollm_engine: Engine) -> ReuseEngine:
    return ReuseEngine(smollm_engine)
