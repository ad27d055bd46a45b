"""The ``unshare`` launcher: the fallback where bubblewrap is missing or refused.

util-linux's ``unshare`` gives new network, PID (with a private ``/proc``), IPC, UTS and mount
namespaces; a short ``sh`` script, run as root inside them, then sets up the mounts:

- private tmpfs mounts with a size cap on ``/tmp`` (holding the working directory,
  :data:`~pytest_inferbudget.code.launch.WORKDIR`, also bound on ``/var/tmp``) and
  ``/dev/shm``;
- empty tmpfs mounts over ``/root`` and ``/home``, with the interpreter's prefix bound back in
  place when it lies there;
- every other mount read-only (the root must be, or the script fails);

and ``setpriv`` starts the interpreter as uid 65534 with no capabilities and no new
privileges. A non-root caller gets the same inside a user namespace (``--map-root-user``),
with every capability dropped instead of the uid. Unlike bubblewrap, the host's other files
stay visible (read-only, and only those that are world-readable when the uid is 65534).
"""

from __future__ import annotations

import os
import shutil
from typing import Final, final

from pytest_inferbudget.code.launch import (
    UNPRIVILEGED_UID,
    Command,
    Containment,
    InterpreterLayout,
    JobFiles,
    Recipe,
    Space,
    harness_argv,
)

__all__ = ["HIDDEN_HOMES", "UnshareLauncher"]

HIDDEN_HOMES: Final = ("/root", "/home")
"""Covered by an empty tmpfs in the child's mount namespace."""

# The working directory is launch.WORKDIR, spelled out.
# $1 tmp bytes, $2 shm bytes, $3 input fd, $4 harness fd, $5 uid ("" keeps it),
# $6 interpreter folders under a hidden home, ":"-joined; then the command.
_SCRIPT: Final = r"""set -eu
tmp_size=$1 shm_size=$2 input_fd=$3 harness_fd=$4 uid=$5 keep=$6
shift 6
scratch=nosuid,nodev,mode=1777
mount -t tmpfs -o "size=$tmp_size,$scratch" inferbudget /tmp
mkdir -m 0700 /tmp/.keep
n=0
IFS=:
for dir in $keep; do
  n=$((n + 1)); mkdir "/tmp/.keep/$n"; mount --rbind "$dir" "/tmp/.keep/$n"
done
for home in /root /home; do
  if [ -d "$home" ] && [ ! -L "$home" ]; then
    mount -t tmpfs -o size=65536,nosuid,nodev,mode=0755 inferbudget "$home"
  fi
done
n=0
for dir in $keep; do
  n=$((n + 1)); mkdir -p "$dir"; mount --move "/tmp/.keep/$n" "$dir"
done
unset IFS
rm -rf /tmp/.keep
if [ -d /var/tmp ] && [ ! -L /var/tmp ]; then mount --bind /tmp /var/tmp; fi
if [ -d /dev/shm ] && [ ! -L /dev/shm ]; then
  mount -t tmpfs -o "size=$shm_size,$scratch" inferbudget /dev/shm
fi
mkdir -m 0755 /tmp/work
cat "/proc/self/fd/$input_fd" > /tmp/work/input.json
cat "/proc/self/fd/$harness_fd" > /tmp/work/harness.py
chmod 0444 /tmp/work/input.json /tmp/work/harness.py
if [ -n "$uid" ]; then chown "$uid:$uid" /tmp/work; fi
for mount_point in $(cut -d ' ' -f 2 /proc/self/mounts); do
  case $mount_point in
    /tmp|/var/tmp|/dev/shm) ;;
    *) mount -o remount,bind,ro "$mount_point" 2>/dev/null || true ;;
  esac
done
mount -o remount,bind,ro /
cd /tmp/work
exec "$@"
"""


@final
class UnshareLauncher:
    """Builds ``unshare ... sh -c SCRIPT ... setpriv ... python`` command lines."""

    containment = Containment.UNSHARE

    def __init__(self, unshare: str | None = None) -> None:
        self._unshare = unshare if unshare is not None else shutil.which("unshare")
        self._setpriv = shutil.which("setpriv")
        self._sh = shutil.which("sh")

    def recipes(self) -> tuple[Recipe, ...]:
        if self._unshare is None or self._setpriv is None or self._sh is None:
            return ()
        return (Recipe.UNSHARE_SETPRIV,) if os.geteuid() == 0 else (Recipe.UNSHARE_USERNS,)

    def command(
        self, recipe: Recipe, layout: InterpreterLayout, job: JobFiles, space: Space
    ) -> Command:
        if self._unshare is None or self._setpriv is None or self._sh is None:
            raise ValueError("unshare, setpriv or sh is missing")
        argv: list[str] = [self._unshare]
        if recipe is Recipe.UNSHARE_USERNS:
            argv += ["--user", "--map-root-user"]
        elif recipe is not Recipe.UNSHARE_SETPRIV:
            raise ValueError(f"{recipe} is not an unshare recipe")
        argv += ["--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        argv += ["--mount", "--mount-proc", "--propagation", "private"]
        keep = [
            root
            for root in layout.roots
            if any(root.startswith(home + "/") for home in HIDDEN_HOMES) and ":" not in root
        ]
        drop = recipe is Recipe.UNSHARE_SETPRIV
        uid = str(UNPRIVILEGED_UID) if drop else ""
        argv += ["--", self._sh, "-c", _SCRIPT, "inferbudget-sandbox"]
        argv += [str(space.tmp_bytes), str(space.shm_bytes)]
        argv += [str(job.input_fd), str(job.harness_fd), uid, ":".join(keep)]
        argv += [self._setpriv]
        if drop:
            argv += [f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}"]
            argv += ["--clear-groups"]
        argv += ["--bounding-set=-all", "--inh-caps=-all", "--pdeathsig=SIGKILL"]
        argv += ["--no-new-privs", "--"]
        argv += harness_argv(layout)
        return Command(
            argv=tuple(argv), cwd="/", pass_fds=(job.input_fd, job.harness_fd), drop_uid=None
        )
