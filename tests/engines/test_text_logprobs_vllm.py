"""vLLM's prompt log-probabilities of a text against the transformers engine's, in process."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_inferbudget.engines import Engine, EngineSpec
from pytest_inferbudget.engines.vllm import VllmEngine

VLLM_SPEC = "vllm:smollm2-135m-instruct?dtype=float32"
TEXT = (
    Path(__file__).resolve().parents[2] / "examples" / "data" / "declaration_of_independence.txt"
).read_text(encoding="utf-8")[:1200]


@pytest.fixture(scope="module")
def vllm_engine() -> Iterator[VllmEngine]:
    engine = VllmEngine.from_spec(EngineSpec.parse(VLLM_SPEC), lambda line: None)
    yield engine
    engine.close()


@pytest.mark.model
def test_vllm_prompt_logprobs_match_the_transformers_engine(
    vllm_engine: VllmEngine, smollm_engine: Engine
) -> None:
    ours = vllm_engine.text_logprobs(TEXT, window_tokens=128)
    theirs = smollm_engine.text_logprobs(TEXT, window_tokens=128)  # type: ignore[attr-defined]
    assert (ours.tokens, ours.scored_tokens, ours.scored_bytes) == (
        theirs.tokens,
        theirs.scored_tokens,
        theirs.scored_bytes,
    )
    assert all(lp <= 0 for lp in ours.logprobs)
    assert ours.logprobs == pytest.approx(theirs.logprobs, abs=5e-3)
    bits = [-math.fsum(t.logprobs) / math.log(2) for t in (ours, theirs)]
    assert bits[0] == pytest.approx(bits[1], rel=1e-3)
