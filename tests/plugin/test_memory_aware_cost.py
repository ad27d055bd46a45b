"""eFLOPs budgets through the plugin, on the real model's token counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_inferbudget.models import cache_root
from pytest_inferbudget.perfmodel import ModelShape, eflops, parse_accelerator, request_cost
from tests.conftest import ReuseEngine


def _shape(engine: ReuseEngine) -> ModelShape:
    info = engine.engine.describe()
    config = json.loads((Path(str(info["model"])) / "config.json").read_text())
    return ModelShape.from_config(config, dtype=info.get("dtype"))


def test_eflops_budget_and_cost_of_pass_in_eflops(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    assert cache_root().is_dir()
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(eflops_per_request=1e15, cost_of_pass=1e16, cost_unit="eflops")
        def test_priced(infer):
            for prompt in ("Say hi.", "Name three colors."):
                out = infer(prompt, max_new_tokens=12)
                infer.score(out, correct=True)
        """
    )
    result = pytester.runpytest(
        "--inferbudget-accelerator=cpu:100:20", "--inferbudget-json=r.json", plugins=[reuse_engine]
    )
    result.assert_outcomes(passed=1)
    test = json.loads((pytester.path / "r.json").read_text())["tests"][0]
    shape, device = _shape(reuse_engine), parse_accelerator("cpu:100:20")
    expected = []
    for trace in test["traces"]:
        [response] = trace["responses"]
        [g] = response["generations"]
        cost = request_cost(shape, g["prompt_tokens"], g["completion_tokens"])
        assert response["eflops"] == pytest.approx(eflops(cost, device))
        expected.append(response["eflops"])
    budgets = {b["key"]: b for b in test["budgets"]}
    assert budgets["eflops_per_request"]["measured"] == pytest.approx(sum(expected) / 2)
    assert budgets["cost_of_pass"]["measured"] == pytest.approx(sum(expected) / 2)
    assert [s["eflops"] for s in test["scores"]] == pytest.approx(expected)
