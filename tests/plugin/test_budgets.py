"""The plugin driven through pytester on the real engine and the real model."""

from __future__ import annotations

import json

import pytest

from pytest_inferbudget.engines import Engine
from tests.conftest import ReuseEngine
from tests.engines.devices import auto_device_type, auto_dtype


def cells(*parts: str) -> str:
    """An fnmatch pattern for a table row holding these cells in order, any padding."""
    return "*" + " *".join(parts) + "*"


def run(pytester: pytest.Pytester, reuse_engine: ReuseEngine, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*args, plugins=[reuse_engine])


def test_budgets_within_limits_pass_and_are_summarised(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=32, tokens_per_request=32, ms_per_request=60000,
                            ttft_ms=60000, tpot_ms=10000)
        def test_capital(infer):
            out = infer("What is the capital of France? Answer in one word.", max_new_tokens=32)
            assert "Paris" in out.text
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*= inferbudget =*",
            f"engine: transformers:smollm2-135m-instruct ({auto_device_type()}*, {auto_dtype()})",
            "test * budget * limit * measured * stat * samples * verdict",
            cells("::test_capital", "max_tokens", "32 tokens", "* tokens", "max", "1", "pass"),
            cells("tokens_per_request", "32 tokens", "* tokens", "mean", "1", "pass"),
            cells("ms_per_request", "60000 ms", "* ms", "mean", "1", "pass"),
            cells("ttft_ms", "60000 ms", "* ms", "mean", "1", "pass"),
            cells("tpot_ms", "10000 ms", "* ms", "mean", "1", "pass"),
            "5 budget(s) in 1 test(s): 5 passed",
        ]
    )


def test_cpu_time_and_machine_load_are_measured_and_budgeted(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    """The engine's CPU time per request is a budget key (the in-process engine works in
    this process, so its CPU time is the engine's), and the machine's load is recorded."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(cpu_ms_per_request=120000)
        def test_capital(infer):
            infer("What is the capital of France? Answer in one word.", max_new_tokens=16)
            infer("What is the capital of Japan? Answer in one word.", max_new_tokens=16)
        """
    )
    result = run(pytester, reuse_engine, "--inferbudget-json=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "machine during engine calls: other processes *% of CPU, steal *%, load *",
            cells("::test_capital", "cpu_ms_per_request", "120000 ms", "* ms", "mean", "2", "pass"),
        ]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    (test,) = report["tests"]
    cpu = [r["cpu_ms"] for t in test["traces"] for r in t["responses"]]
    e2e = [r["generations"][0]["e2e_ms"] for t in test["traces"] for r in t["responses"]]
    # a CPU engine keeps at least part of a core busy for most of its wall time
    assert all(c > 0.3 * e for c, e in zip(cpu, e2e, strict=True)), (cpu, e2e)
    machine = test["machine"]
    assert machine["windows"] == 2 and machine["cpu_count"] >= 1
    assert 0.0 <= machine["other_cpu_share"] <= 1.0
    assert machine["own_cpu_s"] * 1000 == pytest.approx(sum(cpu), rel=1e-6)
    assert report["machine"]["windows"] == 2


def test_exceeded_budget_fails_with_a_table(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=2, ms_per_request=60000)
        def test_wordy(infer):
            infer("What is the capital of France? Answer in one word.", max_new_tokens=32)
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*inferbudget: 1 of 2 budget(s) not met",
            cells("budget", "limit", "measured", "stat", "samples", "verdict"),
            cells("max_tokens", "2 tokens", "* tokens", "max", "1", "FAIL"),
            cells("ms_per_request", "60000 ms", "* ms", "mean", "1", "pass"),
        ]
    )
    # the violation is reported as a message, not as a traceback into the plugin
    result.stdout.no_fnmatch_line("*pytest_inferbudget/plugin.py*")


def test_quantile_statistic_and_merged_markers(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.budget(max_tokens=64)

        @pytest.mark.budget(ms_per_request=60000, stat="p90")
        @pytest.mark.budget(ms_per_request=50000)
        def test_batch(infer):
            outs = infer.generate(["Say hi.", "Say bye.", "Name a color."], max_new_tokens=8)
            assert len(outs) == 3
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            cells("::test_batch", "ms_per_request", "50000 ms", "* ms", "mean", "3", "pass"),
            cells("ms_per_request", "60000 ms", "* ms", "p90", "3", "pass"),
            cells("max_tokens", "64 tokens", "* tokens", "max", "3", "pass"),
        ]
    )


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            "budget(ms_per_reqest=100)",
            "*unknown budget key 'ms_per_reqest'; did you mean 'ms_per_request'?*",
        ),
        ("budget(max_tokens=-5)", "*budget max_tokens=-5 must be a finite number above 0*"),
        ("budget(ttft_ms='fast')", "*budget ttft_ms='fast' must be a number (in ms), got str*"),
        ("budget(max_tokens=True)", "*budget max_tokens=True must be a number*"),
        ("budget(ms_per_request=10, stat='p42')", "*budget stat='p42' is not a statistic*"),
        ("budget(stat='p95')", "*budget marker sets no limit*"),
        ("budget(100)", "*budget takes keyword limits only*"),
    ],
)
def test_bad_budget_is_a_collection_error_naming_key_and_test(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_named(infer):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting*", "*::test_named: " + message.lstrip("*")])


def test_every_bad_marker_of_a_file_is_reported_not_only_the_first(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(ms_per_reqest=100)
        def test_first(infer):
            pass

        @pytest.mark.budget(max_tokens=8)
        def test_fine(infer):
            pass

        class TestGroup:
            @pytest.mark.budget(ttft_ms="fast")
            def test_second(self, infer):
                pass

        @pytest.mark.budget(max_tokens=-1)
        def test_third(infer):
            pass
        """
    )
    result = pytester.runpytest("--co")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting*",
            "*::test_first: unknown budget key 'ms_per_reqest'*",
            "*::test_third: budget max_tokens=-1 must be*",
        ]
    )
    result.stdout.fnmatch_lines(["*::TestGroup::test_second: budget ttft_ms='fast'*"])
    assert "test_fine" not in result.stdout.str().split("short test summary")[0].split("ERRORS")[-1]


def test_conflicting_markers_are_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.budget(max_tokens=10)

        @pytest.mark.budget(max_tokens=20)
        def test_conflict(infer):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*::test_conflict: budget markers conflict on max_tokens (stat max): 20 vs 10; keep one"]
    )


def test_budget_with_nothing_recorded_fails(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=10)
        def test_uses_infer_but_never_calls(infer):
            pass

        @pytest.mark.budget(max_tokens=10)
        def test_without_infer():
            pass
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*::test_uses_infer_but_never_calls has a budget marker but recorded no generation*",
            "*::test_without_infer has a budget marker but does not use the `infer` fixture*",
        ]
    )


def test_own_assertion_failure_is_not_hidden_by_budget(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=1)
        def test_wrong(infer):
            out = infer("What is the capital of France? Answer in one word.", max_new_tokens=16)
            assert "Berlin" in out.text
        """
    )
    result = run(pytester, reuse_engine, "--inferbudget-json=report.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert 'Berlin' in *"])
    result.stdout.no_fnmatch_line("*budget(s) not met*")
    # its measurements are still kept: the summary and the report show the verdict
    result.stdout.fnmatch_lines(
        [cells("::test_wrong", "max_tokens", "1 tokens", "* tokens", "max", "1", "FAIL")]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    assert report["tests"][0]["outcome"] == "failed"
    assert report["tests"][0]["budgets"][0]["verdict"] == "fail"


def test_violation_example_can_be_xfailed(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.xfail(strict=True, reason="shows a violation")
        @pytest.mark.budget(max_tokens=2)
        def test_violation(infer):
            infer("What is the capital of France? Answer in one word.", max_new_tokens=16)
        """
    )
    result = run(pytester, reuse_engine)
    result.assert_outcomes(xfailed=1)
    assert result.ret == pytest.ExitCode.OK


def test_json_report_holds_run_budgets_and_samples(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(tokens_per_request=100, ms_per_request=60000, stat="p50")
        def test_two(infer):
            infer.generate(["Say hi.", "Name a color."], max_new_tokens=8)
            infer("Name a fruit.", temperature=0.7, n=2, seed=3, max_new_tokens=8)

        def test_unbudgeted(infer):
            infer("Say yes.", max_new_tokens=4)
        """
    )
    result = run(pytester, reuse_engine, "--inferbudget-json", "out/report.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["report written to */out/report.json"])
    path = pytester.path / "out" / "report.json"
    report = json.loads(path.read_text())
    assert report["schema_version"] == 1
    assert len(report["run_id"]) == 32
    assert report["started_at"] <= report["finished_at"]
    assert report["engine"]["spec"] == "transformers:smollm2-135m-instruct"
    assert str(report["engine"]["device"]).startswith(auto_device_type())
    assert {"machine", "cpu_model", "cpu_count"} <= report["hardware"].keys()
    assert {"python", "pytest", "torch", "transformers"} <= report["libraries"].keys()
    assert report["summary"] == {
        "tests": 2,
        "budgets": 2,
        "pass": 2,
        "fail": 0,
        "inconclusive": 0,
        "unmeasured": 0,
    }
    budgeted, unbudgeted = report["tests"]
    assert unbudgeted["budgets"] == [] and len(unbudgeted["traces"]) == 1
    responses = [r for t in budgeted["traces"] for r in t["responses"]]
    assert [r["request"]["n"] for r in responses] == [1, 1, 2]
    # the reported figure is the statistic of the per-request samples in the same file
    per_request_ms = sorted(max(g["e2e_ms"] for g in r["generations"]) for r in responses)
    ms_budget = next(b for b in budgeted["budgets"] if b["key"] == "ms_per_request")
    assert ms_budget["measured"] == pytest.approx(per_request_ms[1])
    assert ms_budget["samples"] == 3
    tokens_budget = next(b for b in budgeted["budgets"] if b["key"] == "tokens_per_request")
    per_request_tokens = sorted(
        sum(g["completion_tokens"] for g in r["generations"]) for r in responses
    )
    assert tokens_budget["measured"] == per_request_tokens[1]
    assert not list(path.parent.glob(".report.json.*")), "temporary file left behind"


def test_unwritable_json_report_fails_the_run(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    (pytester.path / "blocked").write_text("a file where a folder is needed")
    result = run(pytester, reuse_engine, "--inferbudget-json", "blocked/report.json")
    result.stdout.fnmatch_lines(["inferbudget: ERROR cannot write */blocked/report.json*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_unknown_engine_is_a_test_error_naming_known_engines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_one(infer):
            infer("hi")
        """
    )
    result = pytester.runpytest("--inferbudget-engine", "tgi:some-model")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*cannot start engine 'tgi:some-model': unknown engine 'tgi'*known engines: "
            "openai, replay, transformers, vllm*"
        ]
    )


def test_missing_model_folder_says_how_to_fix(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_one(infer):
            infer("hi")
        """
    )
    result = pytester.runpytest("--inferbudget-engine", "transformers:/no/such/model")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*model '/no/such/model' is neither a known alias (smollm2-135m-instruct) nor a folder*"]
    )


def test_malformed_engine_spec_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_one(): pass")
    result = pytester.runpytest("--inferbudget-engine", "no-colon-here")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*engine spec 'no-colon-here' is not NAME:TARGET*"])


def test_engine_from_ini_and_option_overrides_it(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ninferbudget_engine = transformers:/models/from-ini\n")
    pytester.makepyfile("def test_one(): pass")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["inferbudget: engine transformers:/models/from-ini"])
    result = pytester.runpytest("--inferbudget-engine=transformers:/models/from-option")
    result.stdout.fnmatch_lines(["inferbudget: engine transformers:/models/from-option"])


def test_conftest_can_override_the_engine_fixture(
    pytester: pytest.Pytester, smollm_engine: Engine
) -> None:
    model_folder = smollm_engine.describe()["model"]
    pytester.makeconftest(
        f"""
        import pytest
        from pytest_inferbudget.engines import EngineSpec, create_engine

        @pytest.fixture(scope="session")
        def inference_engine():
            engine = create_engine(EngineSpec.parse("transformers:{model_folder}?batch_size=2"))
            yield engine
            engine.close()
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=16)
        def test_one(infer):
            assert "Paris" in infer("What is the capital of France? Answer in one word.").text
            assert infer.engine.describe()["batch_size"] == 2
        """
    )
    result = pytester.runpytest("--inferbudget-json=r.json")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["engine"]["spec"].endswith("?batch_size=2")


def test_inconclusive_warning_class_is_importable_from_the_plugin() -> None:
    """``filterwarnings`` may name it by the plugin module, where it lived before, by the
    package, or by ``errors``, its home."""
    import pytest_inferbudget
    from pytest_inferbudget import errors, plugin

    assert plugin.InconclusiveBudgetWarning is errors.InconclusiveBudgetWarning
    assert pytest_inferbudget.InconclusiveBudgetWarning is errors.InconclusiveBudgetWarning
    assert issubclass(plugin.InconclusiveBudgetWarning, UserWarning)


def test_tests_without_budget_or_infer_load_no_session_code(pytester: pytest.Pytester) -> None:
    """A suite that does not use the plugin pays only for its hooks, even when it runs."""
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            print("SESSION-LOADED:", "pytest_inferbudget.session" in sys.modules)
        """
    )
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-s", "-p", "inferbudget")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SESSION-LOADED: False"])
