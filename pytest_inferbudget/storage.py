"""Files that must never be half written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pytest_inferbudget.errors import ReportError


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (see :func:`write_text_atomic`)."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise ReportError(f"cannot write {path}: {exc}") from exc
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    A reader sees the old file or the new one, never a mix, even if the run is killed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc}") from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ReportError(f"cannot write {path}: {exc}") from exc
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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


def save_run(root: Path, key: str, run: dict[str, Any], name: str) -> Path:
    """Keep a run under ``root/key/``, named so that runs sort by time and never collide.

    Concurrent sessions write different files; a killed session leaves only a temporary
    file, never a half-written run, and earlier runs are never touched.
    """
    stamp = run["started_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"
    path = Path(root) / key / f"{stamp}_{run['run_id'][:8]}_{safe}{RUN_SUFFIX}"
    write_json_atomic(path, run)
    return path


def saved_runs(root: Path, key: str) -> list[Path]:
    """Saved runs for one hardware key, oldest first."""
    folder = Path(root) / key
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == RUN_SUFFIX and p.name[0] != ".")


def find_run(root: Path, key: str, wanted: str | None) -> Path:
    """The run a user names: a path, a run id prefix or a saved name; default the latest
    run on this hardware key. An ambiguous or missing name is an error that lists choices."""
    if wanted and Path(wanted).is_file():
        return Path(wanted)
    runs = saved_runs(root, key)
    if not runs:
        raise ReportError(
            f"no saved run to compare with under {Path(root) / key} (this machine's key); "
            "save one first with --inferbudget-save NAME or --inferbudget-autosave"
        )
    if not wanted:
        return runs[-1]
    matches = [
        p for p in runs if p.stem.split("_", 2)[1].startswith(wanted) or p.stem.endswith(wanted)
    ]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(p.name for p in runs[-10:])
    problem = "matches several saved runs" if matches else "matches no saved run"
    raise ReportError(f"--inferbudget-compare={wanted!r} {problem}; saved runs: {listing}")


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
