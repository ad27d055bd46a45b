"""Idealized runtime and roofline budgets through the plugin: portable latency on the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_inferbudget.perfmodel import (
    RuntimeProfile,
    TimingSample,
    build_profile,
    fit_profile,
    predict_ms,
)
from tests.conftest import ReuseEngine

LENGTHS = (1, 64, 256)


def write_profile(path: Path, prompt_ms: dict[int, float], per_token_ms: float) -> RuntimeProfile:
    """A profile fitted, exactly, to timings that follow the given coefficients."""
    samples = [
        TimingSample(p, o, prompt_ms[p], prompt_ms[p] + per_token_ms * (o - 1))
        for p in LENGTHS
        for o in (8, 32)
    ]
    fit = fit_profile(samples, LENGTHS)
    profile = build_profile(
        fit, samples, model="smollm2", hardware_key="test", engine_spec="transformers:x"
    )
    profile.save(path)
    return profile


def test_idealized_and_roofline_budgets_use_each_requests_tokens(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path / "profile.json", {1: 20.0, 64: 40.0, 256: 120.0}, 10.0)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(idealized_ms_per_request=1000, roofline_ratio=1e9)
        def test_portable(infer):
            infer.generate(["Say hi.", "Name three colors."], max_new_tokens=12)
        """
    )
    result = pytester.runpytest(
        f"--inferbudget-profile={tmp_path / 'profile.json'}",
        "--inferbudget-accelerator=cpu:100:20",
        "--inferbudget-json=r.json",
        plugins=[reuse_engine],
    )
    result.assert_outcomes(passed=1)
    test = json.loads((pytester.path / "r.json").read_text())["tests"][0]
    responses = [r for t in test["traces"] for r in t["responses"]]
    for r in responses:
        [g] = r["generations"]
        assert r["idealized_ms"] == pytest.approx(
            predict_ms(profile, g["prompt_tokens"], g["completion_tokens"])
        )
        assert 0 < r["roofline_ms"] < g["e2e_ms"]  # no engine beats the hardware bound
    budgets = {b["key"]: b for b in test["budgets"]}
    assert budgets["idealized_ms_per_request"]["measured"] == pytest.approx(
        sum(r["idealized_ms"] for r in responses) / 2
    )
    assert budgets["roofline_ratio"]["measured"] > 1


def test_portable_budgets_without_profile_or_accelerator_say_what_to_pass(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(idealized_ms_per_request=1000, roofline_ratio=10)
        def test_portable(infer):
            infer("Say hi.", max_new_tokens=4)
        """
    )
    result = pytester.runpytest(plugins=[reuse_engine])
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "idealized_ms_per_request: no runtime profile: pass --inferbudget-profile PATH*",
            "roofline_ratio: no hardware bound: pass --inferbudget-accelerator NAME*",
        ]
    )


def test_corrupt_profile_is_a_test_error_naming_the_file(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, tmp_path: Path
) -> None:
    broken = tmp_path / "profile.json"
    broken.write_text('{"schema_version": 1, "model": ')
    pytester.makepyfile("def test_one(infer):\n    infer('Say hi.', max_new_tokens=2)\n")
    result = pytester.runpytest(f"--inferbudget-profile={broken}", plugins=[reuse_engine])
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{broken}*"])
