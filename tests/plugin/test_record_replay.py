"""Record a suite on the real model, then replay it with no model: tokens and answers are
checked again, time and energy budgets are unmeasured (skipped, or failed when strict)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.engines.replay import ReplayEngine
from pytest_inferbudget.errors import EngineError, EngineSpecError, EngineUnavailableError
from pytest_inferbudget.perfmodel import predict_ms
from pytest_inferbudget.records import Request
from tests.conftest import ReuseEngine
from tests.plugin.test_portable_latency import write_profile

SUITE = """
import pytest

PROMPT = "What is the capital of France? Answer in one word."

@pytest.mark.budget(max_tokens=16, tokens_per_request=16)
def test_tokens_and_answer(infer):
    response = infer(PROMPT, max_new_tokens=16)
    assert "paris" in response.text.lower()

@pytest.mark.budget(max_tokens=8, ms_per_request=60_000)
def test_tokens_and_latency(infer):
    infer.generate(["Name a color.", "Name a fruit."], max_new_tokens=8)

@pytest.mark.budget(max_tokens=8)
def test_seeded_samples(infer):
    response = infer("Name an animal.", max_new_tokens=8, n=3, temperature=0.8, seed=7)
    assert len(response.texts) == 3
"""


@pytest.fixture
def recorded(pytester: pytest.Pytester, reuse_engine: ReuseEngine) -> Path:
    """The suite run once on the real model with --inferbudget-record."""
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(
        "--inferbudget-record=cassette.json", "--inferbudget-json=recorded.json",
        plugins=[reuse_engine],
    )  # fmt: skip
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*cassette of 4 request(s) written to *cassette.json"])
    return pytester.path / "cassette.json"


def test_the_cassette_holds_every_request_with_its_generations(recorded: Path) -> None:
    cassette = json.loads(recorded.read_text())
    assert cassette["format"] == "inferbudget-cassette" and cassette["version"] == 1
    assert cassette["engine"]["spec"] == "transformers:smollm2-135m-instruct"
    entries = cassette["entries"]
    assert [e["request"]["prompt"] for e in entries] == [
        "What is the capital of France? Answer in one word.",
        "Name a color.",
        "Name a fruit.",
        "Name an animal.",
    ]
    assert [len(e["generations"]) for e in entries] == [1, 1, 1, 3]
    for entry in entries:
        for generation in entry["generations"]:
            assert generation["completion_tokens"] > 0 and generation["e2e_ms"] > 0


def test_replay_serves_the_recorded_generations_with_no_model(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    """In a fresh process that never imports torch: answers and tokens as recorded, and
    the latency budget unmeasured on replay, visibly."""
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            heavy = sorted(m for m in ("torch", "transformers", "vllm") if m in sys.modules)
            print(f"HEAVY MODULES: {heavy}")
        """
    )
    result = pytester.runpytest_subprocess(
        f"--inferbudget-replay={recorded}", "--inferbudget-json=replayed.json", "-rs", "-s"
    )
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*HEAVY MODULES: []*",
            "SKIPPED*test_suite.py:*: inferbudget: unmeasured on replay: ms_per_request: "
            "replayed from a cassette*",
        ]
    )
    recorded_run = json.loads((pytester.path / "recorded.json").read_text())
    replayed_run = json.loads((pytester.path / "replayed.json").read_text())
    assert replayed_run["engine"]["device"] == "replay"
    for before, after in zip(recorded_run["tests"], replayed_run["tests"], strict=True):
        old = [g for t in before["traces"] for r in t["responses"] for g in r["generations"]]
        new = [g for t in after["traces"] for r in t["responses"] for g in r["generations"]]
        assert [(g["text"], g["completion_tokens"]) for g in new] == [
            (g["text"], g["completion_tokens"]) for g in old
        ]
        assert all(g["e2e_ms"] is None and g["ttft_ms"] is None for g in new)
        responses = [r for t in after["traces"] for r in t["responses"]]
        assert all(r["replayed"] and r["energy"] is None for r in responses)
    budgets = {b["key"]: b for t in replayed_run["tests"] for b in t["budgets"]}
    assert budgets["ms_per_request"]["verdict"] == "unmeasured"
    assert budgets["max_tokens"]["verdict"] == "pass"


def test_strict_replay_fails_unmeasured_time_budgets(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    result = pytester.runpytest(f"--inferbudget-replay={recorded}", "--inferbudget-strict")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*ms_per_request*UNMEASURED*"])


def test_token_budgets_are_still_enforced_on_replay(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    pytester.makepyfile(test_suite=SUITE.replace("max_tokens=16, ", "max_tokens=1, "))
    result = pytester.runpytest(f"--inferbudget-replay={recorded}")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*test_tokens_and_answer*", "*max_tokens*FAIL*"])


def test_a_request_missing_from_the_cassette_is_an_error_naming_it(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    pytester.makepyfile(test_suite=SUITE.replace("Name a fruit.", "Name a vegetable."))
    result = pytester.runpytest(f"--inferbudget-replay={recorded}", "--inferbudget-json=r.json")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at call of test_tokens_and_latency*",
            "cassette *cassette.json has no (more) recording of the request "
            "'Name a vegetable.' with {*record again with --inferbudget-record*",
        ]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    assert len(report["tests"]) == 3  # the failed request loses no other test's record


def test_idealized_runtime_is_checked_on_replay(
    pytester: pytest.Pytester, recorded: Path, tmp_path: Path
) -> None:
    """Token counts are real on replay, so a profile's prediction is too (issue #8)."""
    profile = write_profile(tmp_path / "profile.json", {1: 20.0, 64: 40.0, 256: 120.0}, 10.0)
    pytester.makepyfile(
        test_suite="""
        import pytest

        @pytest.mark.budget(idealized_ms_per_request=1000)
        def test_tokens_and_answer(infer):
            infer("What is the capital of France? Answer in one word.", max_new_tokens=16)
        """
    )
    result = pytester.runpytest(
        f"--inferbudget-replay={recorded}",
        f"--inferbudget-profile={tmp_path / 'profile.json'}",
        "--inferbudget-json=r.json",
    )
    result.assert_outcomes(passed=1)
    [test] = json.loads((pytester.path / "r.json").read_text())["tests"]
    [response] = [r for t in test["traces"] for r in t["responses"]]
    [generation] = response["generations"]
    expected = predict_ms(profile, generation["prompt_tokens"], generation["completion_tokens"])
    assert response["idealized_ms"] == pytest.approx(expected)
    assert test["budgets"][0]["verdict"] == "pass"


def test_record_and_replay_exclude_each_other(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--inferbudget-record=a.json", "--inferbudget-replay=b.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--inferbudget-record and --inferbudget-replay exclude*"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no cassette at .*; record one with --inferbudget-record"),
        ("{truncated", "is unreadable or not JSON"),
        ('{"entries": []}', "is not an inferbudget cassette"),
        ('{"format": "inferbudget-cassette", "version": 9, "entries": []}', "has version 9"),
        (
            '{"format": "inferbudget-cassette", "version": 1, "entries": [{"request": {}}]}',
            "has a malformed entry",
        ),
    ],
    ids=["missing", "truncated", "foreign", "newer", "malformed"],
)
def test_a_bad_cassette_is_an_error_naming_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "cassette.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EngineUnavailableError, match=message) as raised:
        ReplayEngine.from_spec(EngineSpec.parse(f"replay:{path}"), print)
    assert str(path) in str(raised.value)


def test_repeated_requests_replay_in_recorded_order(recorded: Path) -> None:
    engine = ReplayEngine.from_spec(EngineSpec.parse(f"replay:{recorded}"), print)
    request = Request("Name a color.", max_new_tokens=8)
    [response] = engine.generate([request])
    assert response.replayed and response.generations[0].e2e_ms is None
    with pytest.raises(EngineError, match=r"no \(more\) recording of the request 'Name a color\.'"):
        engine.generate([request])  # recorded once, so served once


def test_the_replay_engine_takes_no_options(tmp_path: Path) -> None:
    spec = EngineSpec.parse(f"replay:{tmp_path / 'cassette.json'}?speed=2")
    with pytest.raises(EngineSpecError, match=r"option\(s\) speed; the replay engine takes no"):
        ReplayEngine.from_spec(spec, print)
