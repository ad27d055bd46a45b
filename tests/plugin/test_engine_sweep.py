"""Engine sweeps (several --inferbudget-engine): each test that uses infer runs once per
engine, engines load one at a time, and the reports compare them. The model tests load
the real transformers engine twice (batch_size 1 and 4) in the inner session, run in a
subprocess: the engine's memory is the point, and a fresh process holds no earlier load."""

from __future__ import annotations

import json

import pytest

BS1 = "transformers:smollm2-135m-instruct?batch_size=1"
BS4 = "transformers:smollm2-135m-instruct?batch_size=4"
IDS = ("transformers-batch_size=1", "transformers-batch_size=4")

EVENTS = """
import pytest


def log(line):
    with open("events.log", "a") as f:
        f.write(line + "\\n")


@pytest.hookimpl(wrapper=True)
def pytest_inferbudget_make_engine(spec, config, progress):
    engine = yield
    log(f"load {spec}")
    close = engine.close

    def logged_close():
        log(f"close {spec}")
        close()

    engine.close = logged_close
    return engine


@pytest.fixture(autouse=True)
def _log_test(request):
    log(f"test {request.node.name}")
"""

SUITE = """
import pytest

PROMPTS = ["Say hi.", "Name a color.", "Say yes.", "Name a fruit."]


@pytest.mark.budget(ms_per_request=120000, relative_to_best={"ms_per_request": 1000})
def test_batch(infer):
    infer.generate(PROMPTS, max_new_tokens=6)


@pytest.mark.parametrize("word", ["one", "two"])
def test_param(infer, word):
    infer(f"Say {word}.", max_new_tokens=4)


def test_without_engine():
    pass
"""


@pytest.mark.model
def test_sweep_runs_each_test_per_engine_loads_each_once_and_compares(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(EVENTS)
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess(
        "-v",
        f"--inferbudget-engine={BS1}",
        f"--inferbudget-engine={BS4}",
        "--inferbudget-json=run.json",
        "--inferbudget-md=run.md",
        "--inferbudget-html=run.html",
    )
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            f"inferbudget: engine sweep over 2 engines: {IDS[0]}={BS1}, {IDS[1]}={BS4}",
            f"*::test_batch[[]{IDS[0]}[]] PASSED*",
            f"*::test_param[[]{IDS[0]}-one[]] PASSED*",
        ]
    )
    events = (pytester.path / "events.log").read_text().splitlines()
    loads = [e for e in events if e.startswith(("load", "close"))]
    # one load per engine, the first closed before the second loads
    assert loads == [f"load {BS1}", f"close {BS1}", f"load {BS4}", f"close {BS4}"]
    first, second = events.index(f"load {BS1}"), events.index(f"load {BS4}")
    assert all(IDS[0] in e for e in events[first:second] if e.startswith("test test_batch"))
    ran = [e for e in events if e.startswith("test ") and "[" in e]
    assert len(ran) == 6 and sum(IDS[1] in e for e in ran[3:]) == 3  # engine by engine

    result.stdout.fnmatch_lines(
        [
            "engine sweep over 2 engines; best overall: transformers-batch_size=*",
            "test*engine*requests*prompt tokens*output tokens*tokens/s*ms/req p50*best",
            f"(total)*{IDS[0]}*",
            f"*::test_batch *{IDS[0]}  4 *",
            f"relative_to_best: *::test_batch [[]{IDS[1]}[]] ms_per_request (mean)*PASS",
        ]
    )
    report = json.loads((pytester.path / "run.json").read_text())
    assert list(report["engines"]) == list(IDS)
    assert report["engines"][IDS[1]]["batch_size"] == 4
    sweep = report["sweep"]
    assert [t["test"].split("::")[1] for t in sweep["tests"]] == [
        "test_batch",
        "test_param[one]",
        "test_param[two]",
    ]
    assert sum(e["best"] for e in sweep["total"]) == 1
    batch = sweep["tests"][0]["engines"]
    # greedy decoding: the two configurations produce the same tokens
    assert batch[0]["completion_tokens"] == batch[1]["completion_tokens"] > 0
    assert all(e["tokens_per_s"] > 0 and e["ms_per_request"]["p99"] > 0 for e in batch)
    by_engine = {t["engine"] for t in report["tests"]}
    assert by_engine == set(IDS)
    assert {r["verdict"] for r in sweep["relative_to_best"]} == {"pass"}
    markdown = (pytester.path / "run.md").read_text()
    assert "### Engine sweep" in markdown and "transformers-batch\\_size=4" in markdown
    html = (pytester.path / "run.html").read_text()
    assert "<h2>Engine sweep</h2>" in html and html.count("ib-sweep") == 2


@pytest.mark.model
def test_relative_to_best_fails_the_last_engines_test_naming_the_engine(
    pytester: pytest.Pytester,
) -> None:
    """A deterministic gap: the suite gives the batch_size=4 engine twice the token cap on
    a prompt that runs past both caps, so its greedy answers are twice as long."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(relative_to_best={"tokens_per_request": 1.5})
        def test_tokens(infer):
            cap = 8 * (2 if infer.engine.describe()["batch_size"] == 4 else 1)
            for _ in range(2):
                answer = infer("Count from 1 to 50, separated by commas.", max_new_tokens=cap)
                assert answer.completion_tokens == cap  # ran to the cap: the gap is exact

        @pytest.mark.budget(relative_to_best={"tokens_per_request": 2.0})
        def test_tokens_within(infer):
            cap = 8 * (2 if infer.engine.describe()["batch_size"] == 4 else 1)
            infer("Count from 1 to 50, separated by commas.", max_new_tokens=cap)
        """
    )
    result = pytester.runpytest_subprocess(
        f"--inferbudget-engine={BS1}", f"--inferbudget-engine={BS4}", "--inferbudget-json=r.json"
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*inferbudget: relative_to_best: engine(s) too far from the best of the sweep:",
            f"*::test_tokens [[]{IDS[1]}[]] tokens_per_request (mean) 16 is 2x the best "
            f"({IDS[0]}: 8), allowed 1.5x slower: FAIL",
            f"FAILED *::test_tokens[[]{IDS[1]}[]]*",
        ]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    verdicts = {
        (r["test"].split("::")[1], r["engine"]): r["verdict"]
        for r in report["sweep"]["relative_to_best"]
    }
    assert verdicts == {
        ("test_tokens", IDS[0]): "pass",
        ("test_tokens", IDS[1]): "fail",
        ("test_tokens_within", IDS[0]): "pass",
        ("test_tokens_within", IDS[1]): "pass",
    }
    assert result.ret == pytest.ExitCode.TESTS_FAILED

    # a third engine deselected: no run of the test sees every engine, so the run judges
    # at its end, against the engines that ran, and fails naming the same engine
    alone = pytester.runpytest_subprocess(
        f"--inferbudget-engine={BS1}",
        f"--inferbudget-engine={BS4}",
        f"--inferbudget-engine=third={BS4}&device=cpu",
        "-k",
        "test_tokens and not within and not third",
    )
    alone.assert_outcomes(passed=2)
    alone.stdout.fnmatch_lines(
        [
            "inferbudget: ERROR relative_to_best failed (judged at the end of the run):",
            f"  *::test_tokens [[]{IDS[1]}[]] tokens_per_request (mean) 16 is 2x the best*FAIL",
        ]
    )
    assert alone.ret == pytest.ExitCode.TESTS_FAILED


def test_sweep_ids_at_collection_from_the_ini_list_without_loading(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyprojecttoml(
        f"""
        [tool.pytest.ini_options]
        inferbudget_engine = ["{BS1}", "big=transformers:/no/such/model"]
        """
    )
    pytester.makepyfile(
        """
        def test_a(infer):
            pass

        def test_b():
            pass
        """
    )
    result = pytester.runpytest("--co", "-q")
    result.stdout.fnmatch_lines(
        [
            "*::test_a[[]transformers-smollm2-135m-instruct-batch_size=1[]]",
            "*::test_a[[]big[]]",
            "*::test_b",
        ]
    )
    assert result.ret == pytest.ExitCode.OK
    # the option replaces the ini list; one engine: no parametrization, ids as before
    single = pytester.runpytest("--co", "-q", f"--inferbudget-engine={BS4}")
    single.stdout.fnmatch_lines(["*::test_a", "*::test_b"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            [f"--inferbudget-engine={BS4}", f"--inferbudget-ab={BS4}"],
            "*--inferbudget-ab pairs two engines*use one of the two*",
        ),
        (
            [f"--inferbudget-engine={BS4}", "--inferbudget-record=c.json"],
            "*record with one --inferbudget-engine*",
        ),
        (["--inferbudget-engine=replay:c.json"], "*a replayed cassette has no timings*"),
        (["--inferbudget-engine=" + BS1], "*both have the id*(the same spec twice?)*"),
        (["--inferbudget-engine=bad name=" + BS4], "*may hold only letters*"),
    ],
)
def test_sweep_usage_errors(pytester: pytest.Pytester, extra: list[str], message: str) -> None:
    pytester.makepyfile("def test_x(infer): pass")
    result = pytester.runpytest(f"--inferbudget-engine={BS1}", *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
