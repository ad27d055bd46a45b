"""The `inferbudget` command: show, compare and render saved runs; provision the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_inferbudget.cli import main
from tests.conftest import ReuseEngine


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
