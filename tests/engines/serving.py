"""A budgeted suite that every serving engine runs through the plugin, and its check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_inferbudget.records import Response

SERVING_SUITE = """
import pytest

@pytest.mark.budget(max_tokens=16, ms_per_request=30_000, ttft_ms=10_000, tpot_ms=2_000)
def test_capital(infer):
    response = infer("What is the capital of France? Answer in one word.", max_new_tokens=16)
    assert "paris" in response.text.lower()

@pytest.mark.budget(tokens_per_request=48, stat="p90")
def test_samples(infer):
    response = infer("Name an animal.", max_new_tokens=16, n=3, temperature=0.8, seed=1)
    assert len(response.texts) == 3
"""


def run_serving_suite(pytester: pytest.Pytester, spec: str, *plugins: object) -> dict[str, Any]:
    """Run the suite on engine ``spec``: both tests pass with every budget measured and
    met, and TTFT comes before the end. Returns the JSON report."""
    pytester.makepyfile(SERVING_SUITE)
    result = pytester.runpytest(
        f"--inferbudget-engine={spec}", "--inferbudget-json=r.json", plugins=list(plugins)
    )
    result.assert_outcomes(passed=2)
    report: dict[str, Any] = json.loads((pytester.path / "r.json").read_text())
    budgets = {b["key"]: b for t in report["tests"] for b in t["budgets"]}
    assert {k: b["verdict"] for k, b in budgets.items()} == dict.fromkeys(
        ["max_tokens", "ms_per_request", "ttft_ms", "tpot_ms", "tokens_per_request"], "pass"
    )
    assert 0 < budgets["ttft_ms"]["measured"] < budgets["ms_per_request"]["measured"]
    return report


def assert_same_generations(ours: list[Response], reference: list[Response]) -> None:
    """Request for request, the same text and the same prompt and completion token counts
    (EOS included) and finish reason as the reference engine gave."""
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.request == theirs.request
        (g,), (t,) = mine.generations, theirs.generations
        assert (g.prompt_tokens, g.completion_tokens, g.finish_reason, g.text) == (
            t.prompt_tokens,
            t.completion_tokens,
            t.finish_reason,
            t.text,
        )
