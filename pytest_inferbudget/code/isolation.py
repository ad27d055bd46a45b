"""Which containment a child can get on this machine, probed once per interpreter and choice.

Two launchers, each built on an existing tool: bubblewrap (:mod:`~pytest_inferbudget.code.
bwrap`), the default, and util-linux ``unshare`` (:mod:`~pytest_inferbudget.code.unshare`),
the fallback. A machine may allow either, both or neither (no binary, user namespaces
switched off, a container's seccomp profile), so each recipe is tried by running the real
harness on a probe job, strongest first, and the first whose child shows a new network and
PID namespace, no capabilities, the expected uid and a writable working directory wins. When
none does, :func:`require_containment` refuses to run untrusted code unless the user asked for
no containment (``sandbox="none"``).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

from pytest_inferbudget.code.bwrap import BwrapLauncher
from pytest_inferbudget.code.launch import (
    UNPRIVILEGED_UID,
    WORKDIR,
    Command,
    Containment,
    InterpreterLayout,
    JobFiles,
    Launcher,
    Recipe,
    SandboxChoice,
    Space,
    interpreter_layout,
    job_files,
)
from pytest_inferbudget.code.protocol import Records
from pytest_inferbudget.code.supervision import Finished, rlimits, run_supervised
from pytest_inferbudget.code.unshare import UnshareLauncher
from pytest_inferbudget.errors import SandboxError

__all__ = [
    "FIX",
    "HARNESS_PATH",
    "UNPRIVILEGED_UID",
    "Isolation",
    "contained_command",
    "no_isolation",
    "own_namespace",
    "own_netns",
    "probe_isolation",
    "require_containment",
    "run_contained",
    "unprivileged_interpreter",
]

FIX: Final = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap), or run the tests in the container of docs/code-efficiency.md, or accept "
    "uncontained runs with --inferbudget-sandbox=none (sandbox='none')"
)
"""What to do when nothing can contain a candidate; every refusal says it."""

HARNESS_PATH: Final = Path(__file__).with_name("harness.py")
"""The child harness, copied into each run's working directory."""

_PROBE_SOURCE: Final = (
    "import os\n"
    "def probe():\n"
    "    import fractions  # not loaded by the harness: the standard library is readable\n"
    "    with open('written', 'w') as fh:\n"
    "        fh.write('x')\n"
    "    os.unlink('written')\n"
    "    with open('/proc/self/status') as fh:\n"
    "        caps = [l.split()[1] for l in fh if l.startswith('CapEff:')]\n"
    "    return {'uid': os.getuid(), 'groups': os.getgroups(), 'cwd': os.getcwd(),\n"
    "            'caps': caps, 'fraction': str(fractions.Fraction(1, 3))}\n"
)
_PROBE_SPACE: Final = Space(tmp_bytes=4 << 20, shm_bytes=1 << 20)


@final
@dataclass(frozen=True, slots=True)
class Isolation:
    """What containment a child gets on this machine: the result of :func:`probe_isolation`."""

    containment: Containment
    """The tool that contains the child (``none``: nothing does)."""
    recipe: Recipe
    """How that tool is started (:class:`~pytest_inferbudget.code.launch.Recipe`)."""
    network: bool
    """The child gets its own network namespace: no interface but a loopback that is down."""
    pid_namespace: bool
    """The child lives in its own PID namespace with a private ``/proc``: it sees no other
    process, and all its descendants are killed when the sandbox ends."""
    uid: int | None
    """The uid the kernel checks for the candidate when it is dropped (65534); ``None``: the
    caller's (as seen outside a user namespace)."""
    note: str
    """What is weaker than it could be, and what failed on the way ("" when nothing)."""
    layout: InterpreterLayout | None = None
    """The interpreter the sandbox shows, None without containment."""


def no_isolation(note: str) -> Isolation:
    """No launcher: the child runs with rlimits, its own session and an empty environment
    only; ``note`` says why."""
    return Isolation(
        containment=Containment.NONE,
        recipe=Recipe.NONE,
        network=False,
        pid_namespace=False,
        uid=None,
        note=note,
    )


@functools.cache
def own_namespace(kind: str) -> str:
    """This process's namespace of ``kind`` (``net``, ``pid``), "" without procfs."""
    try:
        return os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return ""


def own_netns() -> str:
    """This process's network namespace, to tell whether a child's is new."""
    return own_namespace("net")


def _launchers(choice: SandboxChoice) -> list[Launcher]:
    if choice is SandboxChoice.BWRAP:
        return [BwrapLauncher()]
    if choice is SandboxChoice.UNSHARE:
        return [UnshareLauncher()]
    return [BwrapLauncher(), UnshareLauncher()]


def _launcher(containment: Containment) -> Launcher:
    if containment is Containment.BWRAP:
        return BwrapLauncher()
    if containment is Containment.UNSHARE:
        return UnshareLauncher()
    raise ValueError("no launcher for containment 'none'")


def contained_command(iso: Isolation, job: JobFiles, space: Space) -> Command:
    """The command that runs the harness under ``iso`` (which must contain something)."""
    if iso.layout is None or iso.containment is Containment.NONE:
        raise ValueError("contained_command needs a probed containment, not 'none'")
    return _launcher(iso.containment).command(iso.recipe, iso.layout, job, space)


def run_contained(
    iso: Isolation,
    job: bytes,
    space: Space,
    *,
    cpu_seconds: float,
    memory_bytes: int,
    file_bytes: int,
    open_files: int,
    processes: int,
    wall_seconds: float,
    output_bytes: int,
    result_bytes: int,
) -> Finished:
    """Run the harness on ``job`` under a contained ``iso`` and supervise it to its end."""
    limits = rlimits(
        cpu_seconds=cpu_seconds,
        memory_bytes=memory_bytes,
        file_bytes=file_bytes,
        open_files=open_files,
        processes=processes if iso.recipe.kernel_uid is not None else None,
    )
    with job_files(job, HARNESS_PATH.read_bytes()) as files:
        command = contained_command(iso, files, space)
        drop = command.drop_uid

        def preexec() -> None:
            limits()
            if drop is not None:
                os.setgroups([])
                os.setgid(drop)
                os.setuid(drop)

        return run_supervised(
            command.argv,
            cwd=command.cwd,
            preexec=preexec,
            wall_seconds=wall_seconds,
            output_bytes=output_bytes,
            result_bytes=result_bytes,
            pass_fds=command.pass_fds,
        )


def _check(recipe: Recipe, finished: Finished) -> str | None:
    """Why the probe's child does not show the containment ``recipe`` promises, or None."""
    records = Records.parse(finished.result)
    stderr = finished.stderr.decode("utf-8", "replace").strip().splitlines()
    last = f" ({stderr[-1][:300]})" if stderr else ""
    if records.header is None:
        return f"exit {finished.exit_code}{last}"
    answer = records.by_test.get(0)
    if answer is None or answer.get("kind") != "result":
        detail = answer.get("message", "") if answer else ""
        return f"the probe did not answer (exit {finished.exit_code}) {detail}{last}".strip()
    facts: dict[str, Any] = answer.get("value") or {}
    header = records.header
    expected_uid = 0 if recipe is Recipe.UNSHARE_USERNS else UNPRIVILEGED_UID
    problems = []
    if header.get("netns") in ("", own_netns()):
        problems.append("network namespace not new")
    if header.get("pidns") in ("", own_namespace("pid")):
        problems.append("PID namespace not new")
    elif header.get("pid") != 1:
        problems.append("the harness is not PID 1: its CPU time would escape os.wait4")
    if facts.get("uid") != expected_uid or facts.get("groups") not in ([], [expected_uid]):
        problems.append(f"uid {facts.get('uid')}, groups {facts.get('groups')}")
    if facts.get("caps") != ["0000000000000000"]:
        problems.append(f"capabilities left: {facts.get('caps')}")
    if facts.get("cwd") != WORKDIR or facts.get("fraction") != "1/3":
        problems.append(f"working directory {facts.get('cwd')!r}")
    return ", ".join(problems) + last if problems else None


def _caveat(recipe: Recipe) -> str:
    if recipe is Recipe.BWRAP_USERNS:
        who = "root" if os.geteuid() == 0 else "your uid"
        return (
            f"the kernel sees the candidate as {who} (uid 65534 inside is mapped to it): the "
            "process cap (RLIMIT_NPROC) is not applied, and files of that uid would be "
            "readable were any visible"
        )
    if recipe is Recipe.UNSHARE_USERNS:
        return (
            "unshare in a user namespace: the candidate has your uid and no capabilities; "
            "files of yours outside the hidden home directories stay readable"
        )
    if recipe is Recipe.UNSHARE_SETPRIV:
        return "unshare: the host's world-readable files stay visible, read-only"
    return ""


@functools.lru_cache(maxsize=16)
def probe_isolation(python: str | None = None, sandbox: str = "auto") -> Isolation:
    """Find the strongest containment that works here for ``python`` (default
    ``sys.executable``) within ``sandbox`` (``auto``: bubblewrap, else ``unshare``), by
    running the harness on a probe job under each recipe; cached per interpreter and choice.
    Returns :func:`no_isolation` (containment ``none``) with the reasons when nothing works;
    raises :class:`SandboxError` when ``python`` cannot run the harness at all.
    """
    choice = SandboxChoice(sandbox)
    if choice is SandboxChoice.NONE:
        return no_isolation("containment switched off (sandbox='none')")
    layout = interpreter_layout(python or sys.executable)
    job = json.dumps({"source": _PROBE_SOURCE, "entry_point": "probe", "tests": [[]]}).encode()
    notes: list[str] = []
    for launcher in _launchers(choice):
        recipes = launcher.recipes()
        if not recipes:
            tool = "bwrap" if launcher.containment is Containment.BWRAP else "unshare/setpriv"
            notes.append(f"{launcher.containment}: no {tool} binary")
            continue
        for recipe in recipes:
            iso = Isolation(launcher.containment, recipe, True, True, None, "", layout)
            try:
                finished = run_contained(
                    iso,
                    job,
                    _PROBE_SPACE,
                    cpu_seconds=30,
                    memory_bytes=1 << 30,
                    file_bytes=16 << 20,
                    open_files=64,
                    processes=64,
                    wall_seconds=30,
                    output_bytes=4096,
                    result_bytes=4096,
                )
            except (SandboxError, OSError) as exc:
                notes.append(f"{recipe}: {exc}")
                continue
            problem = _check(recipe, finished)
            if problem is not None:
                notes.append(f"{recipe}: {problem}")
                continue
            tried = ["tried first: " + "; ".join(notes)] if notes else []
            return Isolation(
                containment=launcher.containment,
                recipe=recipe,
                network=True,
                pid_namespace=True,
                uid=recipe.kernel_uid,
                note="; ".join(filter(None, [_caveat(recipe), *tried])),
                layout=layout,
            )
    return no_isolation("; ".join(notes) or "no launcher worked")


def require_containment(iso: Isolation, sandbox: str) -> None:
    """Fail closed: raise :class:`SandboxError` naming the fix when ``iso`` contains nothing
    and the user did not ask for that with ``sandbox="none"``."""
    choice = SandboxChoice(sandbox)
    if iso.containment is Containment.NONE and choice is not SandboxChoice.NONE:
        what = {
            SandboxChoice.AUTO: "neither bubblewrap nor the unshare recipe works here",
            SandboxChoice.BWRAP: "bubblewrap does not work here",
            SandboxChoice.UNSHARE: "the unshare recipe does not work here",
        }[choice]
        raise SandboxError(
            f"refusing to run model-written code uncontained (sandbox={sandbox!r}): {what} "
            f"({iso.note}). Fix: {FIX}"
        )


@functools.lru_cache(maxsize=1)
def unprivileged_interpreter() -> str | None:
    """As root, the first Python whose candidates run as uid 65534 here (this interpreter,
    else the system's): pass it as ``python=``; None when none can (or we are not root)."""
    if os.geteuid() != 0:
        return None
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if not os.path.exists(candidate):
            continue
        try:
            if probe_isolation(candidate).uid is not None:
                return candidate
        except SandboxError:  # too old for the harness, or broken
            continue
    return None
