"""Saved runs and report files, which must never be half written nor silently skipped."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

from pytest_inferbudget.errors import ReportError

if TYPE_CHECKING:
    from pytest_inferbudget.records import CommitInfo


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (see :func:`write_text_atomic`)."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise ReportError(f"cannot write {path}: {exc}") from exc
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str, *, overwrite: bool = True) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    A reader sees the old file or the new one, never a mix, even if the run is killed or
    the disk fills up (the temporary file is removed and the old file stays). With
    ``overwrite=False`` the file is linked into place instead, and an existing ``path``
    raises :class:`FileExistsError`: two writers choosing one name can never lose a run.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc}") from exc
    try:
        os.fchmod(handle, _file_mode(path))  # mkstemp's 0600 would hide reports from others
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            _link_new(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            raise ReportError(f"cannot write {path}: {exc}") from exc
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: an existing file's, else 0666 less
    the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _link_new(temporary: str, path: Path) -> None:
    """Move a finished temporary file to ``path`` only if nothing is there yet."""
    try:
        os.link(temporary, path)  # atomic, and refuses an existing name
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(str(path)) from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def read_json(path: Path) -> Any:
    """Load a JSON file, turning every way it can be broken into an error naming it."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path} is not a readable JSON report ({exc})") from exc


RUN_SUFFIX = ".json"


def commit_info(where: Path | None = None) -> CommitInfo | None:
    """The git commit a run tested: id, branch, commit time and whether the work tree had
    uncommitted changes; None outside a git work tree (or without git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    from pytest_inferbudget.records import CommitInfo as Commit

    return Commit(
        id=commit,
        branch=None if branch in (None, "HEAD") else branch,
        time=git("log", "-1", "--format=%cI", "HEAD"),
        dirty=bool(status),
    )


def autosave_name(commit: dict[str, Any] | None) -> str:
    """What ``--inferbudget-autosave`` calls a run: its commit (``-dirty`` with uncommitted
    changes), else ``autosave``."""
    if not commit:
        return "autosave"
    return str(commit["id"])[:12] + ("-dirty" if commit.get("dirty") else "")


def save_run(root: Path, key: str, run: dict[str, Any], name: str) -> Path:
    """Keep a run under ``root/key/``, named so that runs sort by time and never collide.

    Concurrent sessions write different files (a name already taken gets a numbered
    suffix, never an overwrite); a killed session leaves only a hidden temporary file,
    never a half-written run, and earlier runs are never touched.
    """
    stamp = run["started_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"
    stem = f"{stamp}_{run['run_id'][:8]}_{safe}"
    text = json.dumps(run, indent=2, allow_nan=False) + "\n"
    for attempt in range(1, 1000):
        path = Path(root) / key / f"{stem}{'' if attempt == 1 else f'~{attempt}'}{RUN_SUFFIX}"
        try:
            write_text_atomic(path, text, overwrite=False)
        except FileExistsError:
            continue
        return path
    raise ReportError(f"cannot save {stem}: 999 runs of that name and second already exist")


def saved_runs(root: Path, key: str) -> list[Path]:
    """Saved runs for one hardware key, oldest first: by start time (the file name's stamp),
    then, for sessions started in the same second, by when they were saved. Temporary
    files are not runs."""
    folder = Path(root) / key
    if not folder.is_dir():
        return []
    runs = [p for p in folder.iterdir() if p.suffix == RUN_SUFFIX and p.name[0] != "."]
    return sorted(runs, key=lambda p: (p.name.split("_", 1)[0], _saved_ns(p), p.name))


def _saved_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:  # removed meanwhile: sorts first, and reading it will say so
        return 0


def hardware_keys(root: Path) -> list[str]:
    """The hardware keys that have a folder under the storage root."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] != ".")


def run_name(path: Path) -> str:
    """The name a run was saved under (``--inferbudget-save NAME``), from its file name."""
    parts = path.stem.split("_", 2)
    return parts[2].partition("~")[0] if len(parts) == 3 else path.stem


def _run_id_prefix(path: Path) -> str:
    parts = path.stem.split("_", 2)
    return parts[1] if len(parts) == 3 else ""


def _matching(runs: list[Path], wanted: str) -> list[Path]:
    """The runs saved as ``wanted`` (oldest first, so the last is the latest), else the
    runs whose id starts with ``wanted`` (more than one is ambiguous)."""
    by_name = [p for p in runs if run_name(p) == wanted]
    if by_name or not wanted:
        return by_name
    by_id = [p for p in runs if _run_id_prefix(p).startswith(wanted[:8])]
    if len(wanted) > 8:  # the file name holds 8 digits of the id; the file holds them all
        by_id = [p for p in by_id if str(read_json(p).get("run_id", "")).startswith(wanted)]
    return by_id


def find_run(
    root: Path, key: str, wanted: str | None, identity: dict[str, Any] | None = None
) -> Path:
    """The run a user names: a path, a run id prefix or a saved name (the latest run of
    that name); default the latest run on this hardware key. A missing or ambiguous run
    is an error that lists the choices; one saved only on other hardware says so."""
    if wanted and Path(wanted).is_file():
        return Path(wanted)
    runs = saved_runs(root, key)
    if not runs:
        elsewhere = _elsewhere(root, key, wanted, identity)
        raise ReportError(
            f"no saved run to compare with under {Path(root) / key} (this machine's key)"
            + elsewhere
            + "; save one first with --inferbudget-save NAME or --inferbudget-autosave"
        )
    if not wanted:
        return runs[-1]
    matches = _matching(runs, wanted)
    if len(matches) == 1 or (matches and run_name(matches[0]) == wanted):
        return matches[-1]
    listing = ", ".join(p.name for p in runs[-10:])
    problem = "matches several saved runs" if matches else "matches no saved run"
    raise ReportError(
        f"--inferbudget-compare={wanted!r} {problem} on this hardware key {key}"
        + _elsewhere(root, key, wanted, identity)
        + f"; saved runs: {listing}"
    )


def check_baseline_exists(root: Path, wanted: str | None) -> None:
    """Before any test runs: the baseline a user asked for exists somewhere (the engine,
    which picks the hardware key, is not loaded yet). A path must be a readable saved run;
    a name or id must match a run under some key; the latest needs any saved run at all.
    Raises :class:`ReportError` saying what is missing and how to save one."""
    if wanted and (Path(wanted).is_file() or "/" in wanted or wanted.endswith(".json")):
        load_run(Path(wanted))  # a missing, truncated or foreign file is named now
        return
    runs = [p for key in hardware_keys(root) for p in saved_runs(root, key)]
    how = (
        "save one first with --inferbudget-save NAME (or --inferbudget-autosave), or let a "
        "first run on a new runner pass with --inferbudget-compare-missing=warn"
    )
    if not runs:
        raise ReportError(f"no saved runs under {root} to compare with; {how}")
    candidates = []  # per hardware key, the run a comparison there would take
    for key in hardware_keys(root):
        matches = _matching(saved_runs(root, key), wanted) if wanted else saved_runs(root, key)
        candidates += matches[-1:]
    if not candidates:
        names = ", ".join(sorted({run_name(p) for p in runs})[:10])
        raise ReportError(
            f"--inferbudget-compare={wanted!r} matches no run saved under {root} (saved "
            f"names: {names}; `inferbudget list` shows them all); {how}"
        )
    broken = []
    for path in candidates:
        try:
            load_run(path)
        except ReportError as exc:
            broken.append(str(exc))
    if len(broken) == len(candidates):  # else the engine's key decides, once it is known
        raise ReportError("; ".join(broken))


def _elsewhere(
    root: Path, key: str, wanted: str | None, identity: dict[str, Any] | None = None
) -> str:
    """Where runs matching ``wanted`` (or, none named, any run) lie under other hardware
    keys, which field of the key differs from this run's, and how to use one anyway."""
    found = [p for other in hardware_keys(root) if other != key for p in saved_runs(root, other)]
    matches = _matching(found, wanted) if wanted else found
    if not matches:
        return ""
    differs = ""
    if identity is not None:
        from pytest_inferbudget.hardware import key_difference

        try:
            differs = f"; it differs in {key_difference(read_json(matches[-1]), identity)}"
        except (ReportError, KeyError, TypeError, ValueError, AttributeError):
            differs = ""
    return (
        f" (saved on other hardware: {matches[-1]}{differs}; comparing across hardware "
        "needs its path and --inferbudget-compare-any-hardware)"
    )


def resolve_run(root: Path, wanted: str) -> Path:
    """A run for the ``inferbudget`` command: a file path, else a run id prefix or saved
    name under any hardware key (the latest of that name)."""
    if Path(wanted).is_file():
        return Path(wanted)
    runs = [p for key in hardware_keys(root) for p in saved_runs(root, key)]
    matches = _matching(runs, wanted)
    if not matches:
        raise ReportError(
            f"{wanted!r} is neither a file nor a run id or name saved under {root} "
            "(see `inferbudget list`)"
        )
    if len(matches) > 1 and run_name(matches[0]) != wanted:
        names = ", ".join(str(p) for p in matches[:10])
        raise ReportError(f"{wanted!r} matches several saved runs: {names}")
    if len({p.parent.name for p in matches}) > 1:
        names = ", ".join(str(p) for p in matches[:10])
        raise ReportError(
            f"runs named {wanted!r} exist under several hardware keys: {names}; give a path"
        )
    return matches[-1]


def load_run(path: Path) -> dict[str, Any]:
    """A saved run, checked: unreadable, truncated, or of another schema is an error."""
    from pytest_inferbudget.records import RunRecord

    data = read_json(path)
    if not isinstance(data, dict):
        raise ReportError(f"{path} is not a saved run (expected a JSON object)")
    try:
        RunRecord.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"{path} is not a valid saved run: {exc!r}") from exc
    return data


@final
@dataclass(frozen=True, slots=True)
class SavedRun:
    """One line of ``inferbudget list``: what a saved run is, read from its file."""

    path: Path
    key: str
    name: str
    run_id: str
    started_at: str
    commit: str
    """Short commit id, ``-dirty`` when the work tree had changes; ``""`` when unknown."""
    tests: int
    engine: str
    hardware: str


def describe_saved_run(path: Path) -> SavedRun:
    """Read and check one saved run (an error names a corrupt one) for a listing."""
    data = load_run(path)
    commit = data.get("commit") or {}
    short = str(commit.get("id", ""))[:12] + ("-dirty" if commit.get("dirty") else "")
    hardware = data.get("hardware") or {}
    engine = data.get("engine") or {}
    device = f"{hardware.get('cpu_model', '?')} x{hardware.get('cpu_count', '?')}"
    if engine.get("gpu"):
        device += f", {engine['gpu']}"
    return SavedRun(
        path=path,
        key=path.parent.name,
        name=run_name(path),
        run_id=str(data["run_id"]),
        started_at=str(data["started_at"]),
        commit=short if commit.get("id") else "",
        tests=len(data["tests"]),
        engine=str(engine.get("spec", "?")),
        hardware=device,
    )
