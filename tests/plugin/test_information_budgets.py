"""information_capacity and bits_per_byte budgets through the plugin, on the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ReuseEngine

CORPUS = (
    Path(__file__).resolve().parents[2] / "examples" / "data" / "declaration_of_independence.txt"
)


def test_text_budgets_judge_the_named_text_and_land_in_the_report(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        f"""
        from pathlib import Path

        import pytest

        TEXT = Path({str(CORPUS)!r}).read_text(encoding="utf-8")[:1500]

        @pytest.mark.budget(bits_per_byte=8.0, information_capacity=-10.0, text="declaration")
        def test_compresses(infer):
            measured = infer.measure_text(TEXT, name="declaration")
            infer.measure_text("Hello there.", name="greeting")
            assert 0 < measured.bits_per_byte < 8

        @pytest.mark.budget(bits_per_byte=0.01, text="declaration")
        def test_too_tight(infer):
            infer.measure_text(TEXT, name="declaration")
        """
    )
    result = pytester.runpytest("--inferbudget-json=r.json", plugins=[reuse_engine])
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*bits_per_byte*"])
    tests = {t["nodeid"].split("::")[1]: t for t in json.loads(
        (pytester.path / "r.json").read_text())["tests"]}  # fmt: skip
    passed = tests["test_compresses"]
    declaration = next(t for t in passed["texts"] if t["name"] == "declaration")
    budgets = {b["key"]: b for b in passed["budgets"]}
    assert budgets["bits_per_byte"]["measured"] == pytest.approx(declaration["bits_per_byte"])
    assert budgets["information_capacity"]["measured"] == pytest.approx(
        declaration["information_capacity"]
    )
    assert [b["verdict"] for b in tests["test_too_tight"]["budgets"]] == ["fail"]
