"""Model-written code is contained by default, even as root: each escape attempt of issue 15
run the way ``infer.score_code`` runs candidates (``sandbox="auto"``: bubblewrap here and in
CI), and again through the ``unshare`` fallback, with real child processes and real files.

The bubblewrap-only checks skip, saying why, where bubblewrap does not work; the refusal
and the ``none`` opt-out are checked by hiding the tools from the probe.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import pytest_inferbudget
from pytest_inferbudget.code import (
    CodeTask,
    Containment,
    ExecutionResult,
    Level,
    Outcome,
    ReferenceCache,
    SandboxChoice,
    Sandboxed,
    SandboxError,
    TestCase,
    probe_isolation,
    run_candidate,
    score_sample,
)
from pytest_inferbudget.code.launch import UNPRIVILEGED_UID, WORKDIR, Recipe, interpreter_layout
from pytest_inferbudget.code.sandbox import HARNESS_PATH
from pytest_inferbudget.code.supervision import namespace_alive
from pytest_inferbudget.config import SANDBOX_CHOICES
from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.records import EngineInfo, Generation, Request, Response

ONE = (TestCase((0,), None),)
"""One call whose answer is not checked: these candidates report through stdout."""


def run(source: str, sandbox: str, **options: Any) -> ExecutionResult:
    options.setdefault("cpu_seconds", 10.0)
    options.setdefault("wall_seconds", 10.0)
    options.setdefault("memory_mb", 256)
    return run_candidate(source, "f", ONE, sandbox=sandbox, **options)


def report(result: ExecutionResult) -> Any:
    """What the candidate printed as its last line of JSON."""
    assert result.outcome in (Outcome.OK, Outcome.WRONG_ANSWER), result.detail + result.stderr_tail
    return json.loads(result.stdout.strip().splitlines()[-1])


def bwrap_or_skip() -> None:
    iso = probe_isolation(None, "bwrap")
    if iso.containment is not Containment.BWRAP:
        pytest.skip(f"bubblewrap does not work here (CI installs it): {iso.note}")


@pytest.fixture(params=["auto", "unshare"])
def sandbox(request: pytest.FixtureRequest) -> str:
    """``auto`` as ``infer.score_code`` runs by default, and the forced ``unshare`` fallback."""
    choice = str(request.param)
    if choice == "unshare":
        iso = probe_isolation(None, "unshare")
        if iso.containment is not Containment.UNSHARE:
            pytest.skip(f"the unshare recipe does not work here: {iso.note}")
    return choice


@pytest.fixture
def token() -> str:
    return f"inferbudget-escape-{uuid.uuid4().hex}"


def host_processes_with(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


# --------------------------------------------------------------------------- the default


def test_the_default_is_bubblewrap_as_uid_65534_where_it_works() -> None:
    bwrap_or_skip()
    iso = probe_isolation()
    assert iso.containment is Containment.BWRAP and iso.network and iso.pid_namespace
    if os.geteuid() == 0:
        # the kernel itself sees uid 65534, not a user namespace's mapped root
        assert iso.recipe in (Recipe.BWRAP_DROPPED, Recipe.BWRAP_SETPRIV)
        assert iso.uid == UNPRIVILEGED_UID
    result = run("import os\ndef f(x):\n    print(os.getuid(), os.getgid())\n", "auto")
    assert result.containment is Containment.BWRAP and result.network_isolated
    assert result.stdout.split() == [str(UNPRIVILEGED_UID)] * 2


def test_the_option_offers_every_sandbox_choice() -> None:
    assert tuple(c.value for c in SandboxChoice) == SANDBOX_CHOICES
    with pytest.raises(ValueError, match="sandbox must be one of auto, bwrap, unshare, none"):
        run("def f(x):\n    return None\n", "docker")
    with pytest.raises(SandboxError, match=r"cannot run /nonexistent/python.*pass python="):
        run("def f(x):\n    return None\n", "auto", python="/nonexistent/python")


# --------------------------------------------------------------------------- escape attempts

WRITE_EVERYWHERE = """
import json, os
def f(x):
    done = {}
    for path in PATHS:
        try:
            with open(path, 'w') as fh:
                fh.write('escaped')
            done[path] = 'written'
        except OSError as exc:
            done[path] = type(exc).__name__
    print(json.dumps(done))
"""


def test_files_written_outside_the_working_directory_do_not_reach_the_host(
    sandbox: str, token: str, tmp_path: Path
) -> None:
    tmp_path.chmod(0o777)  # writable by anyone, so only containment can stop it
    paths = [
        f"/tmp/{token}",
        f"/var/tmp/{token}",
        f"/dev/shm/{token}",
        str(Path.home() / token),
        f"/{token}",
        str(tmp_path / token),
        token,  # the working directory
    ]
    result = run(f"PATHS = {paths!r}\n" + WRITE_EVERYWHERE, sandbox)
    done = report(result)
    assert result.containment is not Containment.NONE
    # the scratch places really took the files, inside the sandbox ...
    assert done[f"/tmp/{token}"] == done[f"/dev/shm/{token}"] == done[token] == "written"
    # ... and none of them is on the host
    for path in paths:
        assert not os.path.lexists(path), path
    assert not (Path(WORKDIR) / token).exists()


def test_nothing_persists_from_one_run_to_the_next(sandbox: str, token: str) -> None:
    places = [f"/dev/shm/{token}", f"/tmp/{token}", f"/var/tmp/{token}", token]
    first = report(run(f"PATHS = {places!r}\n" + WRITE_EVERYWHERE, sandbox))
    assert set(first.values()) == {"written"}  # a cache the next run could read
    reader = (
        "import json, os\n"
        f"def f(x):\n    print(json.dumps([os.path.exists(p) for p in {places!r}]))\n"
    )
    assert report(run(reader, sandbox)) == [False] * len(places)


SECRET = "inferbudget-secret-" + uuid.uuid4().hex


@pytest.fixture
def secrets(tmp_path: Path, token: str) -> Iterator[list[Path]]:
    """0600 files of the invoking user: in a temporary folder, in the home directory, and
    the system's password hashes where they exist."""
    made = [tmp_path / "secret.txt", Path.home() / f".{token}"]
    for path in made:
        path.write_text(SECRET)
        path.chmod(0o600)
    shadow = [Path("/etc/shadow")] if Path("/etc/shadow").exists() else []
    try:
        yield made + shadow
    finally:
        made[1].unlink(missing_ok=True)


def test_the_invoking_users_private_files_cannot_be_read(sandbox: str, secrets: list[Path]) -> None:
    reader = (
        "import json\n"
        "def f(x):\n"
        "    seen = {}\n"
        f"    for path in {[str(p) for p in secrets]!r}:\n"
        "        try:\n"
        "            with open(path) as fh:\n"
        "                seen[path] = fh.read()\n"
        "        except OSError as exc:\n"
        "            seen[path] = type(exc).__name__\n"
        "    print(json.dumps(seen))\n"
    )
    result = run(reader, sandbox)
    seen = report(result)
    assert SECRET not in result.stdout
    for path in secrets:
        assert seen[str(path)] in ("PermissionError", "FileNotFoundError"), path


def test_the_installed_package_cannot_be_changed(sandbox: str, token: str) -> None:
    targets = [Path(pytest_inferbudget.__file__), HARNESS_PATH]
    before = {p: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in targets}
    planted = HARNESS_PATH.with_name(f"{token}.py")
    attacker = (
        "import json, os\n"
        "def f(x):\n"
        "    tried = []\n"
        f"    for path in {[str(p) for p in targets]!r}:\n"
        "        for attempt in (lambda: open(path, 'a').write('# owned\\n'),\n"
        "                        lambda: os.chmod(path, 0o777),\n"
        "                        lambda: os.utime(path, (0, 0)),\n"
        "                        lambda: os.rename(path, path + '.bak')):\n"
        "            try:\n"
        "                attempt()\n"
        "                tried.append('done')\n"
        "            except OSError as exc:\n"
        "                tried.append(type(exc).__name__)\n"
        "    try:\n"
        f"        open({str(planted)!r}, 'w').write('owned = True\\n')\n"
        "        tried.append('planted')\n"
        "    except OSError as exc:\n"
        "        tried.append(type(exc).__name__)\n"
        "    print(json.dumps(tried))\n"
    )
    try:
        tried = report(run(attacker, sandbox))
        assert "done" not in tried and "planted" not in tried, tried
        assert set(tried) <= {"PermissionError", "FileNotFoundError", "OSError"}
        after = {p: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in targets}
        assert after == before
        assert not planted.exists()
    finally:  # had it worked, leave the package as it was
        for path, (data, mode, _) in before.items():
            backup = Path(f"{path}.bak")
            if backup.exists():
                backup.replace(path)
            if path.read_bytes() != data or path.stat().st_mode != mode:
                path.write_bytes(data)
                path.chmod(mode & 0o7777)
        planted.unlink(missing_ok=True)


def test_the_disk_budget_caps_what_a_run_writes_in_all(sandbox: str, token: str) -> None:
    # 40 files of 8 MiB, each under the 16 MiB file-size limit: 320 MiB in all; the
    # candidate keeps them a moment while this process watches the host's disk
    filler = (
        "import json, os, time\n"
        "def f(x):\n"
        "    chunk = b'x' * (8 << 20)\n"
        "    written, error = 0, None\n"
        "    for i in range(40):\n"
        "        try:\n"
        f"            with open('{token}-%d' % i, 'wb') as fh:\n"
        "                fh.write(chunk)\n"
        "            written += 1\n"
        "        except OSError as exc:\n"
        "            error = exc.errno\n"
        "            break\n"
        "    sizes = [os.statvfs(p).f_blocks * os.statvfs(p).f_frsize for p in ('.', '/dev/shm')]\n"
        "    time.sleep(0.5)\n"
        "    print(json.dumps({'written': written, 'errno': error, 'sizes': sizes}))\n"
    )
    used_before = shutil.disk_usage("/").used
    peak = [used_before]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            peak.append(shutil.disk_usage("/").used)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcome = report(run(filler, sandbox, disk_mb=64, file_size_mb=16))
    finally:
        stop.set()
        watcher.join()
    assert outcome["errno"] == errno.ENOSPC  # stopped by the tmpfs cap ...
    assert 1 <= outcome["written"] <= 8  # ... at 64 MiB
    assert outcome["sizes"] == [64 << 20, 64 << 20]
    assert max(peak) - used_before < 32 << 20  # none of it reached the host's disk
    assert not list(Path("/tmp").glob(f"{token}*"))


def test_no_process_outlives_the_run(sandbox: str, token: str) -> None:
    spawner = (
        "import json, os, subprocess, sys\n"
        "def f(x):\n"
        "    sleeper = 'import time\\nwhile True:\\n    time.sleep(1)\\n'\n"
        f"    argv = [sys.executable, '-c', sleeper, {token!r}]\n"
        "    daemon = subprocess.Popen(argv, start_new_session=True,\n"
        "        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "    if os.fork() == 0:  # a double-forked daemon, in a session of its own\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            os.execv(sys.executable, argv)\n"
        "        os._exit(0)\n"
        "    print(json.dumps({'pidns': os.readlink('/proc/self/ns/pid'), 'pid': daemon.pid}))\n"
    )
    result = run(spawner, sandbox)
    where = report(result)
    assert result.group_reaped
    assert where["pidns"] != os.readlink("/proc/self/ns/pid")
    assert not namespace_alive(where["pidns"])
    assert not host_processes_with(token)


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_host_processes_and_network_are_invisible(sandbox: str, listener: int) -> None:
    looker = (
        "import json, os, socket\n"
        "def f(x):\n"
        "    cmdlines = []\n"
        "    for entry in os.listdir('/proc'):\n"
        "        if entry.isdigit():\n"
        "            with open(f'/proc/{entry}/cmdline', 'rb') as fh:\n"
        "                cmdlines.append(fh.read().decode('latin-1'))\n"
        "    try:\n"
        f"        os.kill({os.getpid()}, 0)\n"
        "        host = 'visible'\n"
        "    except OSError as exc:\n"
        "        host = type(exc).__name__\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1', {listener}), timeout=2).close()\n"
        "        net = 'connected'\n"
        "    except OSError as exc:\n"
        "        net = type(exc).__name__\n"
        "    names = [name for _, name in socket.if_nameindex()]\n"
        "    print(json.dumps({'cmdlines': cmdlines, 'host': host, 'net': net, 'if': names}))\n"
    )
    seen = report(run(looker, sandbox))
    assert len(seen["cmdlines"]) <= 2  # the harness, and the sandbox's init if any
    assert not any("pytest" in c for c in seen["cmdlines"])
    assert seen["host"] == "ProcessLookupError"
    assert seen["net"] != "connected" and seen["if"] == ["lo"]
    # the listener is real: this process connects
    socket.create_connection(("127.0.0.1", listener), timeout=2).close()


def test_no_mount_is_left_on_the_host(sandbox: str) -> None:
    def mount_points() -> list[str]:
        return sorted(
            line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        )

    before = mount_points()
    run("def f(x):\n    return None\n", sandbox)
    assert mount_points() == before


# --------------------------------------------------------------------------- bubblewrap only


def test_bubblewrap_shows_only_the_interpreter() -> None:
    bwrap_or_skip()
    layout = interpreter_layout(sys.executable)
    project = Path(pytest_inferbudget.__file__).resolve().parents[1]
    hidden = [str(project), sys.prefix, "/home", "/etc/passwd", "/sys", "/srv", "/var/lib"]
    home = str(Path.home())
    # the home directory shows at most the way to an interpreter installed inside it
    on_the_way = {
        r[len(home) + 1 :].split("/")[0] for r in layout.roots if r.startswith(home + "/")
    }
    looker = (
        "import json, os\n"
        "def f(x):\n"
        f"    hidden = {hidden!r}\n"
        f"    sites = {list(layout.site_dirs)!r}\n"
        "    with open('/proc/self/status') as fh:\n"
        "        status = dict(l.split(':', 1) for l in fh)\n"
        f"    home = os.listdir({home!r}) if os.path.isdir({home!r}) else []\n"
        "    print(json.dumps({'root': sorted(os.listdir('/')), 'home': home,\n"
        "        'there': [p for p in hidden if os.path.exists(p)],\n"
        "        'sites': [os.listdir(s) for s in sites],\n"
        "        'caps': [status[k].strip() for k in ('CapEff', 'CapBnd', 'NoNewPrivs')]}))\n"
    )
    seen = report(run(looker, "bwrap"))
    assert seen["there"] == []
    assert set(seen["home"]) <= on_the_way
    assert seen["sites"] == [[]] * len(layout.site_dirs)  # site-packages hidden
    allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "proc", "dev"}
    allowed |= {"tmp", "var", *(r.split("/")[1] for r in layout.roots)}
    assert set(seen["root"]) <= allowed
    assert seen["caps"][0] == "0000000000000000" and seen["caps"][2] == "1"


def test_bubblewrap_drops_first_for_an_interpreter_uid_65534_can_reach() -> None:
    system = shutil.which("python3", path="/usr/bin")
    if os.geteuid() != 0 or system is None:
        pytest.skip("needs root and /usr/bin/python3")
    bwrap_or_skip()
    try:
        iso = probe_isolation(system, "bwrap")
    except SandboxError as exc:
        pytest.skip(f"{system} cannot run the harness: {exc}")
    assert iso.recipe is Recipe.BWRAP_DROPPED and iso.uid == UNPRIVILEGED_UID
    result = run("import os\ndef f(x):\n    print(os.getuid())\n", "bwrap", python=system)
    assert result.containment is Containment.BWRAP and result.stdout.strip() == "65534"


# --------------------------------------------------------------------------- fail closed


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    probe_isolation.cache_clear()
    try:
        yield
    finally:
        probe_isolation.cache_clear()


def hide_tools(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = shutil.which

    def which(cmd: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        return None if os.path.basename(cmd) in names else real(cmd, mode, path)

    monkeypatch.setattr(shutil, "which", which)


TINY = CodeTask(
    prompt="",
    entry_point="f",
    levels=(Level((TestCase((2,), 4),), 1.0),),
    reference_solution="def f(x):\n    return x * x\n",
    repeats=1,
)


@pytest.mark.usefixtures("fresh_probe")
def test_without_any_sandbox_untrusted_code_is_refused_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide_tools(monkeypatch, "bwrap", "unshare", "setpriv")
    iso = probe_isolation()
    assert iso.containment is Containment.NONE and "no bwrap binary" in iso.note
    for choice in ("auto", "bwrap", "unshare"):
        with pytest.raises(SandboxError, match=r"apt-get install bubblewrap.*sandbox=none"):
            run("def f(x):\n    return None\n", choice)
    with pytest.raises(SandboxError, match="refusing to run model-written code uncontained"):
        score_sample(TINY, "def f(x):\n    return x * x\n", cache=ReferenceCache())
    # asked for explicitly, it runs, and every result says it was not contained
    result = run("def f(x):\n    return None\n", "none")
    assert result.outcome is Outcome.OK and result.containment is Containment.NONE
    assert result.to_dict()["containment"] == "none"
    sample = score_sample(
        TINY, "def f(x):\n    return x * x\n", Sandboxed(SandboxChoice.NONE), cache=ReferenceCache()
    )
    assert sample.passed and sample.containment is Containment.NONE
    assert sample.to_dict()["containment"] == "none"


@pytest.mark.usefixtures("fresh_probe")
def test_auto_falls_back_to_unshare_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_tools(monkeypatch, "bwrap")
    iso = probe_isolation()
    if iso.containment is Containment.NONE:
        pytest.skip(f"the unshare recipe does not work here either: {iso.note}")
    assert iso.containment is Containment.UNSHARE and "no bwrap binary" in iso.note
    result = run("import os\ndef f(x):\n    print(os.getuid())\n", "auto")
    assert result.containment is Containment.UNSHARE and result.network_isolated
    if os.geteuid() == 0:
        assert result.stdout.strip() == str(UNPRIVILEGED_UID)
    sample = score_sample(TINY, "def f(x):\n    return x * x\n", cache=ReferenceCache())
    assert sample.passed and sample.containment is Containment.UNSHARE


@pytest.mark.usefixtures("fresh_probe")
def test_a_bwrap_that_fails_is_passed_over_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "bwrap"
    broken.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    real = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda cmd, *a, **k: str(broken) if cmd == "bwrap" else real(cmd, *a, **k)
    )
    iso = probe_isolation(None, "bwrap")
    assert iso.containment is Containment.NONE
    assert "No permissions to create new namespace" in iso.note
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        run("def f(x):\n    return None\n", "bwrap")


# --------------------------------------------------------------------------- the option


class CodeEngine:
    """A stand-in engine that answers every prompt with the same code: no model needed."""

    spec = "stub:code"

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        text = "```python\ndef f(x):\n    return x * x\n```"
        return [
            Response(r, tuple(Generation(text, 1, 9, "stop") for _ in range(r.n)), self.spec)
            for r in requests
        ]

    def describe(self) -> EngineInfo:
        return {"engine": "stub", "model": "code"}

    def close(self) -> None:
        pass


class StubEngines:
    def pytest_inferbudget_make_engine(self, spec: EngineSpec) -> CodeEngine | None:
        return CodeEngine() if spec.name == "stub" else None


@pytest.fixture
def code_test(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "task.json").write_text(json.dumps(TINY.to_dict()))
    pytester.makepyfile(
        """
        def test_scored(infer):
            [sample] = infer.score_code(infer("Write f."), "task.json")
            assert sample.passed
            print("containment:", sample.containment)
        """
    )
    return pytester


def test_the_sandbox_option_reaches_score_code(code_test: pytest.Pytester) -> None:
    contained = code_test.runpytest("-s", "--inferbudget-engine=stub:code", plugins=[StubEngines()])
    contained.assert_outcomes(passed=1)
    contained.stdout.fnmatch_lines([f"*containment: {probe_isolation().containment}"])
    assert probe_isolation().containment is not Containment.NONE
    opted_out = code_test.runpytest(
        "-s",
        "--inferbudget-engine=stub:code",
        "--inferbudget-sandbox=none",
        plugins=[StubEngines()],
    )
    opted_out.assert_outcomes(passed=1, warnings=1)
    opted_out.stdout.fnmatch_lines(
        [
            "*containment: none",
            "*model-written code ran uncontained*",
            "*test_scored: 1 score(s) ran model-written code UNCONTAINED*",
        ]
    )


def test_a_bad_sandbox_choice_is_a_usage_error(code_test: pytest.Pytester) -> None:
    code_test.makeini("[pytest]\ninferbudget_sandbox = docker\n")
    result = code_test.runpytest("--inferbudget-engine=stub:code", plugins=[StubEngines()])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*inferbudget_sandbox = 'docker' is not one of auto, bwrap*"])
