"""eff@k for generated code: the sandbox, the task format and ENAMEL's scoring, all with real
child processes (no mocks). Tasks are small, so the whole file runs in well under a minute."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from pytest_inferbudget.code import (
    CENSOR_RULES,
    CensorRule,
    CodeTask,
    CodeTaskError,
    ExecutionResult,
    Level,
    Outcome,
    ReferenceCache,
    ReferenceSolutionError,
    TestCase,
    censoring_limits,
    enamel_levels,
    example_task_path,
    harness,
    hodges_lehmann,
    load_task,
    probe_isolation,
    run_candidate,
    score_levels,
    score_sample,
    unprivileged_interpreter,
)
from pytest_inferbudget.code.launch import WORKDIR, Containment
from pytest_inferbudget.code.protocol import Records
from pytest_inferbudget.code.sandbox import HARNESS_PATH
from pytest_inferbudget.code.supervision import group_alive, namespace_alive

SQUARE_TESTS = (TestCase((3,), 9), TestCase((4,), 16))


def run(
    source: str,
    tests: tuple[TestCase, ...] = SQUARE_TESTS,
    *,
    cpu_seconds: float = 5.0,
    memory_mb: int = 256,
    wall_seconds: float = 5.0,
    **options: Any,
) -> ExecutionResult:
    return run_candidate(
        source,
        "f",
        tests,
        cpu_seconds=cpu_seconds,
        memory_mb=memory_mb,
        wall_seconds=wall_seconds,
        **options,
    )


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def group_exists(pgid: int) -> bool:
    """A live (not zombie) process is left in the group."""
    return group_alive(pgid)


def stops_growing(path: Path, settle_s: float = 0.4) -> bool:
    """A marker file written every 10 ms by a process stops growing once the process died."""
    before = path.stat().st_size if path.exists() else 0
    time.sleep(settle_s)
    after = path.stat().st_size if path.exists() else 0
    return before == after


# --------------------------------------------------------------------------- Hodges-Lehmann


def brute_force_hl(values: list[float]) -> float:
    """ENAMEL's calc_exec_time, spelled out: the lower triangle (diagonal included) of the
    matrix of pairwise means, then its median."""
    n = len(values)
    matrix = [[(values[i] + values[j]) / 2 for j in range(n)] for i in range(n)]
    return statistics.median(matrix[i][j] for i in range(n) for j in range(i + 1))


def test_hodges_lehmann_known_values() -> None:
    assert hodges_lehmann([5.0]) == 5.0
    assert hodges_lehmann([1.0, 3.0]) == 2.0
    assert hodges_lehmann([1.0, 2.0, 3.0]) == 2.0
    # One wild outlier barely moves it, unlike the mean.
    assert hodges_lehmann([1.0, 1.1, 0.9, 1.0, 50.0]) == pytest.approx(1.05)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=12))
def test_hodges_lehmann_matches_brute_force(values: list[float]) -> None:
    assert hodges_lehmann(values) == pytest.approx(brute_force_hl(values), rel=1e-9, abs=1e-9)
    walsh = [(a + b) / 2 for a, b in itertools.combinations_with_replacement(values, 2)]
    assert hodges_lehmann(values) == pytest.approx(statistics.median(walsh), abs=1e-9)
    assert min(values) - 1e-9 <= hodges_lehmann(values) <= max(values) + 1e-9


@given(
    st.lists(st.floats(0, 1e3, allow_nan=False), min_size=1, max_size=10),
    st.floats(-1e3, 1e3, allow_nan=False),
)
def test_hodges_lehmann_shifts_with_the_data(values: list[float], shift: float) -> None:
    shifted = hodges_lehmann([v + shift for v in values])
    assert shifted == pytest.approx(hodges_lehmann(values) + shift, abs=1e-6)


@pytest.mark.parametrize("bad", [[], [float("nan")], [1.0, float("inf")]])
def test_hodges_lehmann_rejects_bad_input(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        hodges_lehmann(bad)


# --------------------------------------------------------------------------- task format


def test_shipped_task_loads_round_trips_and_has_enamel_shape() -> None:
    task = load_task(example_task_path())
    assert task.name == "count_primes"
    assert [len(lv.tests) for lv in task.levels] == [8, 4, 4, 4]
    assert task.weights == (0.0, 3.0, 3.0, 4.0)
    assert CodeTask.from_dict(task.to_dict()) == task
    assert CodeTask.from_dict(json.loads(json.dumps(task.to_dict()))) == task


@pytest.mark.parametrize(
    "path",
    sorted((Path(example_task_path()).parent).glob("*.json")),
    ids=lambda p: p.stem,
)
def test_every_shipped_task_has_enamel_levels_and_a_passing_reference(path: Path) -> None:
    task = load_task(path)
    assert task.name == path.stem
    assert [len(lv.tests) for lv in task.levels] == [8, 4, 4, 4]
    assert task.weights == (0.0, 3.0, 3.0, 4.0)
    for level in task.levels:
        result = run_candidate(
            task.reference_solution,
            task.entry_point,
            level.tests,
            cpu_seconds=30,
            memory_mb=task.memory_mb,
            wall_seconds=30,
        )
        assert result.outcome is Outcome.OK, result.detail


def test_task_file_errors_name_the_problem(tmp_path: Path) -> None:
    data = load_task(example_task_path()).to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(CodeTaskError, match=r"unknown keys.*surprise"):
        load_task(bad)
    bad.write_text("{not json")
    with pytest.raises(CodeTaskError, match="not valid JSON"):
        load_task(bad)
    with pytest.raises(CodeTaskError, match="cannot read"):
        load_task(tmp_path / "missing.json")
    with pytest.raises(CodeTaskError, match="alpha"):
        CodeTask.from_dict({**data, "alpha": 1.0})
    with pytest.raises(CodeTaskError, match="plain JSON"):
        TestCase((object(),), 1)
    with pytest.raises(CodeTaskError, match="weight > 0"):
        CodeTask("p", "f", (Level((TestCase((1,), 1),), 0.0),), "def f(x): return x")
    with pytest.raises(CodeTaskError, match="censor must be one of"):
        CodeTask.from_dict({**data, "censor": "ref_max"})


def test_the_censoring_rule_defaults_to_enamel_and_round_trips() -> None:
    task = load_task(example_task_path())
    assert task.censor == "enamel" and CENSOR_RULES == ("enamel", "per_level")
    per_level = CodeTask.from_dict({**task.to_dict(), "censor": "per_level"})
    assert per_level.censor == "per_level" and per_level.to_dict()["censor"] == "per_level"
    assert CodeTask.from_dict(json.loads(json.dumps(per_level.to_dict()))) == per_level
    # the rule is part of the task's identity, so cached reference timings keep them apart
    assert per_level.fingerprint != task.fingerprint


def test_enamel_levels_and_comparison_rules() -> None:
    groups = [[TestCase((i,), i)] * n for i, n in enumerate((8, 4, 4, 4))]
    assert tuple(lv.weight for lv in enamel_levels(groups)) == (0.0, 3.0, 3.0, 4.0)
    with pytest.raises(CodeTaskError, match="8, 4, 4, 4"):
        enamel_levels([[TestCase((1,), 1)]] * 4)
    assert TestCase((), [1, [2, 3]]).check([1, [2, 3]])
    assert TestCase((), (1, 2)).check([1, 2])  # tuples travel as JSON lists
    assert not TestCase((), 1).check(True)  # bool is not int here
    assert not TestCase((), 0.3).check(0.1 + 0.2)
    assert TestCase((), 0.3, tolerance=1e-9).check(0.1 + 0.2)
    assert TestCase((), {"a": [1.0]}, tolerance=1e-6).check({"a": [1.0000001]})


# --------------------------------------------------------------------------- the sandbox


def run_harness_in_process(source: str, tests: list[list[Any]]) -> Records:
    """The child harness's job loop, run here (coverage sees it), its records parsed by the
    parent's side of the protocol. Only for trusted snippets: nothing is contained."""
    read_fd, write_fd = os.pipe()
    try:
        harness.emit(write_fd, json.dumps({"kind": "header", "netns": "", "pid": 0}) + "\n")
        harness.run_job({"source": source, "entry_point": "f", "tests": tests}, write_fd)
        os.close(write_fd)
        write_fd = -1
        with os.fdopen(read_fd, "rb") as pipe:
            read_fd = -1
            return Records.parse(pipe.read())
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)


def test_the_harness_reports_return_values_and_stops_at_the_first_exception() -> None:
    ok = run_harness_in_process("def f(x):\n    return [x, {x}] if x == 2 else x * x\n", [[3], [2]])
    assert ok.problem is None and ok.done and ok.header is not None
    assert ok.by_test[0] == {"kind": "result", "i": 0, "value": 9}
    assert ok.by_test[1] == {"kind": "unserializable", "i": 1, "type": "list"}
    failed = run_harness_in_process("def f(x):\n    raise KeyError(x)\n", [[1], [2]])
    assert failed.by_test == {0: {"kind": "error", "i": 0, "error": "KeyError", "message": "1"}}
    assert not failed.done
    for source in ("def f(x) return x\n", "f = 3\n", "g = 3\n"):
        broken = run_harness_in_process(source, [[1]])
        assert list(broken.by_test) == [-1] and broken.by_test[-1]["kind"] == "error"
    bad_job = run_harness_in_process("def f(x):\n    return x\n", "not a list")  # type: ignore[arg-type]
    assert bad_job.by_test[-1]["error"] == "TypeError"


def test_the_harness_error_record_survives_hostile_exceptions() -> None:
    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message for you")

    assert json.loads(harness.error_record(4, Hostile())) == {
        "kind": "error",
        "i": 4,
        "error": "Hostile",
        "message": "",
    }
    assert json.loads(harness.error_record(0, MemoryError("x" * 10)))["message"] == ""
    assert len(json.loads(harness.error_record(0, ValueError("y" * 5000)))["message"]) == 1000


def test_the_harness_uses_the_standard_library_only() -> None:
    """It runs under ``python -I -S`` by path, where this package is not importable."""
    tree = ast.parse(HARNESS_PATH.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported and imported <= set(sys.stdlib_module_names), imported
    assert Path(harness.__file__) == HARNESS_PATH


def test_correct_and_wrong_answers_are_judged_in_the_parent() -> None:
    ok = run("def f(x):\n    return x * x\n")
    assert ok.outcome is Outcome.OK and ok.tests_passed == 2 and ok.cpu_seconds > 0
    wrong = run("def f(x):\n    return 9 if x == 3 else x + x\n")
    assert wrong.outcome is Outcome.WRONG_ANSWER
    assert wrong.failed_test == 1 and wrong.tests_passed == 1
    odd = run("def f(x):\n    return {x}\n")
    assert odd.outcome is Outcome.WRONG_ANSWER and "not JSON" in odd.detail
    broken = run("def f(x) return x\n")
    assert broken.outcome is Outcome.RUNTIME_ERROR and broken.error_type == "SyntaxError"
    boom = run("def f(x):\n    raise ValueError('no')\n")
    assert boom.outcome is Outcome.RUNTIME_ERROR and boom.error_type == "ValueError"
    assert "ValueError: no" in boom.stderr_tail


def test_a_candidate_cannot_forge_the_result_stream() -> None:
    forged_done = run(
        "import os, sys\n"
        "def f(x):\n"
        '    os.write(int(sys.argv[-1]), b\'{"kind":"done"}\\n\')\n'
        "    os._exit(0)\n"
    )
    assert forged_done.outcome is Outcome.RUNTIME_ERROR
    assert "without reporting test 0" in forged_done.detail
    forged_twice = run(
        "import os, sys\n"
        "def f(x):\n"
        '    os.write(int(sys.argv[-1]), b\'{"kind":"result","i":0,"value":9}\\n\')\n'
        "    return x * x\n"
    )
    assert forged_twice.outcome is Outcome.RUNTIME_ERROR and "twice" in forged_twice.detail


def test_an_infinite_loop_is_killed_at_the_wall_limit_with_its_group() -> None:
    started = time.monotonic()
    result = run("def f(x):\n    while True:\n        pass\n", wall_seconds=1.0)
    assert result.outcome is Outcome.TIMEOUT and result.killed
    assert time.monotonic() - started < 6.0
    assert 0.9 <= result.wall_seconds < 3.0
    assert result.group_reaped
    assert not process_exists(result.pid)
    assert not group_exists(result.pid)


def test_a_killed_but_unreaped_process_no_longer_counts_as_alive() -> None:
    """A zombie still answers killpg(pgid, 0) until reaped, but runs nothing: the group is
    gone for containment (grandchildren orphaned to init are reaped on init's time)."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        assert group_alive(child.pid)
        os.killpg(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while group_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not group_alive(child.pid)
        os.killpg(child.pid, 0)  # the zombie is still a member until it is reaped
    finally:
        child.kill()
        child.wait()
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)


STUBBORN_LOOP = (
    "import signal\n"
    "def _raise(signum, frame):\n"
    "    raise KeyboardInterrupt\n"
    "for _sig in (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
    "    signal.signal(_sig, _raise)\n"
    "def f(x):\n"
    "    while True:\n"
    "        try:\n"
    "            while True:\n"
    "                pass\n"
    "        except BaseException:\n"
    "            pass\n"
)


@pytest.mark.parametrize(
    ("cpu_seconds", "wall_seconds", "killed"), [(10.0, 1.0, True), (1.0, 8.0, False)]
)
def test_a_loop_that_swallows_base_exception_is_still_stopped(
    cpu_seconds: float, wall_seconds: float, killed: bool
) -> None:
    # Every catchable way out (the soft CPU limit's SIGXCPU turned into an exception,
    # SIGTERM, SIGINT) is swallowed; SIGKILL from the wall limit or the hard CPU limit is not.
    started = time.monotonic()
    result = run(STUBBORN_LOOP, cpu_seconds=cpu_seconds, wall_seconds=wall_seconds)
    assert result.outcome is Outcome.TIMEOUT and result.killed is killed, result.detail
    assert time.monotonic() - started < 8.0
    assert result.group_reaped and not group_exists(result.pid)


@pytest.mark.parametrize(
    "header", ["", "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"]
)
def test_cpu_rlimit_stops_a_busy_child_before_the_wall_clock(header: str) -> None:
    # The soft limit's SIGXCPU is reported by the harness; a candidate that ignores it is
    # killed by the hard limit a second later.
    source = header + "def f(x):\n    while True:\n        pass\n"
    result = run(source, cpu_seconds=1.0, wall_seconds=8.0)
    assert result.outcome is Outcome.TIMEOUT and not result.killed, result.detail
    assert "CPU-time limit" in result.detail
    assert 0.5 <= result.cpu_seconds < 3.0


def test_a_memory_bomb_hits_the_address_space_limit() -> None:
    bomb = "def f(x):\n    hog = []\n    while True:\n        hog.append(bytearray(1 << 20))\n"
    result = run(bomb, memory_mb=128)
    assert result.outcome is Outcome.MEMORY_ERROR and result.error_type == "MemoryError"
    # ru_maxrss also counts the moment between fork and exec, when the child still maps
    # this (test) process, so it is only a bound on the candidate when the parent is small
    parent_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.max_rss_kb < max(160 * 1024, parent_kb + 16 * 1024)


@pytest.mark.parametrize("spawn", ["fork", "subprocess"])
def test_forked_and_spawned_processes_die_with_the_group(spawn: str) -> None:
    # The helper leaves the process group (setsid) and sleeps forever; the candidate checks
    # it runs, says where (its PID namespace and pid), and returns.
    loop = "import time\nwhile True:\n    time.sleep(0.01)\n"
    if spawn == "fork":
        body = (
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        os.setsid()  # try to leave the process group\n"
            f"        exec({loop!r})\n"
        )
    else:
        body = (
            f"    pid = subprocess.Popen([sys.executable, '-c', {loop!r}],"
            " start_new_session=True).pid\n"
        )
    source = (
        "import json, os, subprocess, sys, time\n"
        "def f(x):\n" + body + "    time.sleep(0.3)\n"
        "    with open(f'/proc/{pid}/stat') as fh:\n"
        "        state = fh.read().rsplit(')', 1)[1].split()[0]\n"
        "    print(json.dumps({'pidns': os.readlink('/proc/self/ns/pid'), 'pid': pid,"
        " 'state': state}))\n"
        "    return x * x\n"
    )
    result = run(source, tests=SQUARE_TESTS[:1])
    assert result.outcome is Outcome.OK, result.detail + result.stderr_tail
    helper = json.loads(result.stdout)
    assert helper["state"] in ("S", "R")  # the helper really ran ...
    assert result.group_reaped and not group_exists(result.pid)
    if helper["pidns"] == os.readlink("/proc/self/ns/pid"):  # uncontained: a host pid
        assert not process_exists(helper["pid"])
    else:  # ... and nothing of its PID namespace is left
        assert not namespace_alive(helper["pidns"])


def test_a_fork_bomb_is_capped_and_dies_with_the_group() -> None:
    # RLIMIT_NPROC binds only an unprivileged child (the kernel exempts root), so the bomb
    # runs as uid 65534 with an interpreter that uid can read; as root without one, only
    # the wall-clock kill of the PID namespace would stop it, which is not safe to try on a
    # shared machine.
    python = unprivileged_interpreter()
    if python is None:
        pytest.skip("needs root and an interpreter uid 65534 can run (RLIMIT_NPROC)")
    bomb = (
        "import os\n"
        "def f(x):\n"
        "    while True:\n"
        "        try:\n"
        "            if os.fork() == 0:\n"
        "                os.write(1, b'%d\\n' % os.getpid())  # each new process, once\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    started = time.monotonic()
    result = run(bomb, wall_seconds=1.5, memory_mb=128, max_processes=16, python=python)
    assert result.outcome is Outcome.TIMEOUT and result.killed, result.detail
    assert time.monotonic() - started < 8.0
    forked = set(result.stdout.split())
    assert 1 <= len(forked) < 16  # it forked, and no more than the limit allowed
    assert result.group_reaped and not group_exists(result.pid)


def test_the_child_cannot_see_the_parents_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "inferbudget-secret-4c1d"
    monkeypatch.setenv("INFERBUDGET_TEST_SECRET", secret)
    assert os.environ["INFERBUDGET_TEST_SECRET"] == secret
    spy = (
        "import os\n"
        "def f(x):\n"
        "    print(sorted(os.environ.items()))\n"
        "    for entry in os.listdir('/proc'):  # every environ it can read\n"
        "        try:\n"
        "            with open(f'/proc/{entry}/environ', 'rb') as fh:\n"
        "                print(fh.read().decode('latin-1'))\n"
        "        except OSError:\n"
        "            pass\n"
    )
    result = run(spy, tests=(TestCase((0,), None),))
    assert result.outcome is Outcome.OK
    assert result.stdout.startswith("[")  # it did print what it could see
    assert secret not in result.stdout and "INFERBUDGET_TEST_SECRET" not in result.stdout


def test_files_land_in_a_temporary_directory_that_is_removed(tmp_path: Path) -> None:
    writer = (
        "import os\n"
        "def f(x):\n"
        "    with open('scratch.txt', 'w') as fh:\n"
        "        fh.write('data')\n"
        "    print(os.getcwd())\n"
        "    return sorted(os.listdir('.'))\n"
    )
    result = run(writer, tests=(TestCase((0,), ["scratch.txt"]),))
    assert result.outcome is Outcome.OK  # input.json was already gone
    workdir = Path(result.stdout.strip())
    assert not (workdir / "scratch.txt").exists()  # not on the host, not anymore
    if result.containment is Containment.NONE:
        assert workdir.name.startswith("inferbudget-code-") and not workdir.exists()
    else:  # the sandbox's private tmpfs, gone with it
        assert str(workdir) == WORKDIR
    big = "def f(x):\n    open('big.bin', 'wb').write(b'x' * (2 << 20))\n"
    capped = run(big, tests=(TestCase((0,), None),), file_size_mb=1)
    assert capped.outcome is Outcome.RUNTIME_ERROR and capped.error_type == "OSError"


def test_writing_outside_the_working_directory_fails_the_sample(tmp_path: Path) -> None:
    # Contained, the host's folder is not there (bubblewrap), or hidden under a private /tmp
    # and read-only besides (unshare); either way nothing reaches it.
    tmp_path.chmod(0o755)
    target = tmp_path / "escaped.txt"
    writer = (
        "def f(x):\n"
        f"    with open({str(target)!r}, 'w') as fh:\n"
        "        fh.write('owned')\n"
        "    return x * x\n"
    )
    result = run(writer)
    assert result.containment is not Containment.NONE
    assert result.outcome is Outcome.RUNTIME_ERROR, result.detail
    assert result.error_type in ("PermissionError", "FileNotFoundError", "OSError")
    assert not target.exists()
    # The same code run uncontained does write: the target is writable.
    control = run(writer, sandbox="none")
    assert control.outcome is Outcome.OK and target.read_text() == "owned"
    assert control.containment is Containment.NONE


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_printing_gigabytes_is_capped_and_stopped(stream: str) -> None:
    printer = (
        "import os\n"
        "def f(x):\n"
        "    chunk = b'x' * (1 << 20)\n"
        "    while True:  # a gigabyte a second, as fast as the pipe drains\n"
        f"        os.write({1 if stream == 'stdout' else 2}, chunk)\n"
    )
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run(printer, wall_seconds=2.0, output_bytes=64 * 1024)
    assert result.outcome is Outcome.TIMEOUT and result.killed, result.detail
    kept = result.stdout if stream == "stdout" else result.stderr_tail
    assert len(kept.encode()) == 64 * 1024 and set(kept) == {"x"}  # capped, not empty
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb
    assert grown_kb < 64 * 1024  # the parent did not keep what was printed
    assert result.group_reaped


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


CONNECT = (
    "import socket\n"
    "def f(port):\n"
    "    try:\n"
    "        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
    "    except OSError as exc:\n"
    "        return 'blocked: %s' % exc\n"
    "    return 'connected'\n"
)


def test_no_network_when_the_namespace_is_achieved(loopback_listener: int) -> None:
    if not probe_isolation().network:
        pytest.skip(f"no network namespace here: {probe_isolation().note}")
    result = run(CONNECT, tests=(TestCase((loopback_listener,), "connected"),))
    assert result.network_isolated
    assert result.outcome is Outcome.WRONG_ANSWER  # it could not connect
    # The same code without the namespace does connect: the listener is real.
    control = run(CONNECT, tests=(TestCase((loopback_listener,), "connected"),), isolate=False)
    assert control.outcome is Outcome.OK and not control.network_isolated


def test_patching_the_childs_clocks_does_not_change_its_measured_cpu_time() -> None:
    burn = "    n = 0\n    for i in range(3_000_000):\n        n += i\n    return x * x\n"
    honest = run("def f(x):\n" + burn, tests=SQUARE_TESTS[:1])
    cheat = run(
        "import os, time\n"
        "for name in ('perf_counter', 'process_time', 'monotonic', 'time', 'thread_time'):\n"
        "    setattr(time, name, lambda: 0.0)\n"
        "    setattr(time, name + '_ns', lambda: 0)\n"
        "os.times = lambda: os.times_result((0, 0, 0, 0, 0))\n"
        "def f(x):\n" + burn,
        tests=SQUARE_TESTS[:1],
    )
    assert honest.outcome is cheat.outcome is Outcome.OK
    assert cheat.cpu_seconds > 0.05
    assert cheat.cpu_seconds == pytest.approx(honest.cpu_seconds, rel=0.5)


def test_root_drops_to_an_unprivileged_uid_with_a_system_interpreter(tmp_path: Path) -> None:
    system_python = shutil.which("python3", path="/usr/bin")
    if os.geteuid() != 0 or system_python is None:
        pytest.skip("needs root and /usr/bin/python3")
    iso = probe_isolation(system_python)
    if iso.uid is None:
        pytest.skip(f"privilege drop unavailable: {iso.note}")
    tmp_path.chmod(0o755)  # root-owned, not writable by others
    target = tmp_path / "owned.txt"
    probe = (
        "import os\n"
        "def f(path):\n"
        "    try:\n"
        "        open(path, 'w').close()\n"
        "    except OSError:  # refused, or not even there\n"
        "        return [os.getuid(), 'denied']\n"
        "    return [os.getuid(), 'written']\n"
    )
    result = run(
        probe, tests=(TestCase((str(target),), [iso.uid, "denied"]),), python=system_python
    )
    assert result.outcome is Outcome.OK, result.detail
    assert not target.exists()


# --------------------------------------------------------------------------- scoring


@pytest.fixture(scope="module")
def primes() -> CodeTask:
    return load_task(example_task_path())


@pytest.fixture(scope="module")
def primes_cache() -> ReferenceCache:
    return ReferenceCache()


QUADRATIC = (
    "def count_primes(n):\n"
    "    return sum(1 for m in range(2, n) if all(m % d for d in range(2, m)))\n"
)


def test_reference_speed_scores_about_one_and_quadratic_scores_lower(
    primes: CodeTask, primes_cache: ReferenceCache
) -> None:
    same = score_sample(primes, primes.reference_solution, cache=primes_cache)
    assert same.outcome is Outcome.OK and same.passed
    assert 0.5 < same.score < 1.5, same
    assert all(t is not None and t > 0 for t in same.level_cpu_seconds[1:])
    slow = score_sample(primes, QUADRATIC, cache=primes_cache)
    assert slow.passed  # correct: level 0 is fine ...
    assert slow.outcome is Outcome.TIMEOUT and slow.failed_level == 1  # ... but it cannot scale
    assert slow.score < same.score and slow.score == 0.0
    assert len(primes_cache) == 1  # the reference was timed once


def test_a_slower_correct_solution_scores_between_zero_and_the_reference(
    primes: CodeTask, primes_cache: ReferenceCache
) -> None:
    # The expert's sieve, run once more on half the input first: correct, and about 1.5
    # times the reference's work, so ENAMEL's score should land near (2 - 1.5) / (2 - 1).
    slower = primes.reference_solution + (
        "\n_fast = count_primes\n\ndef count_primes(n):\n    _fast(n // 2)\n    return _fast(n)\n"
    )
    same = score_sample(primes, primes.reference_solution, cache=primes_cache)
    slow = score_sample(primes, slower, cache=primes_cache)
    assert slow.outcome is Outcome.OK and slow.passed, slow.detail
    assert 0.0 < slow.score < same.score, (slow, same)
    for mine, theirs in zip(slow.level_cpu_seconds[1:], same.level_cpu_seconds[1:], strict=True):
        assert mine is not None and theirs is not None and mine > theirs


class ReplayedTimings:
    """An executor that replays recorded CPU times instead of running code, so the scoring
    arithmetic can be checked against figures computed by hand (the sandbox's own timing
    is tested above with real children)."""

    def __init__(self, task: CodeTask, cpu: dict[tuple[str, int], list[float]]) -> None:
        self.task = task
        self.cpu = {key: list(values) for key, values in cpu.items()}
        self.walls: dict[tuple[str, int], float] = {}

    def __call__(
        self,
        source: str,
        entry_point: str,
        tests: Sequence[TestCase],
        *,
        cpu_seconds: float,
        memory_mb: int,
        wall_seconds: float,
    ) -> ExecutionResult:
        level = next(j for j, lv in enumerate(self.task.levels) if lv.tests == tuple(tests))
        who = (
            "reference"
            if source == self.task.reference_solution
            else "baseline"
            if "return None" in source
            else "candidate"
        )
        self.walls[(who, level)] = wall_seconds
        seconds = self.cpu[(who, level)].pop(0)
        timed_out = seconds == math.inf
        return ExecutionResult(
            outcome=Outcome.TIMEOUT if timed_out else Outcome.OK,
            tests_total=len(tests),
            tests_passed=0 if timed_out else len(tests),
            failed_test=0 if timed_out else None,
            cpu_seconds=wall_seconds if timed_out else seconds,
            wall_seconds=0.05,
            max_rss_kb=0,
            exit_code=-9 if timed_out else 0,
            killed=timed_out,
            error_type=None,
            detail="replayed",
            stdout="",
            stderr_tail="",
            network_isolated=True,
            isolation_note="",
            pid=0,
            group_reaped=True,
        )


HAND_TASK = CodeTask(
    prompt="",
    entry_point="f",
    levels=(
        Level((TestCase((1,), 1),), 0.0),
        Level((TestCase((2,), 2),), 1.0),
        Level((TestCase((3,), 3),), 3.0),
    ),
    reference_solution="def f(x):\n    return x\n",
    alpha=2.0,
    repeats=3,
)


@pytest.mark.parametrize(
    ("censor", "level_2", "want_levels", "want_score", "outcome"),
    [
        # ENAMEL: T = alpha * max timed t_ref = 2 * 0.40 = 0.8 on every level.
        # Level 1: t = HL(0.16, 0.17, 0.18) - 0.02 = 0.15: e = (0.8 - 0.15) / (0.8 - 0.1).
        # Level 2: t = HL(0.30, 0.32, 0.34) - 0.02 = 0.30: e = (0.8 - 0.3) / (0.8 - 0.4).
        (
            "enamel",
            [0.30, 0.32, 0.34],
            (0.0, 0.65 / 0.7, 1.25),
            (1 * 0.65 / 0.7 + 3 * 1.25) / 4,
            Outcome.OK,
        ),
        # a timeout at level 2 zeroes it and keeps level 1's score
        ("enamel", [math.inf], (0.0, 0.65 / 0.7, 0.0), (0.65 / 0.7) / 4, Outcome.TIMEOUT),
        # per level: level 1's T = 0.2, e = (0.2 - 0.15) / (0.2 - 0.1) = 0.5; level 2's T = 0.8
        ("per_level", [0.30, 0.32, 0.34], (0.0, 0.5, 1.25), (1 * 0.5 + 3 * 1.25) / 4, Outcome.OK),
        ("per_level", [math.inf], (0.0, 0.5, 0.0), (1 * 0.5 + 3 * 0.0) / 4, Outcome.TIMEOUT),
    ],
)
def test_scores_agree_with_hand_computed_figures(
    censor: CensorRule,
    level_2: list[float],
    want_levels: tuple[float, ...],
    want_score: float,
    outcome: Outcome,
) -> None:
    task = dataclasses.replace(HAND_TASK, censor=censor)
    replay = ReplayedTimings(
        task,
        {
            ("baseline", 0): [0.02],
            ("reference", 0): [0.021],
            ("baseline", 1): [0.02] * 3,
            ("reference", 1): [0.12] * 3,  # t_ref = 0.10
            ("baseline", 2): [0.02] * 3,
            ("reference", 2): [0.41, 0.42, 0.43],  # HL 0.42: t_ref = 0.40
            ("candidate", 0): [0.5],  # untimed: only correctness counts
            ("candidate", 1): [0.16, 0.17, 0.18],
            ("candidate", 2): level_2,
        },
    )
    result = score_sample(task, "def f(x):\n    return x  # candidate\n", replay)
    assert result.outcome is outcome and result.passed and result.censor == censor
    assert result.reference_cpu_seconds == pytest.approx((0.001, 0.10, 0.40))
    assert result.level_scores == pytest.approx(want_levels)
    assert result.score == pytest.approx(want_score)
    # wall limit = 0.5 s start-up + 2 * baseline wall (0.05)
    #              + timeout_factor * max(T, alpha * t_ref)
    if censor == "enamel":
        assert result.censoring_seconds == pytest.approx((0.8, 0.8, 0.8))
        assert replay.walls[("candidate", 1)] == pytest.approx(0.5 + 0.1 + 2 * 0.8)
        assert replay.walls[("candidate", 2)] == pytest.approx(0.5 + 0.1 + 2 * 0.8)
    else:
        assert result.censoring_seconds == pytest.approx((0.002, 0.2, 0.8))
        assert replay.walls[("candidate", 1)] == pytest.approx(0.5 + 0.1 + 2 * 2 * 0.10)
        assert replay.walls[("candidate", 2)] == pytest.approx(0.5 + 0.1 + 2 * 2 * 0.40)


# The pinned example (see docs/code-efficiency.md): weights 0/3/3/4, alpha 2, reference
# 0.01/0.01/0.05/0.10 s, candidate 0.02/0.02/0.05/0.10 s. ENAMEL's T = 2 * 0.10 = 0.2 on every
# level: level 1 scores (0.2 - 0.02) / (0.2 - 0.01) = 18/19, levels 2 and 3 score 1, the sample
# (3 * 18/19 + 3 + 4) / 10 = 0.984. Per level, level 1's T = 0.02: it scores 0, the sample 0.7.
PINNED_WEIGHTS = (0.0, 3.0, 3.0, 4.0)
PINNED_REFERENCE = (0.01, 0.01, 0.05, 0.10)
PINNED_CANDIDATE = (0.02, 0.02, 0.05, 0.10)


@pytest.mark.parametrize(
    ("censor", "want_score", "want_levels"),
    [("enamel", 0.984, (0.0, 18 / 19, 1.0, 1.0)), ("per_level", 0.700, (0.0, 0.0, 1.0, 1.0))],
)
def test_the_pinned_example_scores_as_enamel_and_per_level(
    censor: CensorRule, want_score: float, want_levels: tuple[float, ...]
) -> None:
    score, levels = score_levels(
        PINNED_CANDIDATE, PINNED_REFERENCE, PINNED_WEIGHTS, alpha=2.0, censor=censor
    )
    assert round(score, 3) == want_score
    assert levels == pytest.approx(want_levels)
    # the same figures come out of score_sample, from replayed CPU times
    task = CodeTask(
        prompt="",
        entry_point="f",
        levels=tuple(Level((TestCase((j,), j),), w) for j, w in enumerate(PINNED_WEIGHTS)),
        reference_solution="def f(x):\n    return x\n",
        alpha=2.0,
        repeats=1,
        censor=censor,
    )
    replay = ReplayedTimings(
        task,
        {
            **{("baseline", j): [0.02] for j in range(4)},
            **{("reference", j): [0.02 + t] for j, t in enumerate(PINNED_REFERENCE)},
            **{("candidate", j): [0.02 + t] for j, t in enumerate(PINNED_CANDIDATE)},
        },
    )
    result = score_sample(task, "def f(x):\n    return x  # candidate\n", replay)
    assert result.outcome is Outcome.OK and round(result.score, 3) == want_score
    assert result.level_scores == pytest.approx(want_levels)


def test_censoring_limits_follow_the_rule() -> None:
    assert censoring_limits(PINNED_REFERENCE, PINNED_WEIGHTS) == pytest.approx((0.2,) * 4)
    assert censoring_limits(PINNED_REFERENCE, PINNED_WEIGHTS, 3.0, "per_level") == pytest.approx(
        (0.03, 0.03, 0.15, 0.30)
    )
    # ENAMEL's ref_max is over the timed levels only: a slow weight-0 level does not count
    assert censoring_limits((5.0, 0.1, 0.2), (0.0, 1.0, 1.0)) == pytest.approx((0.4,) * 3)
    # at the reference's time a level scores 1 under either rule, 0 at or beyond T
    for censor in CENSOR_RULES:
        _, levels = score_levels(PINNED_REFERENCE, PINNED_REFERENCE, PINNED_WEIGHTS, 2.0, censor)
        assert levels == pytest.approx((0.0, 1.0, 1.0, 1.0))
    _, late = score_levels((0.0, 0.2, 0.5, None), PINNED_REFERENCE, PINNED_WEIGHTS)
    assert late == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (((1.0,), (1.0,), (1.0,), 2.0, "sideways"), "censor must be one of"),
        (((1.0,), (1.0, 1.0), (1.0, 1.0)), "differ in length"),
        (((1.0, 1.0), (1.0, 1.0), (0.0, 0.0)), "weights"),
        (((1.0,), (0.0,), (1.0,)), "reference times"),
        (((1.0,), (1.0,), (1.0,), 1.0), "alpha"),
        (((-1.0,), (1.0,), (1.0,)), "a level's time"),
        (((math.nan,), (1.0,), (1.0,)), "a level's time"),
    ],
)
def test_score_levels_rejects_bad_input(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        score_levels(*args)


def test_a_wrong_answer_scores_zero(primes: CodeTask, primes_cache: ReferenceCache) -> None:
    off_by_one = primes.reference_solution.replace("+ 1  # the odd", "+ 2  # the odd")
    result = score_sample(primes, off_by_one, cache=primes_cache)
    assert result.outcome is Outcome.WRONG_ANSWER and not result.passed
    assert result.score == 0.0 and result.level_scores == (0.0,) * 4


@pytest.mark.parametrize(
    ("failure", "outcome", "keeps_earlier"),
    [
        ("bytearray(1 << 40)", Outcome.MEMORY_ERROR, True),
        ("raise OverflowError('too big')", Outcome.RUNTIME_ERROR, True),
        ("raise ValueError('too big')", Outcome.RUNTIME_ERROR, False),
        ("while True: pass", Outcome.TIMEOUT, True),
    ],
)
def test_a_resource_failure_at_a_late_level_zeroes_only_that_and_later_levels(
    primes: CodeTask,
    primes_cache: ReferenceCache,
    failure: str,
    outcome: Outcome,
    keeps_earlier: bool,
) -> None:
    source = primes.reference_solution.replace(
        "    if n < 3:\n", f"    if n >= 9_000_000:\n        {failure}\n    if n < 3:\n", 1
    )
    result = score_sample(primes, source, cache=primes_cache)
    assert result.outcome is outcome and result.failed_level == 2
    assert result.passed is keeps_earlier
    if keeps_earlier:
        assert result.level_scores[2:] == (0.0, 0.0)
        assert result.level_scores[1] > 0.2
        assert result.score == pytest.approx(3 * result.level_scores[1] / 10)
    else:
        assert result.score == 0.0


def test_a_timeout_at_level_zero_fails_the_sample(primes: CodeTask) -> None:
    tiny = CodeTask(
        prompt="",
        entry_point="f",
        levels=(
            Level((TestCase((1,), 1),), 0.0),
            Level((TestCase((2,), 2),), 1.0),
        ),
        reference_solution="def f(x):\n    return x\n",
        repeats=1,
    )
    result = score_sample(
        tiny, "def f(x):\n    while True:\n        pass\n", cache=ReferenceCache()
    )
    assert result.outcome is Outcome.TIMEOUT and not result.passed and result.score == 0.0


def test_a_broken_reference_is_reported_as_such() -> None:
    task = CodeTask(
        prompt="",
        entry_point="f",
        levels=(Level((TestCase((2,), 4),), 1.0),),
        reference_solution="def f(x):\n    return x + 1\n",
        repeats=1,
    )
    with pytest.raises(ReferenceSolutionError, match="fails level 0"):
        score_sample(task, "def f(x):\n    return x * 2\n", cache=ReferenceCache())


def test_results_serialise_to_builtin_types(primes: CodeTask, primes_cache: ReferenceCache) -> None:
    result = score_sample(primes, "def count_primes(n):\n    return -1\n", cache=primes_cache)
    assert json.loads(json.dumps(result.to_dict()))["outcome"] == "wrong_answer"
    executed = run("def f(x):\n    return x * x\n")
    assert json.loads(json.dumps(executed.to_dict()))["outcome"] == "ok"
