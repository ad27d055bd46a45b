"""Reasoning tokens over HTTP: a loopback server that streams like vLLM with a reasoning
parser (``reasoning_content`` / ``reasoning`` deltas, then ``content``), or like one
without (``<think>...</think>`` in the content), with real pauses between tokens so
that the first answer token comes measurably after the first token.

The server is a real HTTP server on 127.0.0.1 (stdlib ``http.server``), not a mock of
the engine: the engine streams, parses and times it as it would vLLM. Its model names
choose its behaviour:

- ``parser``: reasoning in ``delta.reasoning_content``; ``parser-new``: in
  ``delta.reasoning`` (vLLM 0.11 and later), with ``completion_tokens_details``;
- ``plain``: everything in ``content``, the reasoning between ``<think>`` and
  ``</think>``.

One token is one streamed piece; usage counts them (per chunk when the request asks for
``continuous_usage_stats``, as vLLM does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.openai import OpenAIEngine
from pytest_inferbudget.errors import EngineSpecError
from pytest_inferbudget.records import Generation, Request
from tests.engines.test_openai import StubServer

REASONING = ["The", " user", " asks", " for", " France's", " capital", "."]
ANSWER = ["Paris", "."]
PAUSE_S = 0.03
"""Between two streamed tokens: the reasoning takes len(REASONING) pauses or more."""
PROMPT_TOKENS = 11


class ReasoningServer(StubServer):
    """Streams OpenAI chat chunks: role, reasoning, answer, finish, usage, ``[DONE]``: the
    test_openai stub server whose every request is answered by :meth:`answer`."""

    def __init__(self) -> None:
        super().__init__()
        self.behaviour = lambda handler: self.answer(handler, handler.body)  # type: ignore[attr-defined]

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        mode = body["model"]
        per_chunk = bool(body.get("stream_options", {}).get("continuous_usage_stats"))
        pieces: list[tuple[str, str]]  # (field, text)
        if mode == "plain":
            pieces = [("content", t) for t in ["<think>", *REASONING, "</think>", *ANSWER]]
        else:
            field = "reasoning_content" if mode == "parser" else "reasoning"
            pieces = [(field, t) for t in REASONING] + [("content", t) for t in ANSWER]
        pieces = pieces[: body["max_tokens"]]
        finish = "stop" if len(pieces) < body["max_tokens"] else "length"
        reasoning_tokens = sum(field != "content" for field, _ in pieces)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def send(event: object) -> None:
            data = f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode()
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        def usage(tokens: int) -> dict[str, Any]:
            counted: dict[str, Any] = {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": tokens,
                "total_tokens": PROMPT_TOKENS + tokens,
            }
            if mode == "parser-new":
                counted["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
            return counted

        role: dict[str, Any] = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        if per_chunk:
            role["usage"] = usage(0)
        send(role)
        for made, (field, text) in enumerate(pieces, start=1):
            time.sleep(PAUSE_S)
            last = made == len(pieces)
            chunk: dict[str, Any] = {
                "choices": [
                    {"index": 0, "delta": {field: text}, "finish_reason": finish if last else None}
                ]
            }
            if per_chunk:
                chunk["usage"] = usage(made)
            send(chunk)
        send({"choices": [], "usage": usage(len(pieces))})
        send("[DONE]")
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


@pytest.fixture(scope="module")
def server() -> Iterator[ReasoningServer]:
    running = ReasoningServer()
    yield running
    running.close()


def engine_on(server: ReasoningServer, model: str, **options: str) -> OpenAIEngine:
    query = "&".join(f"{k}={v}" for k, v in {"model": model, "probe": "false", **options}.items())
    return OpenAIEngine.from_spec(EngineSpec.parse(f"openai:{server.base_url}?{query}"), print)


def generate(server: ReasoningServer, model: str, **options: str) -> Generation:
    """One greedy generation; ``max_new_tokens`` (default 32) travels with the options."""
    max_new_tokens = int(options.pop("max_new_tokens", "32"))
    engine = engine_on(server, model, tokens="stream_usage", **options)
    try:
        (response,) = engine.generate([Request("What is the capital of France?", max_new_tokens)])
    finally:
        engine.close()
    return response.generations[0]


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("parser", {"continuous_usage": "true"}),  # counted chunk by chunk
        ("parser-new", {}),  # the server's completion_tokens_details
        ("plain", {"continuous_usage": "true"}),  # delimiters in the text, chunk by chunk
    ],
)
def test_reasoning_is_counted_apart_and_the_answer_timed_after_it(
    server: ReasoningServer, model: str, options: dict[str, str]
) -> None:
    g = generate(server, model, **options)
    delimiters = 2 if model == "plain" else 0  # <think> and </think> are reasoning tokens
    assert g.text == "".join(ANSWER)  # the answer alone, as a user reads out.text
    assert g.reasoning_text == "".join(REASONING)
    assert g.completion_tokens == len(REASONING) + delimiters + len(ANSWER)
    assert g.reasoning_tokens == len(REASONING) + delimiters
    assert g.answer_tokens == len(ANSWER)
    # TTFT is the first token of any content, reasoning included (vLLM's definition);
    # the first answer token came after every reasoning token, each at least PAUSE_S apart
    assert g.ttft_ms is not None and g.ttfat_ms is not None
    assert g.ttfat_ms - g.ttft_ms >= 0.5 * PAUSE_S * 1e3 * (len(REASONING) + delimiters)
    assert g.e2e_ms is not None and g.e2e_ms >= g.ttfat_ms


def test_delimited_reasoning_without_a_count_is_unmeasured_not_zero(
    server: ReasoningServer,
) -> None:
    """No per-chunk usage, no count from the server, no tokenizer: the split of the text
    is known, its token count is not."""
    g = generate(server, "plain")
    assert g.text == "".join(ANSWER) and g.reasoning_text == "".join(REASONING)
    assert g.reasoning_tokens is None and g.answer_tokens is None
    assert g.ttfat_ms is not None and g.ttft_ms is not None and g.ttfat_ms > g.ttft_ms


def test_a_completion_cut_inside_its_reasoning_has_no_answer(server: ReasoningServer) -> None:
    g = generate(server, "parser", max_new_tokens="4", continuous_usage="true")
    assert (g.finish_reason, g.text, g.completion_tokens) == ("length", "", 4)
    assert (g.reasoning_tokens, g.answer_tokens, g.ttfat_ms) == (4, 0, None)
    assert g.ttft_ms is not None


def test_reasoning_none_keeps_delimiters_in_the_answer(server: ReasoningServer) -> None:
    g = generate(server, "plain", continuous_usage="true", reasoning="none")
    assert g.text.startswith("<think>") and g.text.endswith("</think>Paris.")
    assert (g.reasoning_text, g.reasoning_tokens) == ("", 0)
    assert g.ttfat_ms == g.ttft_ms


def test_other_delimiters_are_taken_from_the_spec(server: ReasoningServer) -> None:
    g = generate(server, "plain", continuous_usage="true", reasoning="[[,]]")
    assert g.text.startswith("<think>") and g.reasoning_tokens == 0  # no [[ opener


def test_bad_delimiters_are_refused_naming_the_option(server: ReasoningServer) -> None:
    with pytest.raises(EngineSpecError, match=r"reasoning='<think>' is not a pair.*OPEN,CLOSE"):
        engine_on(server, "plain", reasoning="<think>")


# -- through the plugin: budgets on reasoning, answer and TTFAT, judged by value ----------

SUITE = """
import pytest

PROMPT = "What is the capital of France?"

@pytest.mark.budget(reasoning_tokens={reasoning}, answer_tokens={answer}, ttfat_ms=60000)
def test_within(infer):
    out = infer(PROMPT, max_new_tokens=32)
    assert out.text == "Paris."

@pytest.mark.budget(reasoning_tokens={reasoning_below})
def test_reasoning_over(infer):
    infer(PROMPT, max_new_tokens=32)

@pytest.mark.budget(answer_tokens={answer_below})
def test_answer_over(infer):
    infer(PROMPT, max_new_tokens=32)

@pytest.mark.budget(ttfat_ms={ttfat_below})
def test_ttfat_over(infer):
    infer(PROMPT, max_new_tokens=32)

@pytest.mark.budget(ttft_ms=60000, ttfat_ms=60000)
def test_no_answer(infer):
    infer(PROMPT, max_new_tokens=3)

@pytest.mark.budget(cost_of_pass={answer}, cost_unit="answer_tokens", e3=1 / {answer} - 1e-9)
def test_answer_cost(infer):
    out = infer(PROMPT, max_new_tokens=32)
    infer.score(out, correct=out.text == "Paris.")

@pytest.mark.budget(e3=1 / ({reasoning} + {answer}) + 1e-9, cost_unit="reasoning_tokens")
def test_reasoning_e3(infer):
    out = infer(PROMPT, max_new_tokens=32)
    infer.score(out, correct=True)
"""


def test_budgets_on_reasoning_pass_and_fail_by_value(
    pytester: pytest.Pytester, server: ReasoningServer
) -> None:
    reasoning, answer = len(REASONING), len(ANSWER)
    pytester.makepyfile(
        SUITE.format(
            reasoning=reasoning,
            answer=answer,
            reasoning_below=reasoning - 1,
            answer_below=answer - 1,
            # the reasoning alone takes len(REASONING) pauses before the first answer token
            ttfat_below=0.5 * PAUSE_S * 1e3 * reasoning,
        )
    )
    result = pytester.runpytest(
        f"--inferbudget-engine=openai:{server.base_url}?model=parser&probe=false"
        "&tokens=stream_usage&continuous_usage=true",
        "--inferbudget-json=r.json",
        "-p",
        "no:randomly",
    )
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "r.json").read_text())["tests"]
    }
    budgets = {name: {b["key"]: b for b in t["budgets"]} for name, t in tests.items()}
    outcomes = {name: t["outcome"] for name, t in tests.items()}
    assert outcomes == {
        "test_within": "passed",
        "test_reasoning_over": "failed",
        "test_answer_over": "failed",
        "test_ttfat_over": "failed",
        "test_no_answer": "failed",
        "test_answer_cost": "passed",
        "test_reasoning_e3": "passed",
    }, result.stdout.str()
    assert budgets["test_within"]["reasoning_tokens"]["measured"] == reasoning
    assert budgets["test_within"]["answer_tokens"]["measured"] == answer
    assert budgets["test_reasoning_over"]["reasoning_tokens"]["verdict"] == "fail"
    assert budgets["test_answer_over"]["answer_tokens"]["measured"] == answer
    ttfat = budgets["test_ttfat_over"]["ttfat_ms"]
    assert ttfat["verdict"] == "fail" and ttfat["measured"] >= PAUSE_S * 1e3 * reasoning
    # cut after 3 reasoning tokens: a first token, but no answer, so TTFAT is unmeasured
    assert budgets["test_no_answer"]["ttft_ms"]["verdict"] == "pass"
    assert budgets["test_no_answer"]["ttfat_ms"]["verdict"] == "unmeasured"
    assert "ended inside its reasoning" in budgets["test_no_answer"]["ttfat_ms"]["reason"]
    # cost counted in answer tokens: one correct sample costs its answer's tokens
    assert budgets["test_answer_cost"]["cost_of_pass"]["measured"] == answer
    assert budgets["test_answer_cost"]["e3"]["measured"] == pytest.approx(1 / answer)
    assert budgets["test_reasoning_e3"]["e3"]["measured"] == pytest.approx(1 / reasoning)
    generation = tests["test_within"]["traces"][0]["responses"][0]["generations"][0]
    assert generation["reasoning_text"] == "".join(REASONING)
    assert (generation["reasoning_tokens"], generation["text"]) == (reasoning, "Paris.")
    assert generation["ttfat_ms"] > generation["ttft_ms"]
    score = tests["test_answer_cost"]["scores"][0]
    assert (score["tokens"], score["reasoning_tokens"]) == (reasoning + answer, reasoning)
