"""Selection logic of the strategies, pinned exactly with pre-written completions.

The real model runs every strategy in ``test_strategies_model.py``; here a scripted
engine makes each outcome (ties, failures, stopping points) exact.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, strategies as st

from pytest_inferbudget.engines import Engine
from pytest_inferbudget.errors import InferBudgetError
from pytest_inferbudget.records import EngineInfo, Generation, Prompt, Request, Response
from pytest_inferbudget.strategies import (
    AdaptiveConsistency,
    BestOfMajority,
    BestOfN,
    Greedy,
    Revise,
    Sample,
    SelfConsistency,
    Strategy,
    StrategyConfigError,
    StrategyError,
    StrategyResult,
    TokenBudget,
    beta_stop_probability,
    boxed,
    derive_seed,
    dirichlet_stop_probability,
    first_word,
    last_number,
    normalize_number,
    regex,
)

PROMPT = "What is 3 + 4?"


class ScriptedEngine:
    """An Engine that returns pre-written completions, call after call.

    It stands in for the model only to pin the strategies' selection logic exactly
    (which answer wins a tie, when sampling stops, what each call asks for); the
    strategies' behaviour on the real model is tested in ``test_strategies_model.py``.
    Call ``i`` returns ``script[i]``, whose length must equal the request's ``n``.
    Every completion costs ``len(text.split()) + 1`` tokens (its words and an EOS).
    """

    def __init__(
        self,
        script: Sequence[Sequence[str]],
        *,
        logprobs: Mapping[str, float] | None = None,
    ) -> None:
        self.script = [list(call) for call in script]
        self.logprobs = logprobs
        self.requests: list[Request] = []

    @property
    def spec(self) -> str:
        return "scripted"

    def describe(self) -> EngineInfo:
        return {"engine": "scripted"}

    def close(self) -> None:
        pass

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        responses = []
        for request in requests:
            call = len(self.requests)
            if call >= len(self.script):
                raise RuntimeError(f"script has {len(self.script)} calls, call {call} was made")
            texts = self.script[call]
            if len(texts) != request.n:
                raise RuntimeError(f"call {call} asked for n={request.n}, script has {len(texts)}")
            self.requests.append(request)
            prompt_tokens = 10 + len(request.prefill.split())
            responses.append(
                Response(
                    request=request,
                    generations=tuple(
                        Generation(
                            text=text,
                            prompt_tokens=prompt_tokens,
                            completion_tokens=len(text.split()) + 1,
                            finish_reason="stop",
                            mean_logprob=self.logprobs.get(text) if self.logprobs else None,
                        )
                        for text in texts
                    ),
                    engine=self.spec,
                )
            )
        return responses


def run(strategy: Strategy, engine: Engine, *, seed: int | None = 7) -> StrategyResult:
    return strategy.run(engine, PROMPT, max_new_tokens=32, seed=seed)


def test_strategies_import_neither_torch_nor_pytest() -> None:
    code = (
        "import sys, pytest_inferbudget.strategies; "
        "print(sorted(m for m in ('torch', 'transformers', 'pytest', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scripted_engine_satisfies_the_engine_protocol() -> None:
    assert isinstance(ScriptedEngine([]), Engine)


@pytest.mark.parametrize(
    "strategy",
    [
        Greedy(),
        Sample(2),
        BestOfN(2),
        SelfConsistency(2),
        BestOfMajority(2, 1),
        Revise(),
        AdaptiveConsistency(),
        TokenBudget(8),
    ],
)
def test_every_strategy_satisfies_the_protocol(strategy: Strategy) -> None:
    assert isinstance(strategy, Strategy)
    assert isinstance(strategy.name, str) and strategy.name


# --- Greedy and Sample ------------------------------------------------------------------


def test_greedy_is_one_greedy_call() -> None:
    engine = ScriptedEngine([[" The answer is 7. "]])
    result = run(Greedy(), engine)
    (request,) = engine.requests
    assert (request.n, request.temperature, request.max_new_tokens) == (1, 0.0, 32)
    assert result.text == " The answer is 7. "
    assert result.answer == "The answer is 7."  # stripped text without an extractor
    assert run(Greedy(extract=last_number), ScriptedEngine([["It is 7."]])).answer == "7"
    assert (result.samples, result.calls, result.selected) == (1, 1, (0,))


def test_sample_is_one_batched_call_whose_first_sample_is_the_text() -> None:
    engine = ScriptedEngine([["a 1", "b 2", "c 3"]])
    result = run(Sample(3, temperature=0.9, top_p=0.8, extract=last_number), engine, seed=11)
    (request,) = engine.requests
    assert (request.n, request.temperature, request.top_p, request.seed) == (3, 0.9, 0.8, 11)
    assert [c.answer for c in result.candidates] == ["1", "2", "3"]
    assert (result.text, result.answer, result.samples) == ("a 1", "1", 3)


# --- BestOfN ------------------------------------------------------------------------------


def test_best_of_n_custom_scorer_picks_the_highest_score_in_one_call() -> None:
    engine = ScriptedEngine([["short", "a much longer one", "mid length"]])
    result = run(BestOfN(3, scorer=lambda text: len(text)), engine)
    (request,) = engine.requests
    assert request.n == 3 and request.logprobs is False  # a custom scorer needs no log-probs
    assert result.text == "a much longer one"
    assert [c.score for c in result.candidates] == [5.0, 17.0, 10.0]
    assert result.selected == (1,)


def test_best_of_n_tie_goes_to_the_earliest_sample() -> None:
    engine = ScriptedEngine([["x", "y", "z"]])
    result = run(BestOfN(3, scorer=lambda text: 1.0 if text != "x" else 0.0), engine)
    assert result.text == "y"


def test_best_of_n_verifier_receives_the_prompt() -> None:
    seen: list[tuple[Prompt, str]] = []

    def verifier(prompt: Prompt, text: str) -> bool:
        seen.append((prompt, text))
        return text.strip() == "7"

    result = run(BestOfN(3, scorer=verifier), ScriptedEngine([["6", "7", "8"]]))
    assert result.answer == "7"
    assert seen == [(PROMPT, "6"), (PROMPT, "7"), (PROMPT, "8")]
    assert [c.score for c in result.candidates] == [0.0, 1.0, 0.0]


def test_best_of_n_default_scorer_is_mean_logprob() -> None:
    engine = ScriptedEngine([["a", "b", "c"]], logprobs={"a": -2.0, "b": -0.5, "c": -1.0})
    result = run(BestOfN(3, extract=first_word), engine)
    assert engine.requests[0].logprobs is True
    assert (result.text, result.answer) == ("b", "b")
    assert [c.score for c in result.candidates] == [-2.0, -0.5, -1.0]


def test_best_of_n_without_engine_logprobs_asks_for_a_scorer() -> None:
    with pytest.raises(StrategyError, match=r"no log-probabilities.*pass scorer="):
        run(BestOfN(2), ScriptedEngine([["a", "b"]]))


def test_a_completion_without_logprob_never_beats_a_scored_one() -> None:
    engine = ScriptedEngine([["a", "b"]], logprobs={"b": -9.0})
    assert run(BestOfN(2), engine).text == "b"


def test_a_scorer_that_raises_is_named_with_the_candidate_index() -> None:
    def picky(text: str) -> float:
        if text == "boom":
            raise KeyError("no reference for this one")
        return 1.0

    with pytest.raises(StrategyError, match=r"scorer .*picky raised on candidate 2") as info:
        run(BestOfN(3, scorer=picky), ScriptedEngine([["a", "b", "boom"]]))
    assert isinstance(info.value.__cause__, KeyError)
    assert isinstance(info.value, InferBudgetError)


@pytest.mark.parametrize("bad", [float("nan"), "high", None])
def test_a_scorer_must_return_a_number(bad: object) -> None:
    with pytest.raises(StrategyError, match="candidate 0; a scorer must return a number"):
        run(BestOfN(2, scorer=lambda text: bad), ScriptedEngine([["a", "b"]]))  # type: ignore[arg-type]


def test_a_scorer_with_a_bad_signature_is_rejected_when_built() -> None:
    def three(a: str, b: str, c: str) -> float:
        return 0.0

    with pytest.raises(StrategyConfigError, match=r"must take \(text\) or \(prompt, text\)"):
        BestOfN(2, scorer=three)  # type: ignore[arg-type]
    with pytest.raises(StrategyConfigError, match="scorer must be callable"):
        BestOfN(2, scorer=3)  # type: ignore[arg-type]


# --- SelfConsistency ------------------------------------------------------------------------


def test_self_consistency_majority_in_one_call() -> None:
    engine = ScriptedEngine([["it is 7", "7", "maybe 8", "so 7.0", "9"]])
    result = run(SelfConsistency(5), engine)
    (request,) = engine.requests
    assert request.n == 5 and request.temperature == 0.7
    assert result.answer == "7"
    assert result.text == "it is 7"  # the first completion giving the winning answer
    assert [c.votes for c in result.candidates] == [3, 3, 1, 3, 1]
    assert result.selected == (0,)


def test_self_consistency_tie_goes_to_the_first_occurring_answer() -> None:
    result = run(SelfConsistency(4), ScriptedEngine([["8", "5", "5", "8"]]))
    assert result.answer == "8"
    result = run(SelfConsistency(4), ScriptedEngine([["5", "8", "8", "5"]]))
    assert result.answer == "5"


@given(st.lists(st.one_of(st.none(), st.sampled_from("abcd")), min_size=1, max_size=12))
def test_the_vote_winner_is_the_first_occurring_most_voted_answer(
    answers: list[str | None],
) -> None:
    engine = ScriptedEngine([[a or "" for a in answers]])
    result = run(SelfConsistency(len(answers), extract=lambda t: t or None), engine)
    voted = [a for a in answers if a is not None]
    if not voted:
        assert (result.answer, result.text, result.selected) == (None, "", ())
        return
    top = max(voted.count(a) for a in voted)
    assert result.answer == next(a for a in voted if voted.count(a) == top)
    assert result.selected == (answers.index(result.answer),)


def test_extraction_failures_never_win() -> None:
    result = run(SelfConsistency(4), ScriptedEngine([["none", "no idea", "dunno", "4"]]))
    assert result.answer == "4"
    assert [c.answer for c in result.candidates] == [None, None, None, "4"]
    assert [c.votes for c in result.candidates] == [None, None, None, 1]


def test_all_extractions_failing_gives_no_answer() -> None:
    result = run(SelfConsistency(3), ScriptedEngine([["", "none", "no idea"]]))
    assert result.answer is None
    assert result.text == ""
    assert result.selected == ()
    assert len(result.candidates) == 3 and result.samples == 3  # still drawn and paid for


def test_normalize_merges_answers_before_the_vote() -> None:
    strategy = SelfConsistency(3, extract=first_word, normalize=str.lower)
    result = run(strategy, ScriptedEngine([["Paris.", "Lyon", "PARIS is it"]]))
    assert result.answer == "paris"


def test_an_extractor_that_raises_is_named_with_the_candidate_index() -> None:
    def fragile(text: str) -> str | None:
        return text.split()[1]

    with pytest.raises(StrategyError, match=r"extractor .*fragile raised on candidate 1") as info:
        run(SelfConsistency(2, extract=fragile), ScriptedEngine([["a b", "single"]]))
    assert isinstance(info.value.__cause__, IndexError)


def test_an_extractor_must_return_a_string_or_none() -> None:
    with pytest.raises(StrategyError, match="must return a string or None"):
        run(SelfConsistency(2, extract=lambda text: 7), ScriptedEngine([["a", "b"]]))  # type: ignore[arg-type, return-value]


# --- BestOfMajority ---------------------------------------------------------------------------


def test_best_of_majority_ignores_a_rare_answer_however_well_scored() -> None:
    texts = ["3", "3", "9", "4", "3", "4"]
    scores = {"3": 0.1, "9": 5.0, "4": 0.9}
    engine = ScriptedEngine([texts])
    result = run(BestOfMajority(6, 1, scorer=lambda text: scores[text]), engine)
    assert engine.requests[0].n == 6
    assert result.answer == "3"  # only the most frequent answer is kept with k=1
    assert result.selected == (0,)
    assert [c.score for c in result.candidates] == [0.1, 0.1, None, None, 0.1, None]


def test_best_of_majority_ranks_the_kept_answers_by_score() -> None:
    texts = ["3", "3", "9", "4", "3", "4"]
    scores = {"3": 0.1, "9": 5.0, "4": 0.9}
    result = run(BestOfMajority(6, 2, scorer=lambda text: scores[text]), ScriptedEngine([texts]))
    assert result.answer == "4"  # kept {3, 4}: the 2 most frequent; 4 scores higher
    assert result.selected == (3, 0)  # the pass@2 submission, best first
    assert result.text == "4"


def test_best_of_majority_frequency_threshold() -> None:
    texts = ["3", "3", "9", "4", "3", "4"]
    scores = {"3": 0.1, "9": 5.0, "4": 0.9}
    scorer = lambda text: scores[text]  # noqa: E731
    wide = run(BestOfMajority(6, 3, scorer=scorer, min_frequency=1 / 6), ScriptedEngine([texts]))
    assert (wide.answer, wide.selected) == ("9", (2, 3, 0))
    narrow = run(BestOfMajority(6, 3, scorer=scorer, min_frequency=0.5), ScriptedEngine([texts]))
    assert (narrow.answer, narrow.selected) == ("3", (0,))
    none = run(BestOfMajority(6, 1, scorer=scorer, min_frequency=0.75), ScriptedEngine([texts]))
    assert (none.answer, none.text, none.selected) == (None, "", ())


def test_best_of_majority_represents_an_answer_by_its_best_completion() -> None:
    texts = ["x 5", "y 5", "z 6"]
    scores = {"x 5": 0.2, "y 5": 0.8, "z 6": 0.5}
    engine = ScriptedEngine([texts])
    result = run(BestOfMajority(3, 1, scorer=lambda text: scores[text]), engine)
    assert (result.answer, result.text, result.selected) == ("5", "y 5", (1,))


def test_best_of_majority_score_ties_go_to_more_votes_then_first_occurrence() -> None:
    result = run(
        BestOfMajority(5, 2, scorer=lambda text: 1.0, min_frequency=0.2),
        ScriptedEngine([["1", "2", "2", "3", "3"]]),
    )
    assert result.selected == (1, 3)  # 2 and 3 both have 2 votes: 2 occurred first


def test_best_of_majority_default_scorer_and_all_failures() -> None:
    engine = ScriptedEngine([["5", "5", "6"]], logprobs={"5": -1.0, "6": -0.1})
    assert run(BestOfMajority(3, 1), engine).answer == "5"
    assert engine.requests[0].logprobs is True
    failed = run(BestOfMajority(2, 1), ScriptedEngine([["no", "none"]]))  # no scoring needed
    assert (failed.answer, failed.selected) == (None, ())


# --- AdaptiveConsistency ---------------------------------------------------------------------


def test_adaptive_consistency_stops_early_on_unanimous_answers() -> None:
    engine = ScriptedEngine([["7", "7", "7", "7"]])
    result = run(AdaptiveConsistency(max_n=16, batch=4, confidence=0.95), engine)
    assert len(engine.requests) == 1 and engine.requests[0].n == 4
    assert result.answer == "7"
    assert result.stopped_early is True
    assert result.samples == 4
    assert result.confidence == pytest.approx(1 - 2**-5)


def test_adaptive_consistency_runs_to_max_n_on_split_answers() -> None:
    engine = ScriptedEngine([["1", "2", "1", "2"], ["2", "1", "2", "1"], ["1", "2"]])
    result = run(AdaptiveConsistency(max_n=10, batch=4, confidence=0.95), engine, seed=3)
    assert [r.n for r in engine.requests] == [4, 4, 2]  # the last round asks only for what is left
    assert [r.seed for r in engine.requests] == [derive_seed(3, i) for i in range(3)]
    assert len({r.seed for r in engine.requests}) == 3
    assert result.stopped_early is False
    assert result.samples == 10 and result.calls == 3
    assert result.answer == "1"  # 5 votes each: the first occurring answer
    assert result.confidence == pytest.approx(0.5)


def test_adaptive_consistency_stops_when_the_leader_is_confident() -> None:
    # After 4: 3 vs 1 -> P(Beta(4, 2) > 1/2) = 0.8125; after 8: 7 vs 1 -> 0.98
    engine = ScriptedEngine([["5", "5", "6", "5"], ["5", "5", "5", "5"], ["5"] * 4])
    result = run(AdaptiveConsistency(max_n=12, batch=4, confidence=0.95), engine)
    assert len(engine.requests) == 2
    assert (result.answer, result.samples, result.stopped_early) == ("5", 8, True)
    assert result.confidence == pytest.approx(beta_stop_probability([7, 1]))


def test_adaptive_consistency_failures_cost_samples_but_never_vote() -> None:
    engine = ScriptedEngine([["?", "?"], ["?", "?"]])
    result = run(AdaptiveConsistency(max_n=4, batch=2), engine)
    assert (result.answer, result.samples, result.confidence) == (None, 4, 0.0)


def test_adaptive_consistency_with_batch_one_is_the_papers_rule() -> None:
    engine = ScriptedEngine([["4"]] * 6)
    result = run(AdaptiveConsistency(max_n=6, batch=1, confidence=0.95), engine)
    assert result.samples == 4  # 1 - 2^-(v+1) first reaches 0.95 at v = 4


def test_beta_stop_probability_is_exact() -> None:
    # P(Beta(a+1, b+1) > 1/2) by numerical integration, as the reference code does
    def integrate(a: int, b: int) -> float:
        steps = 20_000
        f = [(i / steps) ** a * (1 - i / steps) ** b for i in range(steps + 1)]
        total = sum(f) - (f[0] + f[-1]) / 2
        upper = sum(f[steps // 2 :]) - (f[steps // 2] + f[-1]) / 2
        return upper / total

    for a, b in [(4, 0), (3, 1), (7, 1), (5, 5), (10, 3)]:
        assert beta_stop_probability([a, b]) == pytest.approx(integrate(a, b), abs=1e-6)
    assert beta_stop_probability([]) == 0.0
    assert beta_stop_probability([3, 1, 1]) == beta_stop_probability([3, 1])


def test_dirichlet_stop_probability() -> None:
    assert dirichlet_stop_probability([5, 2]) == beta_stop_probability([5, 2])
    three = dirichlet_stop_probability([6, 1, 1])
    assert three == dirichlet_stop_probability([1, 6, 1])  # deterministic, order-free
    assert 0.9 < three < beta_stop_probability([6, 1])  # more answers, less confidence
    assert dirichlet_stop_probability([3, 3, 3]) == pytest.approx(1 / 3, abs=0.02)
    result = run(
        AdaptiveConsistency(max_n=8, batch=4, criterion="dirichlet"),
        ScriptedEngine([["1", "1", "1", "1"]]),
    )
    assert result.samples == 4


# --- Revise -----------------------------------------------------------------------------------


def test_revise_makes_one_call_per_round_after_the_draft() -> None:
    engine = ScriptedEngine([["draft 6"], ["better 7"], ["final 7"]])
    result = run(Revise(rounds=2, critique_prompt="Check it.", extract=last_number), engine)
    assert len(engine.requests) == 3 and result.calls == 3  # the draft + 2 revision rounds
    assert engine.requests[0].prompt == PROMPT
    assert engine.requests[1].prompt == (
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": "draft 6"},
        {"role": "user", "content": "Check it."},
    )
    assert engine.requests[2].prompt[1] == {"role": "assistant", "content": "better 7"}
    assert all(r.temperature == 0.0 and r.n == 1 for r in engine.requests)
    assert (result.text, result.answer, result.selected) == ("final 7", "7", (2,))
    assert [c.answer for c in result.candidates] == ["6", "7", "7"]
    assert result.completion_tokens == 9  # each round's cost is in the trace


def test_revise_keeps_a_message_prompt_and_can_stop_when_unchanged() -> None:
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT})
    engine = ScriptedEngine([["7"], ["7"], ["8"]])
    result = Revise(rounds=2, stop_if_unchanged=True).run(
        engine, messages, max_new_tokens=8, seed=None
    )
    assert len(engine.requests) == 2 and result.stopped_early is True
    assert engine.requests[1].prompt[:2] == messages


# --- TokenBudget ------------------------------------------------------------------------------


def test_token_budget_forces_an_answer_with_a_prefilled_second_call() -> None:
    engine = ScriptedEngine([["3 plus 4 is"], [" 7"]])
    strategy = TokenBudget(max_thinking_tokens=16, max_answer_tokens=4, extract=last_number)
    result = run(strategy, engine)
    thinking, forced = engine.requests
    assert (thinking.max_new_tokens, thinking.prefill, thinking.temperature) == (16, "", 0.0)
    assert forced.prompt == PROMPT
    assert forced.prefill == "3 plus 4 is\nFinal answer:"
    assert forced.max_new_tokens == 4
    assert result.answer == "7"
    assert result.text == "3 plus 4 is\nFinal answer: 7"
    assert result.calls == 2 and result.samples == 2
    assert result.completion_tokens == (4 + 1) + (1 + 1)
    assert result.prompt_tokens == 10 + (10 + 6)  # the prefill is paid as prompt


def test_token_budget_answer_tokens_default_to_the_runs_limit() -> None:
    engine = ScriptedEngine([["thinking"], ["Paris"]])
    result = TokenBudget(8, answer_prefix=" So:").run(engine, PROMPT, max_new_tokens=5, seed=1)
    assert engine.requests[1].max_new_tokens == 5
    assert engine.requests[1].prefill == "thinking So:"
    assert result.answer == "Paris"


# --- results, seeds, engines, bad input -------------------------------------------------------


def test_result_costs_and_round_trip_through_json() -> None:
    engine = ScriptedEngine([["one 1", "two words 2", "1"]])
    result = run(SelfConsistency(3), engine)
    assert result.completion_tokens == 3 + 4 + 2
    assert result.prompt_tokens == 10  # one call, its prompt counted once
    data = json.loads(json.dumps(result.to_dict()))
    assert data["completion_tokens"] == 9 and data["calls"] == 1
    assert data["candidates"][0] == {"text": "one 1", "answer": "1", "score": None, "votes": 2}
    assert StrategyResult.from_dict(data) == result


def test_derive_seed_is_deterministic_and_keeps_none() -> None:
    assert derive_seed(None, 3) is None
    assert derive_seed(5, 0) == 5
    assert derive_seed(5, 1) == derive_seed(5, 1) != derive_seed(5, 2)
    assert derive_seed(5, 1) != derive_seed(6, 1)
    assert all(0 <= derive_seed(s, c) < 2**31 for s in range(5) for c in range(1, 5))  # type: ignore[operator]


@pytest.mark.parametrize("kept", [0, 1])
def test_an_engine_returning_too_few_generations_is_an_error(kept: int) -> None:
    class Short(ScriptedEngine):
        def generate(self, requests: Sequence[Request]) -> list[Response]:
            (response,) = super().generate(requests)
            return [Response(response.request, response.generations[:kept], response.engine)]

    with pytest.raises(StrategyError, match=f"returned {kept} generations for a request with n=3"):
        run(SelfConsistency(3), Short([["1", "2", "3"]]))


def test_an_engine_returning_no_response_is_an_error() -> None:
    class Silent(ScriptedEngine):
        def generate(self, requests: Sequence[Request]) -> list[Response]:
            return []

    with pytest.raises(StrategyError, match="'scripted' returned 0 responses for 1 request"):
        run(Greedy(), Silent([]))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Sample(0), "n must be an integer >= 1"),
        (lambda: BestOfN(True), "n must be an integer >= 1"),
        (lambda: SelfConsistency(2.5), "n must be an integer >= 1"),  # type: ignore[arg-type]
        (lambda: SelfConsistency(4, temperature=0), r"temperature must be > 0"),
        (lambda: Sample(2, top_p=0), r"top_p must be in \(0, 1\]"),
        (lambda: BestOfMajority(3, 4), "k=4 answers cannot be chosen from n=3"),
        (lambda: BestOfMajority(3, 0), "k must be an integer >= 1"),
        (lambda: BestOfMajority(3, 1, min_frequency=0), r"min_frequency must be in \(0, 1\]"),
        (lambda: AdaptiveConsistency(max_n=4, batch=8), "batch=8 is larger than max_n=4"),
        (lambda: AdaptiveConsistency(confidence=1.0), r"confidence must be a probability"),
        (lambda: AdaptiveConsistency(criterion="vote"), "criterion must be"),  # type: ignore[arg-type]
        (lambda: SelfConsistency(2, extract=None), "extract must be callable"),  # type: ignore[arg-type]
        (lambda: Revise(rounds=0), "rounds must be an integer >= 1"),
        (lambda: Revise(critique_prompt=" "), "critique_prompt must be a non-empty string"),
        (lambda: TokenBudget(0), "max_thinking_tokens must be an integer >= 1"),
        (lambda: TokenBudget(8, max_answer_tokens=0), "max_answer_tokens must be"),
        (lambda: regex("("), "invalid pattern"),
        (lambda: regex("a(b)", group=2), "has 1 group"),
    ],
)
def test_bad_parameters_are_rejected_when_built(build: Any, message: str) -> None:
    with pytest.raises(StrategyConfigError, match=message) as info:
        build()
    assert isinstance(info.value, ValueError)


def test_bad_run_arguments_are_rejected_before_any_call() -> None:
    engine = ScriptedEngine([])
    with pytest.raises(StrategyConfigError, match="max_new_tokens must be an integer >= 1"):
        Greedy().run(engine, PROMPT, max_new_tokens=0, seed=None)
    with pytest.raises(StrategyConfigError, match="seed must be an integer or None"):
        Sample(2).run(engine, PROMPT, max_new_tokens=4, seed="1")  # type: ignore[arg-type]
    assert engine.requests == []


# --- extractors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 7.", "7"),
        ("3 + 4 = 7.0", "7"),
        ("It costs $1,234.50 in total", "1234.5"),
        ("x = -4", "-4"),
        ("pages 3-4", "4"),
        ("12, 13 and 14", "14"),
        ("temperature -0.0", "0"),
        ("agent 007", "7"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_last_number(text: str, expected: str | None) -> None:
    assert last_number(text) == expected


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_last_number_reads_back_any_formatted_integer(value: int) -> None:
    assert last_number(f"so the result is {value:,}.") == str(value)
    assert last_number(f"about {value}.000 units") == str(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"first \boxed{1} then \boxed{ {a}+{b} }", "{a}+{b}"),
        (r"\boxed{ok} and a broken \boxed{3", "ok"),
        (r"\boxed 5", None),
        ("no box", None),
    ],
)
def test_boxed(text: str, expected: str | None) -> None:
    assert boxed(text) == expected


def test_first_word_and_regex() -> None:
    assert first_word("  **Paris**. It is.") == "Paris"
    assert first_word("\u201cRome\u201d") == "Rome"
    assert first_word(" ... ") is None
    answer = regex(r"answer:\s*(\w+)")
    assert answer("answer: A, then answer: B") == "B"  # the last match
    assert answer("nothing") is None
    assert "regex" in answer.__name__
    assert regex(r"(?P<x>\d+)%", group="x")("50% or 75%") == "75"
    assert regex(r"\d+")("1 and 22") == "22"


def test_normalize_number() -> None:
    assert [normalize_number(s) for s in ["1,000", "2.50", "-3.000", "0.0", "-0"]] == [
        "1000",
        "2.5",
        "-3",
        "0",
        "0",
    ]
    assert math.isclose(float(normalize_number("12.340")), 12.34)
