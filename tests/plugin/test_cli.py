"""The `inferbudget` command: show, compare and render saved runs; provision the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_inferbudget.cli import main
from pytest_inferbudget.perfmodel import (
    RuntimeProfile,
    TimingSample,
    build_profile,
    fit_profile,
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


def test_cli_shows_compares_and_renders_saved_runs(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=16)
        def test_one(infer):
            for _ in range(3):
                infer("Say hi.", max_new_tokens=4)
        """
    )
    pytester.runpytest("--inferbudget-json=a.json", plugins=[reuse_engine])
    pytester.runpytest("--inferbudget-json=b.json", plugins=[reuse_engine])
    a, b = str(pytester.path / "a.json"), str(pytester.path / "b.json")
    assert main(["show", a]) == 0
    assert main(["compare", a, b]) == 0
    assert main(["report", a, "--md", str(pytester.path / "a.md")]) == 0
    out = capsys.readouterr().out
    assert "test_one" in out and "max_tokens" in out
    assert "tokens_per_request" in out and "exact-equal" in out
    assert (pytester.path / "a.md").read_text().startswith("#")
    (pytester.path / "bad.json").write_text("not json")
    assert main(["show", str(pytester.path / "bad.json")]) == 2
    assert "is not a readable JSON report" in capsys.readouterr().err


@pytest.mark.model  # loads the real model in a subprocess
def test_cli_provision_prints_the_cached_model_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["provision"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
