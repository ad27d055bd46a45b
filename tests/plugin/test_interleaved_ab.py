"""Interleaved A/B in one session (--inferbudget-ab), on the real model: the second engine
serves the same requests in random alternation and is judged paired against the first."""

from __future__ import annotations

import json

import pytest

from pytest_inferbudget.engines import Engine, EngineSpec
from tests.conftest import ReuseEngine
from tests.plugin.test_regression_gating import SlowerEngine

B_SPEC = "transformers:smollm2-135m-instruct?device=cpu"
SUITE = """
import pytest

PROMPTS = ["Say hi.", "Name a color.", "Say yes.", "Name a fruit.", "Say no."]

@pytest.mark.budget(ms_per_request=60000)
def test_requests(infer):
    for _ in range(2):
        for prompt in PROMPTS:
            infer(prompt, max_new_tokens=6)
"""


class ServeB:
    """Serves the A/B engine: the real engine, or the real engine made ``factor`` slower."""

    def __init__(self, engine: Engine, factor: float) -> None:
        self.engine = engine
        self.factor = factor

    def pytest_inferbudget_make_engine(self, spec: EngineSpec) -> Engine | None:
        if str(spec) != B_SPEC:
            return None
        slower = SlowerEngine(self.engine, self.factor)
        slower.spec = B_SPEC
        return slower


def test_the_same_engine_interleaved_passes_and_a_slower_one_fails_the_gate(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, smollm_engine: Engine
) -> None:
    pytester.makepyfile(SUITE)
    same = pytester.runpytest(
        f"--inferbudget-ab={B_SPEC}",
        "--inferbudget-compare-fail=ms_per_request:50%",
        "--inferbudget-compare-fail=tokens_per_request:0",
        "--inferbudget-json=same.json",
        plugins=[reuse_engine, ServeB(smollm_engine, 0.0)],
    )
    same.assert_outcomes(passed=1)
    same.stdout.fnmatch_lines(
        [
            f"interleaved A/B: transformers:smollm2-135m-instruct (A, the session's engine), "
            f"interleaved with {B_SPEC} (B)",
            "*test_requests*tokens_per_request*10 vs 10*exact*exact-equal",
            "*test_requests*ms_per_request*10 vs 10*(paired)*",
        ]
    )
    report = json.loads((pytester.path / "same.json").read_text())
    [test] = report["tests"]
    assert len(test["ab_traces"]) == len(test["traces"]) == 10
    assert report["ab_comparison"]["tests"][0]["nodeid"].endswith("::test_requests")

    slower = pytester.runpytest(
        f"--inferbudget-ab={B_SPEC}",
        "--inferbudget-compare-fail=ms_per_request:50%",
        "--inferbudget-md=ab.md",
        plugins=[reuse_engine, ServeB(smollm_engine, 2.0)],  # B three times as slow
    )
    slower.assert_outcomes(failed=1)
    slower.stdout.fnmatch_lines(
        [
            f"*inferbudget: {B_SPEC} (B) regressed against A:",
            "*::test_requests ms_per_request: * -> * (+*%*, threshold 50%, n 10 vs 10, p *"
            "(paired), regression)*",
        ]
    )
    assert "Interleaved A/B:" in (pytester.path / "ab.md").read_text()


def test_ab_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    bad = pytester.runpytest("--inferbudget-ab=no-colon")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--inferbudget-ab:*"])
    replay = pytester.runpytest("--inferbudget-ab=replay:cassette.json")
    assert replay.ret == pytest.ExitCode.USAGE_ERROR
    replay.stderr.fnmatch_lines(["*a replayed cassette has no timings*"])
    # a gate with only an A/B comparison to gate is fine: no "nothing is compared" error
    gated = pytester.runpytest(f"--inferbudget-ab={B_SPEC}", "--inferbudget-compare-fail=ttft_ms:1")
    assert gated.ret == pytest.ExitCode.OK
