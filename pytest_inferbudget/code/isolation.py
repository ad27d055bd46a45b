"""Which containment a child can get on this machine, probed once per interpreter.

The launcher is ``unshare`` (util-linux): new network, PID and mount namespaces with a private
``/proc``, and, as root, a drop to uid 65534. A machine may allow all of it, part, or nothing
(user namespaces switched off, a container's seccomp profile), so each launcher is tried with a
tiny probe, strongest first, and the result says what was missing instead of assuming.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Final, final

__all__ = [
    "UNPRIVILEGED_UID",
    "Isolation",
    "no_isolation",
    "own_netns",
    "probe_isolation",
    "unprivileged_interpreter",
]

UNPRIVILEGED_UID: Final = 65534
"""The uid (and gid) a root parent drops the child to, ``nobody`` on most systems."""

_PROBE: Final = (
    "import json, os\n"
    "print(json.dumps({'netns': os.readlink('/proc/self/ns/net'), 'pid': os.getpid(),"
    " 'uid': os.getuid(), 'groups': os.getgroups()}))\n"
)


@final
@dataclass(frozen=True, slots=True)
class Isolation:
    """What containment a child gets on this machine: the result of :func:`probe_isolation`."""

    prefix: tuple[str, ...]
    """The launcher put before the interpreter (``unshare ...``), empty when none works."""
    network: bool
    """The child gets its own network namespace: no interface but a loopback that is down."""
    pid_namespace: bool
    """The child is PID 1 of its own PID namespace with a private ``/proc``: it sees no other
    process, and all its descendants are killed when it exits."""
    uid: int | None
    """The uid the child runs as when privileges are dropped; ``None``: the parent's uid."""
    note: str
    """Why something is missing ("" when everything works)."""


def no_isolation(note: str) -> Isolation:
    """No launcher: the child runs with rlimits, its own session and an empty environment
    only; ``note`` says why."""
    return Isolation(prefix=(), network=False, pid_namespace=False, uid=None, note=note)


@functools.cache
def own_netns() -> str:
    """This process's network namespace, to tell whether a child's is new ("" without procfs)."""
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return ""


def _launchers() -> list[tuple[tuple[str, ...], bool, bool, int | None]]:
    """Candidate launchers, strongest first: (prefix, network, pid namespace, uid)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    full = ("--net", "--pid", "--fork", "--kill-child", "--mount-proc")
    if os.geteuid() == 0:
        drop = ("--setuid", str(UNPRIVILEGED_UID), "--setgid", str(UNPRIVILEGED_UID))
        return [
            ((unshare, *full, *drop), True, True, UNPRIVILEGED_UID),
            ((unshare, *full), True, True, None),
            ((unshare, "--net"), True, False, None),
        ]
    user = ("--user", "--map-root-user")
    return [
        ((unshare, *user, *full), True, True, None),
        ((unshare, *user, "--net"), True, False, None),
    ]


@functools.lru_cache(maxsize=1)
def unprivileged_interpreter() -> str | None:
    """As root, the first Python that uid 65534 can run (this interpreter, else the
    system's): pass it as ``python=`` so candidates lose root; None when none can (or we
    are not root)."""
    if os.geteuid() != 0:
        return None
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and probe_isolation(candidate).uid is not None:
            return candidate
    return None


@functools.lru_cache(maxsize=8)
def probe_isolation(python: str | None = None) -> Isolation:
    """Find the strongest launcher that works here for ``python`` (default
    ``sys.executable``), by running a tiny probe under each; cached per interpreter.

    Tried in order: ``unshare --net --pid --fork --kill-child --mount-proc`` (with
    ``--setuid/--setgid 65534`` first when running as root; that needs an interpreter and
    stdlib that uid 65534 can read), then ``--user --map-root-user`` variants for non-root
    users, then ``unshare --net`` alone, then no launcher. The note says what failed.
    """
    interpreter = python or sys.executable
    notes: list[str] = []
    if shutil.which("unshare") is None:
        notes.append("no unshare binary (util-linux): no namespaces")
    own = own_netns()
    chosen: Isolation | None = None
    for prefix, network, pid_ns, uid in _launchers():
        argv = [*prefix, interpreter, "-I", "-S", "-c", _PROBE]
        label = " ".join(prefix[1:])
        try:
            done = subprocess.run(
                argv,
                env={},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                cwd="/",
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        stderr = done.stderr.decode("utf-8", "replace").strip().splitlines()
        last = f" ({stderr[-1]})" if stderr else ""
        try:
            info = json.loads(done.stdout.decode("utf-8", "replace"))
        except ValueError:
            notes.append(f"{label}: exit {done.returncode}{last}")
            continue
        if not isinstance(info, dict):
            notes.append(f"{label}: unexpected probe output")
            continue
        problems = []
        if done.returncode != 0:
            problems.append(f"exit {done.returncode}")
        if network and (info.get("netns") in ("", own)):
            problems.append("network namespace not new")
        if pid_ns and info.get("pid") != 1:
            problems.append("not PID 1 of a new PID namespace")
        if uid is not None and (info.get("uid") != uid or info.get("groups") not in ([], [uid])):
            problems.append(f"uid {uid} not taken")
        if problems:
            notes.append(f"{label}: {', '.join(problems)}{last}")
            continue
        chosen = Isolation(prefix=prefix, network=network, pid_namespace=pid_ns, uid=uid, note="")
        break
    if chosen is None:
        return no_isolation("; ".join(notes) or "no launcher worked")
    missing = []
    if os.geteuid() == 0 and chosen.uid is None:
        missing.append(
            f"runs as root: {interpreter} is not usable by uid {UNPRIVILEGED_UID}, so the "
            "candidate keeps root's file-system access (pass python= an interpreter that "
            "uid can run, e.g. /usr/bin/python3, to drop privileges)"
        )
    if not chosen.pid_namespace:
        missing.append("no PID namespace: a process that calls setsid() can outlive the kill")
    if notes:
        missing.append("tried: " + "; ".join(notes))
    return Isolation(
        prefix=chosen.prefix,
        network=chosen.network,
        pid_namespace=chosen.pid_namespace,
        uid=chosen.uid,
        note="; ".join(missing),
    )
