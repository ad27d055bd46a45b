"""What every launcher shares: the vocabulary of containment, the interpreter's layout, the job
handed over by file descriptor, and the command a launcher builds.

A launcher (:mod:`~pytest_inferbudget.code.bwrap`, :mod:`~pytest_inferbudget.code.unshare`)
turns a :class:`Recipe` into a :class:`Command`: the argv that starts the child harness inside
the sandbox, the descriptors it inherits and the uid the parent drops to before ``exec``. The
job (``input.json`` and the harness) travels in memory files (``memfd``), so nothing of a
contained run is ever written to the host's disk.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol, final

from pytest_inferbudget.errors import SandboxError

__all__ = [
    "UNPRIVILEGED_UID",
    "WORKDIR",
    "Command",
    "Containment",
    "InterpreterLayout",
    "JobFiles",
    "Launcher",
    "Recipe",
    "SandboxChoice",
    "Space",
    "interpreter_layout",
    "job_files",
    "weakest",
]

UNPRIVILEGED_UID: Final = 65534
"""The uid (and gid) a candidate runs as where the recipe allows, ``nobody`` on most systems."""

WORKDIR: Final = "/tmp/work"
"""The candidate's working directory inside a contained run (on the private ``/tmp``)."""


class Containment(enum.StrEnum):
    """Which tool contained a run, from strongest to weakest."""

    BWRAP = "bwrap"
    """bubblewrap: a fresh root holding only the interpreter, read-only, and private tmpfs
    mounts; new network, PID, IPC and UTS namespaces; no capabilities; uid 65534."""
    UNSHARE = "unshare"
    """util-linux ``unshare``: new network, PID, IPC, UTS and mount namespaces, the host's
    root read-only with private tmpfs mounts over ``/tmp``, ``/var/tmp``, ``/dev/shm`` and the
    home directories, uid 65534."""
    NONE = "none"
    """Only rlimits, a session of its own and an empty environment: uncontained, run only
    when asked for with ``sandbox="none"`` (``--inferbudget-sandbox=none``)."""


_STRENGTH: Final = {Containment.NONE: 0, Containment.UNSHARE: 1, Containment.BWRAP: 2}


def weakest(*kinds: Containment) -> Containment:
    """The weakest of several containments (of the runs behind one score)."""
    return min(kinds, key=_STRENGTH.__getitem__, default=Containment.NONE)


class SandboxChoice(enum.StrEnum):
    """What the user asks for (``--inferbudget-sandbox``, ``run_candidate(sandbox=...)``)."""

    AUTO = "auto"
    """bubblewrap where it works, else ``unshare``, else refuse (:class:`SandboxError`)."""
    BWRAP = "bwrap"
    """bubblewrap or refuse."""
    UNSHARE = "unshare"
    """The ``unshare`` recipe or refuse (to test the fallback)."""
    NONE = "none"
    """No containment at all, knowingly: every result says ``containment="none"``."""


class Recipe(enum.StrEnum):
    """One way of starting a contained child; the probe tries them strongest first."""

    BWRAP_DROPPED = "bwrap-dropped"
    """As root: drop to uid 65534 first, then bubblewrap in a user namespace that maps that
    uid to itself, with nested user namespaces disabled. Needs an interpreter uid 65534 can
    reach on the host."""
    BWRAP_SETPRIV = "bwrap-setpriv"
    """As root: bubblewrap mounts as root without a user namespace, keeping only the
    capabilities to change uid; ``setpriv`` drops to uid 65534 before the interpreter starts.
    Works for an interpreter under ``/root``."""
    BWRAP_USERNS = "bwrap-userns"
    """bubblewrap in a user namespace where the candidate is uid 65534 but the kernel sees the
    caller's uid (the only way for a non-root caller; as root, the last bubblewrap resort)."""
    UNSHARE_SETPRIV = "unshare-setpriv"
    """As root: ``unshare`` namespaces, a shell sets up the mounts, ``setpriv`` drops to uid
    65534 with an empty capability bounding set."""
    UNSHARE_USERNS = "unshare-userns"
    """A non-root caller: the same in a user namespace (``--map-root-user``), every
    capability dropped before the interpreter starts; the kernel sees the caller's uid."""
    NONE = "none"
    """No launcher."""

    @property
    def containment(self) -> Containment:
        if self is Recipe.NONE:
            return Containment.NONE
        return Containment.BWRAP if self.value.startswith("bwrap") else Containment.UNSHARE

    @property
    def kernel_uid(self) -> int | None:
        """The uid the kernel checks for the candidate: 65534, or None for the caller's."""
        dropped = (Recipe.BWRAP_DROPPED, Recipe.BWRAP_SETPRIV, Recipe.UNSHARE_SETPRIV)
        return UNPRIVILEGED_UID if self in dropped else None


@final
@dataclass(frozen=True, slots=True)
class Space:
    """The run-wide write budget: every writable place of a contained run is a private tmpfs."""

    tmp_bytes: int
    """Size of the tmpfs on ``/tmp``, which holds the working directory and is ``/var/tmp``."""
    shm_bytes: int
    """Size of the tmpfs on ``/dev/shm``."""


@final
@dataclass(frozen=True, slots=True)
class InterpreterLayout:
    """Where an interpreter and its standard library lie, symlinks resolved, and which
    site-packages folders to hide: what a fresh root must show and no more."""

    executable: str
    """The interpreter's real path (a venv's ``python`` resolves to its base interpreter)."""
    roots: tuple[str, ...]
    """Folders outside ``/usr`` to bind read-only: the base prefix, usually."""
    site_dirs: tuple[str, ...]
    """Existing site-packages folders under what is bound, hidden behind an empty tmpfs."""


_LAYOUT_SCRIPT: Final = (
    "import json, os, site, sys, sysconfig\n"
    "bases = {'base': sys.base_prefix, 'platbase': sys.base_exec_prefix,"
    " 'installed_base': sys.base_prefix, 'installed_platbase': sys.base_exec_prefix}\n"
    "paths = sysconfig.get_paths(vars=bases)\n"
    "sites = list(site.getsitepackages([sys.base_prefix, sys.base_exec_prefix]))\n"
    "sites += [paths['purelib'], paths['platlib']]\n"
    "print(json.dumps({'executable': os.path.realpath(sys.executable),"
    " 'dirs': [sys.base_prefix, sys.base_exec_prefix, paths['stdlib'], paths['platstdlib']],"
    " 'sites': sites, 'version': list(sys.version_info[:2])}))\n"
)

SYSTEM_DIRS: Final = ("/usr",)
"""Bound read-only whole: the dynamic loader, the C library and the tools a recipe runs."""


def _under(path: str, parents: tuple[str, ...] | list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


@functools.lru_cache(maxsize=8)
def interpreter_layout(python: str) -> InterpreterLayout:
    """Ask ``python`` (run in isolated mode on the host) where its prefix, standard library
    and site-packages lie. Raises :class:`SandboxError` when it cannot say."""
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-c", _LAYOUT_SCRIPT],
            env={},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
        info = json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(
            f"cannot run {python} to find its standard library ({exc}); pass python= an "
            "interpreter that runs"
        ) from exc
    if tuple(info["version"]) < (3, 11):
        raise SandboxError(
            f"{python} is Python {info['version']}; the harness needs 3.11 or later: pass "
            "python= a newer interpreter"
        )
    executable = str(info["executable"])
    dirs = sorted({os.path.realpath(d) for d in [os.path.dirname(executable), *info["dirs"]]})
    roots: list[str] = []
    for d in dirs:
        if os.path.isdir(d) and not _under(d, [*SYSTEM_DIRS, *roots]):
            roots.append(d)
    bound = [*SYSTEM_DIRS, *roots]
    sites = sorted(
        {
            os.path.realpath(s)
            for s in info["sites"]
            if os.path.isdir(s) and _under(os.path.realpath(s), bound)
        }
    )
    return InterpreterLayout(executable=executable, roots=tuple(roots), site_dirs=tuple(sites))


@final
@dataclass(frozen=True, slots=True)
class JobFiles:
    """The job and the harness as open memory files, for a launcher to copy into the sandbox."""

    input_fd: int
    harness_fd: int


@contextlib.contextmanager
def job_files(job: bytes, harness: bytes) -> Iterator[JobFiles]:
    """``job`` and ``harness`` in two memory files (offset 0), closed on exit."""
    fds: list[int] = []
    try:
        for name, data in (("inferbudget-input", job), ("inferbudget-harness", harness)):
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
            fds.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.lseek(fd, 0, os.SEEK_SET)
        yield JobFiles(input_fd=fds[0], harness_fd=fds[1])
    finally:
        for fd in fds:
            os.close(fd)


@final
@dataclass(frozen=True, slots=True)
class Command:
    """How to start one contained child; the supervisor appends the result pipe's number."""

    argv: tuple[str, ...]
    cwd: str
    """The host directory the launcher starts in (the child's own is :data:`WORKDIR`)."""
    pass_fds: tuple[int, ...]
    drop_uid: int | None
    """Set uid and gid to this (no supplementary groups) in the forked child before ``exec``."""


class Launcher(Protocol):
    """Builds the command of one sandboxing tool; one implementation per file."""

    @property
    def containment(self) -> Containment: ...

    def recipes(self) -> tuple[Recipe, ...]:
        """The recipes worth probing on this machine, strongest first; empty when the tool
        is missing."""
        ...

    def command(
        self, recipe: Recipe, layout: InterpreterLayout, job: JobFiles, space: Space
    ) -> Command:
        """The command that runs ``python -I -S WORKDIR/harness.py`` contained by ``recipe``."""
        ...


def harness_argv(layout: InterpreterLayout) -> tuple[str, ...]:
    """The interpreter and the harness, as the sandbox sees them."""
    return (layout.executable, "-I", "-S", f"{WORKDIR}/harness.py")
