"""The bubblewrap launcher: the default containment wherever ``bwrap`` works.

The child gets a fresh root (a tmpfs) holding only what the interpreter needs, read-only:
``/usr`` (the dynamic loader, the C library, ``setpriv``), the merged-``/usr`` links or the
``/bin``, ``/lib*`` folders, ``/etc/ld.so.cache``, and the interpreter's own prefix where it
lies outside ``/usr``, its site-packages hidden behind an empty read-only tmpfs. Home
directories, the project, other site-packages, ``/etc`` and ``/sys`` are not there. The only
writable places are two private tmpfs mounts with a size cap: ``/tmp`` (holding the working
directory, :data:`~pytest_inferbudget.code.launch.WORKDIR`, and behind the ``/var/tmp``
link) and ``/dev/shm``. Then: new network, PID, IPC, UTS and (where possible) cgroup
namespaces, a private ``/proc`` and a minimal ``/dev``, ``--die-with-parent``,
``--new-session``, an empty environment, no capabilities, uid and gid 65534.
"""

from __future__ import annotations

import os
import shutil
from typing import Final, final

from pytest_inferbudget.code.launch import (
    UNPRIVILEGED_UID,
    WORKDIR,
    Command,
    Containment,
    InterpreterLayout,
    JobFiles,
    Recipe,
    Space,
    harness_argv,
)

__all__ = ["BwrapLauncher"]

_LINKABLE: Final = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Top-level folders that merged-``/usr`` systems make links into ``/usr``."""

_SITE_MASK_BYTES: Final = 4096


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a", "/a/b"]``: folders bubblewrap would otherwise create 0700."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


@final
class BwrapLauncher:
    """Builds ``bwrap`` command lines (bubblewrap 0.8 or later: ``--size``, ``--perms``,
    ``--disable-userns``)."""

    containment = Containment.BWRAP

    def __init__(self, bwrap: str | None = None) -> None:
        self._bwrap = bwrap if bwrap is not None else shutil.which("bwrap")

    def recipes(self) -> tuple[Recipe, ...]:
        if self._bwrap is None:
            return ()
        if os.geteuid() == 0:
            return (Recipe.BWRAP_DROPPED, Recipe.BWRAP_SETPRIV, Recipe.BWRAP_USERNS)
        return (Recipe.BWRAP_USERNS,)

    def command(
        self, recipe: Recipe, layout: InterpreterLayout, job: JobFiles, space: Space
    ) -> Command:
        if self._bwrap is None:
            raise ValueError("no bwrap binary")
        argv: list[str] = [self._bwrap]
        if recipe is Recipe.BWRAP_SETPRIV:
            argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
            argv += ["--unshare-cgroup-try"]
            # root mounts without a user namespace and keeps only what setpriv needs
            argv += ["--cap-drop", "ALL"]
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            argv += ["--cap-add", "CAP_SETPCAP"]
        elif recipe in (Recipe.BWRAP_DROPPED, Recipe.BWRAP_USERNS):
            argv += ["--unshare-all", "--unshare-user", "--disable-userns"]
            argv += ["--uid", str(UNPRIVILEGED_UID), "--gid", str(UNPRIVILEGED_UID)]
            argv += ["--cap-drop", "ALL"]
        else:
            raise ValueError(f"{recipe} is not a bubblewrap recipe")
        argv += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv"]
        # the harness is PID 1, reaped by bwrap itself: its CPU time reaches os.wait4
        argv += ["--as-pid-1"]
        argv += self._root(layout)
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--perms", "1777", "--size", str(space.tmp_bytes), "--tmpfs", "/tmp"]
        argv += ["--perms", "1777", "--size", str(space.shm_bytes), "--tmpfs", "/dev/shm"]
        argv += ["--perms", "0755", "--dir", "/var", "--symlink", "/tmp", "/var/tmp"]
        argv += ["--perms", "0777", "--dir", WORKDIR]
        argv += ["--perms", "0444", "--file", str(job.input_fd), f"{WORKDIR}/input.json"]
        argv += ["--perms", "0444", "--file", str(job.harness_fd), f"{WORKDIR}/harness.py"]
        # the fresh root and /dev are tmpfs mounts too: nothing may grow there
        argv += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", WORKDIR]
        if recipe is Recipe.BWRAP_SETPRIV:
            setpriv = shutil.which("setpriv", path="/usr/bin:/usr/sbin") or "/usr/bin/setpriv"
            argv += [setpriv, f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}"]
            argv += ["--clear-groups", "--bounding-set=-all", "--inh-caps=-all"]
            argv += ["--pdeathsig=SIGKILL", "--no-new-privs", "--"]
        argv += harness_argv(layout)
        return Command(
            argv=tuple(argv),
            cwd="/",
            pass_fds=(job.input_fd, job.harness_fd),
            drop_uid=UNPRIVILEGED_UID if recipe is Recipe.BWRAP_DROPPED else None,
        )

    @staticmethod
    def _root(layout: InterpreterLayout) -> list[str]:
        """The read-only view of the host: ``/usr``, the top-level links or folders, the
        loader's cache, the interpreter's prefix with its parents (0755), site-packages
        hidden."""
        argv = ["--ro-bind", "/usr", "/usr"]
        for top in _LINKABLE:
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        if os.path.exists("/etc/ld.so.cache"):
            argv += ["--perms", "0755", "--dir", "/etc"]
            argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        made = {"/usr", "/etc"}
        for root in layout.roots:
            for parent in _ancestors(root):
                if parent not in made:
                    made.add(parent)
                    argv += ["--perms", "0755", "--dir", parent]
            argv += ["--ro-bind", root, root]
        for site in layout.site_dirs:
            argv += ["--size", str(_SITE_MASK_BYTES), "--tmpfs", site, "--remount-ro", site]
        return argv
