"""Speculative decoding over HTTP: a real vLLM server started with ``--speculative-config``
(the n-gram proposer), read through the openai engine's ``spec_metrics=true``.

The server is this module's own (the ``vllm_server`` fixture's serves without
speculation), so nothing else shares its counters here: the call's counter change is
its generations' whole, split among them by completion tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.engines.speculative import server_counters
from pytest_inferbudget.models import resolve_model
from pytest_inferbudget.records import Request
from pytest_inferbudget.servers import DEFAULT_ARGS, SERVED_MODEL_NAME, VllmServer
from tests.engines.test_speculative import REPEAT

pytestmark = pytest.mark.model

NGRAM = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}


@pytest.fixture(scope="module")
def ngram_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log: Path = tmp_path_factory.mktemp("ngram-server") / "server.log"
    server = VllmServer(
        resolve_model(SERVED_MODEL_NAME, lambda line: None),
        log,
        extra_args=[*DEFAULT_ARGS, "--speculative-config", json.dumps(NGRAM)],
    )
    yield server.start()
    server.stop()


def test_spec_metrics_reads_the_servers_counters_around_each_call(ngram_server: str) -> None:
    spec = f"openai:{ngram_server}?model={SERVED_MODEL_NAME}&spec_metrics=true"
    engine = OpenAIEngine.from_spec(EngineSpec.parse(spec), lambda line: None)
    try:
        import httpx

        root = ngram_server.removesuffix("/v1")
        before = server_counters(httpx.get(f"{root}/metrics").text)
        responses = engine.generate(
            [Request(REPEAT, max_new_tokens=64), Request("Write a haiku.", max_new_tokens=24)]
        )
        after = server_counters(httpx.get(f"{root}/metrics").text)
        info = engine.describe()
    finally:
        engine.close()
    assert before is not None and after is not None and after["gamma"] == 4
    counts = [r.generations[0].speculation for r in responses]
    assert all(c is not None and c.approximate and c.gamma == 4 for c in counts)
    # the shares add up to the server's own change over the call
    assert sum(c.drafted for c in counts if c) == after["drafted"] - before["drafted"]
    assert sum(c.accepted for c in counts if c) == after["accepted"] - before["accepted"]
    assert sum(c.accepted for c in counts if c) > 0  # the repeated list is drafted
    assert "approximate" in info["speculative"]["counted"]
