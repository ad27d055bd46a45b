"""Saved runs under faults: broken files, writers racing, a full disk, a killed session.

The run saved in every test is a real one: the model answered its requests here. The
faults are real too where the machine allows it (separate processes writing at once, a
file-size limit that makes the kernel refuse the write, a SIGKILL mid-save); only the
full disk is simulated, by an fsync that fails with ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_inferbudget.cli import main
from pytest_inferbudget.compare import hardware_key
from pytest_inferbudget.engines import Engine
from pytest_inferbudget.errors import ReportError
from pytest_inferbudget.records import Request, RunRecord, TestRecord, Trace
from pytest_inferbudget.report.outputs import finalize
from pytest_inferbudget.storage import find_run, load_run, save_run, saved_runs
from tests.conftest import ReuseEngine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real_run(smollm_engine: Engine) -> dict[str, Any]:
    """A run of three real requests, as the plugin would save it."""
    responses = smollm_engine.generate(
        [Request(p, max_new_tokens=6) for p in ("Say hi.", "Say yes.", "Name a color.")]
    )
    test = TestRecord("test_real.py::test_answers", [Trace((r,)) for r in responses])
    test.outcome = "passed"
    run = RunRecord(
        uuid.uuid4().hex,
        datetime.now(UTC).isoformat(timespec="seconds"),
        engine={"spec": smollm_engine.spec, **smollm_engine.describe()},
        tests=[test],
    )
    return finalize(run)


def another(run: dict[str, Any]) -> dict[str, Any]:
    """The same run under a new id, as a later session would save it."""
    return {**run, "run_id": uuid.uuid4().hex}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- broken files


BREAKAGES: dict[str, Callable[[str], str]] = {
    "corrupt": lambda text: text.replace('"tests"', '"tests" ]]', 1),
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "newer-schema": lambda text: text.replace('"schema_version": 1', '"schema_version": 2', 1),
    "not-a-run": lambda text: json.dumps([1, 2, 3]),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_latest_run_is_an_error_naming_it_never_skipped(
    tmp_path: Path,
    real_run: dict[str, Any],
    breakage: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = hardware_key(real_run)
    good = save_run(tmp_path, key, real_run, "good")
    bad = save_run(tmp_path, key, another(real_run), "later")
    bad.write_text(BREAKAGES[breakage](bad.read_text()))

    latest = find_run(tmp_path, key, None)
    assert latest == bad, "the broken latest run must be chosen, not an older one"
    with pytest.raises(ReportError) as raised:
        load_run(latest)
    assert str(bad) in str(raised.value)
    if breakage == "newer-schema":
        assert "schema_version 2" in str(raised.value)
        assert "upgrade pytest-inferbudget" in str(raised.value)
    assert load_run(good)["run_id"] == real_run["run_id"]

    assert main(["list", "--storage", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert str(bad) in err
    assert f"{bad.name}  unreadable" in out
    assert "good" in out


def test_a_broken_baseline_is_refused_before_any_test_runs(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=8)
        def test_one(infer):
            infer("Say hi.", max_new_tokens=4)
        """
    )
    pytester.runpytest("--inferbudget-save=base", plugins=[reuse_engine]).assert_outcomes(passed=1)
    [baseline] = (pytester.path / ".inferbudget").glob("*/*.json")
    baseline.write_bytes(baseline.read_bytes()[:-40])
    result = pytester.runpytest("--inferbudget-compare=base", plugins=[reuse_engine])
    result.assert_outcomes()  # refused at start-up, before any test ran
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*inferbudget: cannot compare: {baseline} is not a*"])


# --------------------------------------------------------------------------- concurrency

WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pytest_inferbudget.storage import save_run

    root, key, run_file, start, writer, count = sys.argv[1:]
    run = json.loads(Path(run_file).read_text())
    while not Path(start).exists():
        time.sleep(0.001)
    for i in range(int(count)):
        # every writer saves the same run id, second and name: each save must still
        # land in a file of its own
        save_run(Path(root), key, {**run, "writer": [int(writer), i]}, "same")
    """
)

READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pytest_inferbudget.storage import load_run, saved_runs

    root, key, start, stop = sys.argv[1:]
    while not Path(start).exists():
        time.sleep(0.001)
    loaded = 0
    while not Path(stop).exists():
        for path in saved_runs(Path(root), key):
            load_run(path)  # raises on a half-written file
            loaded += 1
    print(loaded)
    """
)


def test_concurrent_writers_lose_nothing_and_readers_never_see_half_a_run(
    tmp_path: Path, real_run: dict[str, Any]
) -> None:
    writers, saves = 4, 15
    key = hardware_key(real_run)
    storage = tmp_path / "storage"
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(real_run))
    start, stop = tmp_path / "start", tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, *map(str, (storage, key, run_file, start, w, saves))],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(storage), key, str(start), str(stop)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    start.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    stop.touch()
    loaded, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    assert int(loaded) > 0, "the reader must have read while the writers wrote"

    runs = saved_runs(storage, key)
    written = sorted(tuple(load_run(p)["writer"]) for p in runs)
    assert written == [(w, i) for w in range(writers) for i in range(saves)]
    assert leftovers(storage / key) == []
    assert find_run(storage, key, "same") in runs


# --------------------------------------------------------------------------- full disk

FILL_UP = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from pytest_inferbudget.errors import ReportError
    from pytest_inferbudget.storage import save_run

    root, key, run_file = sys.argv[1:]
    run = json.loads(Path(run_file).read_text())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
    limit = len(json.dumps(run)) // 2
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        save_run(Path(root), key, run, "second")
    except ReportError as exc:
        print(exc)
        sys.exit(3)
    """
)


def test_a_write_the_kernel_refuses_keeps_the_earlier_baseline(
    tmp_path: Path, real_run: dict[str, Any]
) -> None:
    key = hardware_key(real_run)
    baseline = save_run(tmp_path, key, real_run, "base")
    before = baseline.read_bytes()
    run_file = tmp_path / "candidate.json"
    run_file.write_text(json.dumps(another(real_run)))
    done = subprocess.run(
        [sys.executable, "-c", FILL_UP, str(tmp_path), key, str(run_file)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    message = done.stdout.strip()
    assert message.startswith(f"cannot write {tmp_path / key}/")
    assert message.split(": ", 1)[0].endswith("_second.json")
    assert f"[Errno {errno.EFBIG}]" in message
    assert baseline.read_bytes() == before
    assert saved_runs(tmp_path, key) == [baseline]
    assert leftovers(tmp_path / key) == []
    assert find_run(tmp_path, key, None) == baseline


def test_a_full_disk_fails_the_run_names_the_file_and_keeps_the_baseline(
    pytester: pytest.Pytester, reuse_engine: ReuseEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.budget(max_tokens=8)
        def test_one(infer):
            infer("Say yes.", max_new_tokens=4)
        """
    )
    pytester.runpytest("--inferbudget-save=base", plugins=[reuse_engine]).assert_outcomes(passed=1)
    [baseline] = (pytester.path / ".inferbudget").glob("*/*.json")
    before = baseline.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    result = pytester.runpytest(
        "--inferbudget-save=second", "--inferbudget-json=run.json", plugins=[reuse_engine]
    )
    monkeypatch.undo()
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            f"inferbudget: ERROR cannot write {pytester.path / 'run.json'}: "
            "[[]Errno 28[]] No space left on device",
            f"inferbudget: ERROR cannot write {baseline.parent}/*_second.json: "
            "[[]Errno 28[]] No space left on device",
        ]
    )
    assert baseline.read_bytes() == before
    assert sorted(baseline.parent.iterdir()) == [baseline]
    assert not (pytester.path / "run.json").exists()


# --------------------------------------------------------------------------- killed session

KILLED = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    from pytest_inferbudget.storage import save_run

    root, key, run_file = sys.argv[1:]
    run = json.loads(Path(run_file).read_text())
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed mid-save
    save_run(Path(root), key, run, "killed")
    """
)


def test_a_session_killed_while_saving_leaves_earlier_runs_as_they_were(
    tmp_path: Path, real_run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    key = hardware_key(real_run)
    baseline = save_run(tmp_path, key, real_run, "base")
    before = baseline.read_bytes()
    run_file = tmp_path / "candidate.json"
    run_file.write_text(json.dumps(another(real_run)))
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path), key, str(run_file)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert done.returncode == -9
    [temporary] = leftovers(tmp_path / key)
    assert temporary.startswith(".") and "_killed.json." in temporary
    assert baseline.read_bytes() == before
    assert saved_runs(tmp_path, key) == [baseline]
    assert find_run(tmp_path, key, None) == baseline
    assert main(["list", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "base" in out and "killed" not in out


# --------------------------------------------------------------------------- names


def test_a_taken_name_gets_a_suffix_and_a_name_means_its_latest_run(
    tmp_path: Path, real_run: dict[str, Any]
) -> None:
    key = hardware_key(real_run)
    first = save_run(tmp_path, key, real_run, "main")
    later = {**another(real_run), "started_at": "2999-01-01T00:00:00+00:00"}
    second = save_run(tmp_path, key, later, "main")
    again = save_run(tmp_path, key, later, "main")  # the same run saved twice
    assert again.name == second.name.replace("_main.json", "_main~2.json")
    assert load_run(second) == load_run(again)
    assert saved_runs(tmp_path, key) == [first, second, again]
    mask = os.umask(0)
    os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in (first, second, again)} == {0o666 & ~mask}
    assert find_run(tmp_path, key, "main") == again
    assert find_run(tmp_path, key, real_run["run_id"][:12]) == first
    with pytest.raises(ReportError, match="matches several saved runs"):
        find_run(tmp_path, key, later["run_id"][:6])
    with pytest.raises(ReportError, match="matches no saved run"):
        find_run(tmp_path, key, "nightly")
