"""Command-line options and ini keys, parsed once into a frozen Settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, EngineSpec
from pytest_inferbudget.errors import EngineSpecError


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("inferbudget", "inference efficiency budgets")
    group.addoption(
        "--inferbudget-engine",
        metavar="SPEC",
        default=None,
        help=f"engine for the session's fixtures, NAME:TARGET (default: ini inferbudget_engine, "
        f"else {DEFAULT_ENGINE_SPEC})",
    )
    group.addoption(
        "--inferbudget-json",
        metavar="PATH",
        default=None,
        help="write the run's report (budgets, verdicts, per-request samples) to PATH as JSON",
    )
    group.addoption(
        "--inferbudget-strict",
        action="store_true",
        default=False,
        help="fail budgets whose verdict is inconclusive instead of warning",
    )
    group.addoption(
        "--inferbudget-energy",
        metavar="METER",
        default=None,
        help="energy meter: auto (NVML, else RAPL, else none), nvml, rapl or off "
        "(default: ini inferbudget_energy, else auto)",
    )
    parser.addini("inferbudget_energy", help="default energy meter (auto)", default="auto")
    parser.addini(
        "inferbudget_rapl_root",
        help="powercap directory the RAPL meter reads (default /sys/class/powercap)",
        default="",
    )
    parser.addini(
        "inferbudget_engine",
        help=f"default engine spec NAME:TARGET (default {DEFAULT_ENGINE_SPEC})",
        default=DEFAULT_ENGINE_SPEC,
    )


@dataclass(frozen=True, slots=True)
class Settings:
    engine: str
    json_path: Path | None
    strict: bool = False
    energy: str = "auto"
    rapl_root: str | None = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        engine = config.getoption("inferbudget_engine") or config.getini("inferbudget_engine")
        try:
            EngineSpec.parse(str(engine))
        except EngineSpecError as exc:
            raise pytest.UsageError(str(exc)) from exc
        json_path = config.getoption("inferbudget_json")
        energy = config.getoption("inferbudget_energy") or config.getini("inferbudget_energy")
        return cls(
            engine=str(engine),
            json_path=Path(config.invocation_params.dir, json_path) if json_path else None,
            strict=bool(config.getoption("inferbudget_strict")),
            energy=str(energy),
            rapl_root=str(config.getini("inferbudget_rapl_root")) or None,
        )
