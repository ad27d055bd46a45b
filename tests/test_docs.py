"""The docs' examples run, and the docs name every key, option and fixture."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_inferbudget.budget import BUDGET_KEYS, MODIFIERS
from tests.conftest import ReuseEngine

DOCS = Path(__file__).resolve().parent.parent / "docs"
TEST_FILE_BLOCK = re.compile(r"```python\n# file: (test_\w+\.py)\n(.*?)```", re.DOTALL)


def doc_test_files() -> list[tuple[str, str, str]]:
    return [
        (page.name, name, body)
        for page in sorted(DOCS.glob("*.md"))
        for name, body in TEST_FILE_BLOCK.findall(page.read_text())
    ]


@pytest.mark.parametrize(
    ("page", "name", "body"),
    doc_test_files(),
    ids=lambda v: v if v.endswith((".md", ".py")) else "",
)
def test_doc_example_passes(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, page: str, name: str, body: str
) -> None:
    pytester.path.joinpath(name).write_text(body)
    result = pytester.runpytest(plugins=[reuse_engine])
    outcomes = result.parseoutcomes()
    # a budget no meter here can measure (energy) is skipped with its reason, not failed
    ran = outcomes.get("passed", 0) + outcomes.get("skipped", 0)
    assert ran == body.count("\ndef test_"), result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK,), result.stdout.str()


def test_every_budget_key_option_and_fixture_is_documented() -> None:
    text = "\n".join(page.read_text() for page in DOCS.glob("*.md"))
    names = [
        *BUDGET_KEYS,
        *MODIFIERS,
        "--inferbudget-strict",
        "--inferbudget-energy",
        "--inferbudget-save",
        "--inferbudget-autosave",
        "--inferbudget-compare",
        "--inferbudget-compare-fail",
        "--inferbudget-compare-any-hardware",
        "--inferbudget-md",
        "--inferbudget-html",
        "--inferbudget-profile",
        "--inferbudget-accelerator",
        "inferbudget_storage",
        "inferbudget_rapl_root",
        "inferbudget_metering",
        "pytest_inferbudget_make_meter",
        "--inferbudget-engine",
        "--inferbudget-json",
        "inferbudget_engine",
        "INFERBUDGET_CACHE_DIR",
        "`infer`",
        "`inference_engine`",
        "pytest_inferbudget_make_engine",
        "--inferbudget-record",
        "--inferbudget-replay",
        "inferbudget_vllm_server_model",
        "inferbudget_vllm_server_args",
        "`vllm_server`",
        "`llamacpp_server`",
        "pytest_inferbudget.engines",
    ]
    missing = [name for name in names if not re.search(f"`{re.escape(name.strip('`'))}[` ]", text)]
    assert not missing, f"undocumented: {missing}"
