"""Reasoning delimiters on the real model (transformers, SmolLM2-135M-Instruct).

SmolLM2 is no reasoning model and never writes ``<think>`` of itself. What this shows
honestly: given a raw few-shot prompt whose examples reason between ``<think>`` and
``</think>`` before answering, and a ``prefill`` of ``<think>`` (the text the generation
continues), the model writes a reasoning and closes it with ``</think>`` itself, then
answers. The engine must then count, on the model's own tokens, how many were reasoning,
keep the answer as ``text``, and time the first answer token (a later decoding step than
the first token).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pytest_inferbudget.engines import Engine
from pytest_inferbudget.metrics.reasoning import split_reasoning
from pytest_inferbudget.records import Generation, Request
from tests.conftest import ReuseEngine

FEW_SHOT = (
    "Q: What is 2+2?\n<think>Two plus two makes four.</think>\nA: 4\n\n"
    "Q: What is the capital of Italy?\n<think>Italy's capital city is Rome.</think>\nA: Rome\n\n"
    "Q: What is the capital of France?\n"
)
REQUEST = Request(FEW_SHOT, max_new_tokens=16, chat=False, prefill="<think>")


def run_with(engine: Engine, delimiters: tuple[str, str] | None) -> Generation:
    saved = engine.reasoning  # type: ignore[attr-defined]
    engine.reasoning = delimiters  # type: ignore[attr-defined]
    try:
        (response,) = engine.generate([REQUEST])
    finally:
        engine.reasoning = saved  # type: ignore[attr-defined]
    return response.generations[0]


@pytest.fixture(scope="module")
def both(smollm_engine: Engine) -> Iterator[tuple[Generation, Generation]]:
    """The same greedy generation, split and kept whole (``reasoning=none``)."""
    yield run_with(smollm_engine, ("<think>", "</think>")), run_with(smollm_engine, None)


def test_the_model_closes_its_reasoning_and_the_engine_splits_it(
    both: tuple[Generation, Generation], smollm_engine: Engine
) -> None:
    split, whole = both
    assert whole.reasoning_tokens == 0 and "</think>" in whole.text  # the model wrote it
    expected = split_reasoning(whole.text, prefill="<think>")
    assert expected.closed
    assert (split.reasoning_text, split.text) == (expected.reasoning, expected.answer)
    assert split.completion_tokens == whole.completion_tokens
    assert 0 < split.reasoning_tokens < split.completion_tokens  # type: ignore[operator]
    # counted on the model's own tokens: re-tokenizing the reasoning and its closer agrees
    tokenizer = smollm_engine.tokenizer  # type: ignore[attr-defined]
    reasoning_part = whole.text[: len(whole.text) - len(expected.answer)]
    assert split.reasoning_tokens == len(
        tokenizer(reasoning_part, add_special_tokens=False).input_ids
    )
    # the first answer token is a later decoding step than the first token
    assert split.ttft_ms is not None and split.ttfat_ms is not None and split.e2e_ms is not None
    assert split.ttft_ms < split.ttfat_ms <= split.e2e_ms
    assert whole.ttfat_ms == whole.ttft_ms


SUITE = """
import pytest
from pytest_inferbudget.records import Request

REQUEST = Request({prompt!r}, max_new_tokens=16, chat=False, prefill="<think>")

@pytest.mark.budget(reasoning_tokens={reasoning}, answer_tokens={answer}, ttfat_ms=60000)
def test_within(infer):
    (out,) = infer.run([REQUEST])
    assert "</think>" not in out.text

@pytest.mark.budget(reasoning_tokens={reasoning_below})
def test_reasoning_over(infer):
    infer.run([REQUEST])

@pytest.mark.budget(e3={e3_answer}, cost_unit="answer_tokens")
def test_e3_on_answer_tokens(infer):
    (out,) = infer.run([REQUEST])
    infer.score(out, correct="Paris" in out.text)
"""


def test_budgets_on_the_real_models_reasoning(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, both: tuple[Generation, Generation]
) -> None:
    split, _ = both
    assert split.reasoning_tokens is not None and split.answer_tokens is not None
    assert "Paris" in split.text  # greedy: the answer after its reasoning is right
    pytester.makepyfile(
        SUITE.format(
            prompt=FEW_SHOT,
            reasoning=split.reasoning_tokens,
            answer=split.answer_tokens,
            reasoning_below=split.reasoning_tokens - 1,
            # E3 on answer tokens: accuracy squared over the answer's tokens alone
            e3_answer=0.999 / split.answer_tokens,
        )
    )
    result = pytester.runpytest("--inferbudget-json=r.json", plugins=[reuse_engine])
    result.assert_outcomes(passed=2, failed=1)
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "r.json").read_text())["tests"]
    }
    over = {b["key"]: b for b in tests["test_reasoning_over"]["budgets"]}
    assert over["reasoning_tokens"]["measured"] == split.reasoning_tokens
    assert over["reasoning_tokens"]["verdict"] == "fail"
    e3 = {b["key"]: b for b in tests["test_e3_on_answer_tokens"]["budgets"]}["e3"]
    assert e3["measured"] == pytest.approx(1 / split.answer_tokens)  # on all tokens: under


@pytest.mark.model
def test_vllm_splits_the_same_reasoning_at_the_same_token(
    both: tuple[Generation, Generation],
) -> None:
    """vLLM in process (float32, greedy: the same tokens as transformers) splits its own
    detokenized text and counts on its own token ids; its steps time the answer."""
    from pytest_inferbudget.engines import EngineSpec
    from pytest_inferbudget.engines.vllm import VllmEngine

    engine = VllmEngine.from_spec(
        EngineSpec.parse("vllm:smollm2-135m-instruct?dtype=float32"), lambda line: None
    )
    try:
        (response,) = engine.generate([REQUEST])
    finally:
        engine.close()
    g, (split, _) = response.generations[0], both
    assert (g.text, g.reasoning_text) == (split.text, split.reasoning_text)
    assert (g.reasoning_tokens, g.completion_tokens) == (
        split.reasoning_tokens,
        split.completion_tokens,
    )
    assert g.ttft_ms is not None and g.ttfat_ms is not None and g.ttft_ms < g.ttfat_ms
