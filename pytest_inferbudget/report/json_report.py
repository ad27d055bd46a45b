"""The JSON report: one file per run, written atomically."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pytest_inferbudget.hardware import fingerprint, library_versions
from pytest_inferbudget.records import RunRecord
from pytest_inferbudget.storage import write_json_atomic


def write_report(run: RunRecord, path: Path) -> None:
    run.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    run.hardware = fingerprint()
    run.libraries = library_versions()
    write_json_atomic(path, run.to_dict())
