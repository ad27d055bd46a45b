"""Command-line options and ini keys, parsed once into a frozen Settings; stash keys.

PYTEST_DONT_REWRITE: loaded at every pytest start-up and holds no asserts, so pytest's
assertion rewriter is told to skip its pass over this module.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, EngineSpec
from pytest_inferbudget.engines.sweep import EngineChoice, engine_choices
from pytest_inferbudget.errors import EngineSpecError

SETTINGS: pytest.StashKey[Settings] = pytest.StashKey()

SANDBOX_CHOICES = ("auto", "bwrap", "unshare", "none")
"""``--inferbudget-sandbox``: the values of ``pytest_inferbudget.code.SandboxChoice``."""


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("inferbudget", "inference efficiency budgets")
    group.addoption(
        "--inferbudget-engine",
        metavar="SPEC",
        action="append",
        default=None,
        help=f"engine for the session's fixtures, NAME:TARGET (default: ini inferbudget_engine, "
        f"else {DEFAULT_ENGINE_SPEC}); repeat it to sweep several engines (each test that "
        "uses infer runs once per engine; ID=SPEC names one)",
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
        help="fail budgets whose verdict is inconclusive or unmeasured (no meter, a replay) "
        "instead of warning or skipping, and gated comparisons too small to judge",
    )
    group.addoption(
        "--inferbudget-energy",
        metavar="METER",
        default=None,
        help="energy meter: auto (NVML, else RAPL, else none), nvml, rapl or off "
        "(default: ini inferbudget_energy, else auto)",
    )
    group.addoption(
        "--inferbudget-save",
        metavar="NAME",
        default=None,
        help="save this run under the storage folder, keyed by hardware, as NAME",
    )
    group.addoption(
        "--inferbudget-autosave",
        action="store_true",
        default=False,
        help="save this run (named after the git commit when there is one)",
    )
    group.addoption(
        "--inferbudget-compare",
        metavar="RUN",
        nargs="?",
        const="",
        default=None,
        help="compare with a saved run: a name (its latest run), run id prefix or path; "
        "alone, the latest run on this hardware key. Write it as --inferbudget-compare=RUN",
    )
    group.addoption(
        "--inferbudget-compare-latest",
        action="store_true",
        default=False,
        help="compare with the latest saved run on this hardware key (any name or branch)",
    )
    group.addoption(
        "--inferbudget-compare-missing",
        choices=("error", "warn"),
        default="error",
        help="when no baseline exists: error (default), or warn and run without comparing "
        "(a first run on a new runner)",
    )
    group.addoption(
        "--inferbudget-compare-fail",
        metavar="METRIC:THRESHOLD",
        action="append",
        type=parse_compare_fail,
        default=[],
        help="fail the run when METRIC regressed significantly by more than THRESHOLD "
        "(e.g. ms_per_request:10%%); repeatable",
    )
    group.addoption(
        "--inferbudget-compare-history",
        metavar="N",
        type=_history_window,
        default=10,
        help="judge timing changes also against the run-to-run variation of the last N "
        "saved runs on this hardware key (at least 3 runs of a test; 0 turns it off; "
        "default 10)",
    )
    group.addoption(
        "--inferbudget-ab",
        metavar="SPEC",
        default=None,
        help="interleaved A/B: serve every engine call also from the engine SPEC, the two "
        "in random order, and compare each test's requests paired (SPEC against the "
        "session's engine); --inferbudget-compare-fail gates it",
    )
    group.addoption(
        "--inferbudget-compare-any-hardware",
        action="store_true",
        default=False,
        help="allow comparing with a run saved on other hardware",
    )
    group.addoption(
        "--inferbudget-md", metavar="PATH", default=None, help="write a Markdown report to PATH"
    )
    group.addoption(
        "--inferbudget-html",
        metavar="PATH",
        default=None,
        help="write a self-contained HTML report with plots to PATH",
    )
    group.addoption(
        "--inferbudget-html-url",
        metavar="URL",
        default=None,
        help="where the Markdown report links for the HTML report (a CI artifact's "
        "address); default: the HTML file's path relative to the Markdown file",
    )
    group.addoption(
        "--inferbudget-profile",
        metavar="PATH",
        default=None,
        help="runtime profile from `inferbudget calibrate`, for idealized_ms_per_request",
    )
    group.addoption(
        "--inferbudget-accelerator",
        metavar="NAME",
        default=None,
        help="hardware for roofline_ratio: h100-sxm, a100-80gb, ... or cpu:GFLOPS:GBS",
    )
    group.addoption(
        "--inferbudget-record",
        metavar="PATH",
        default=None,
        help="write every recorded request and its generations to the cassette PATH",
    )
    group.addoption(
        "--inferbudget-replay",
        metavar="PATH",
        default=None,
        help="serve generations from the cassette PATH with no model; time and energy "
        "budgets are then unmeasured",
    )
    parser.addini(
        "inferbudget_vllm_server_model",
        help="model of the vllm_server fixture: the default model's alias or a folder",
        default="smollm2-135m-instruct",
    )
    parser.addini(
        "inferbudget_vllm_server_args",
        type="args",
        help="arguments of the vllm_server fixture's server, replacing its defaults",
        default=[],
    )
    group.addoption(
        "--inferbudget-sandbox",
        choices=SANDBOX_CHOICES,
        default=None,
        help="containment of model-written code run by infer.score_code: auto (bubblewrap, "
        "else unshare, else refuse), bwrap, unshare, or none (uncontained; every score is "
        "marked so) (default: ini inferbudget_sandbox, else auto)",
    )
    parser.addini(
        "inferbudget_sandbox",
        help=f"default containment of generated code: {', '.join(SANDBOX_CHOICES)} (auto)",
        default="auto",
    )
    parser.addini("inferbudget_profile", help="default runtime profile path", default="")
    parser.addini("inferbudget_accelerator", help="default accelerator", default="")
    parser.addini(
        "inferbudget_storage", help="folder of saved runs (default .inferbudget)", default=""
    )
    parser.addini("inferbudget_energy", help="default energy meter (auto)", default="auto")
    parser.addini(
        "inferbudget_rapl_root",
        help="powercap directory the RAPL meter reads (default /sys/class/powercap)",
        default="",
    )
    parser.addini(
        "inferbudget_engine",
        type="linelist",
        help=f"default engine spec NAME:TARGET (default {DEFAULT_ENGINE_SPEC}); several "
        "(a list, or one per line) sweep them",
        default=[DEFAULT_ENGINE_SPEC],
    )


def _history_window(text: str) -> int:
    try:
        runs = int(text)
    except ValueError:
        runs = -1
    if runs < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of saved runs (0 or more)")
    return runs


def parse_compare_fail(text: str) -> tuple[str, float]:
    """``ms_per_request:10%`` or ``ms_per_request:0.1`` -> ("ms_per_request", 0.1)."""
    from pytest_inferbudget.budget import COMPARED_KEYS

    metric, sep, value = text.partition(":")
    if not sep or metric not in COMPARED_KEYS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not METRIC:THRESHOLD with METRIC one of {', '.join(COMPARED_KEYS)}"
        )
    try:
        threshold = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: threshold must be a number or a percentage such as 10%"
        ) from exc
    if not threshold >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: threshold must be 0 or more")
    return metric, threshold


@dataclass(frozen=True, slots=True)
class Settings:
    """Every option and ini key of the plugin, read once at configure."""

    engine: str
    """The (first) engine's spec."""
    json_path: Path | None
    strict: bool = False
    energy: str = "auto"
    rapl_root: str | None = None
    save: str | None = None
    """The name given to --inferbudget-save; None when none was given."""
    autosave: bool = False
    """Save the run named after the git commit (``--inferbudget-autosave``)."""
    storage: Path = Path(".inferbudget")
    compare: str | None = None
    """None: no comparison; "": the latest saved run on this hardware; else a run."""
    compare_missing_ok: bool = False
    compare_fail: tuple[tuple[str, float], ...] = ()
    compare_any_hardware: bool = False
    ab: str | None = None
    """``--inferbudget-ab``: the engine spec served beside the session's, interleaved."""
    compare_history: int = 10
    """How many of the latest saved runs on this hardware key estimate run-to-run
    variation (``--inferbudget-compare-history``); 0: none."""
    markdown_path: Path | None = None
    html_path: Path | None = None
    html_url: str = ""
    """``--inferbudget-html-url``: the Markdown report's link to the HTML report."""
    profile_path: Path | None = None
    accelerator: str | None = None
    record_path: Path | None = None
    replay_path: Path | None = None
    sandbox: str = "auto"
    """Containment of generated code (``--inferbudget-sandbox``): auto, bwrap, unshare, none."""
    engines: tuple[EngineChoice, ...] = ()
    """Every engine of the session with its id; more than one is an engine sweep."""

    @property
    def sweep(self) -> bool:
        """Several engines: every test that uses ``infer`` runs once per engine."""
        return len(self.engines) > 1

    @property
    def writes_reports(self) -> bool:
        """Whether the run writes a report or saves itself."""
        return self.saves or any((self.json_path, self.markdown_path, self.html_path))

    @property
    def saves(self) -> bool:
        """Whether the run is saved: under ``save``'s name, else (autosave) its commit's."""
        return self.save is not None or self.autosave

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        texts = config.getoption("inferbudget_engine") or config.getini("inferbudget_engine")
        try:
            engines = engine_choices([str(t) for t in texts] or [DEFAULT_ENGINE_SPEC])
        except EngineSpecError as exc:
            raise pytest.UsageError(f"--inferbudget-engine: {exc}") from exc
        engine = engines[0].spec
        record_path = _path(config, config.getoption("inferbudget_record"))
        replay_path = _path(config, config.getoption("inferbudget_replay"))
        if replay_path:  # the cassette is the engine
            engine = f"replay:{replay_path}"
        try:
            spec = EngineSpec.parse(str(engine))
        except EngineSpecError as exc:
            raise pytest.UsageError(str(exc)) from exc
        if spec.name == "replay":
            replay_path = Path(spec.target)
        if len(engines) > 1:
            _check_sweep(config, engines, replay_path, record_path)
        else:
            engines = (engines[0]._replace(spec=str(engine)),)
        if record_path and replay_path:
            raise pytest.UsageError(
                "--inferbudget-record and --inferbudget-replay exclude each other: record "
                "with a real engine, then replay the cassette in another run"
            )
        json_path = config.getoption("inferbudget_json")
        energy = config.getoption("inferbudget_energy") or config.getini("inferbudget_energy")
        compare = _compare_choice(config)
        autosave = bool(config.getoption("inferbudget_autosave"))
        save = config.getoption("inferbudget_save")
        if save is not None and autosave:
            raise pytest.UsageError(
                f"--inferbudget-save {save} and --inferbudget-autosave both name the saved "
                "run; give one (autosave names it after the git commit)"
            )
        return cls(
            engine=str(engine),
            json_path=_path(config, json_path),
            strict=bool(config.getoption("inferbudget_strict")),
            energy=str(energy),
            save=save,
            autosave=autosave,
            storage=Path(config.rootpath, config.getini("inferbudget_storage") or ".inferbudget"),
            compare=compare,
            compare_missing_ok=config.getoption("inferbudget_compare_missing") == "warn",
            compare_fail=tuple(config.getoption("inferbudget_compare_fail")),
            compare_any_hardware=bool(config.getoption("inferbudget_compare_any_hardware")),
            compare_history=int(config.getoption("inferbudget_compare_history")),
            ab=_ab_choice(config, spec),
            markdown_path=_path(config, config.getoption("inferbudget_md")),
            html_path=_path(config, config.getoption("inferbudget_html")),
            html_url=config.getoption("inferbudget_html_url") or "",
            profile_path=_path(
                config,
                config.getoption("inferbudget_profile") or config.getini("inferbudget_profile"),
            ),
            accelerator=config.getoption("inferbudget_accelerator")
            or config.getini("inferbudget_accelerator")
            or None,
            rapl_root=str(config.getini("inferbudget_rapl_root")) or None,
            record_path=record_path,
            replay_path=replay_path,
            sandbox=_sandbox_choice(config),
            engines=engines,
        )


def _check_sweep(
    config: pytest.Config,
    engines: tuple[EngineChoice, ...],
    replay_path: Path | None,
    record_path: Path | None,
) -> None:
    """What an engine sweep cannot be combined with, said before any engine loads."""
    for choice in engines:
        try:
            EngineSpec.parse(choice.spec)
        except EngineSpecError as exc:
            raise pytest.UsageError(f"--inferbudget-engine: {exc}") from exc
    if replay_path or any(EngineSpec.parse(c.spec).name == "replay" for c in engines):
        raise pytest.UsageError(
            "an engine sweep (several --inferbudget-engine) times engines against each "
            "other; a replayed cassette has no timings: sweep real engines only"
        )
    if record_path:
        raise pytest.UsageError(
            "--inferbudget-record writes one engine's cassette; record with one "
            "--inferbudget-engine, not a sweep of several"
        )
    if config.getoption("inferbudget_ab"):
        raise pytest.UsageError(
            "--inferbudget-ab pairs two engines on every call and an engine sweep runs each "
            "test once per engine; use one of the two"
        )


def _sandbox_choice(config: pytest.Config) -> str:
    choice = str(config.getoption("inferbudget_sandbox") or config.getini("inferbudget_sandbox"))
    if choice not in SANDBOX_CHOICES:
        raise pytest.UsageError(
            f"inferbudget_sandbox = {choice!r} is not one of {', '.join(SANDBOX_CHOICES)}"
        )
    return choice


def _compare_choice(config: pytest.Config) -> str | None:
    """What to compare with: None, "" (the latest run) or a run; usage errors say why."""
    named = config.getoption("inferbudget_compare")
    latest = bool(config.getoption("inferbudget_compare_latest"))
    if named is not None and latest:
        raise pytest.UsageError(
            "--inferbudget-compare=RUN and --inferbudget-compare-latest exclude each other: "
            "name a run, or take the latest"
        )
    if named and _looks_like_test_path(config, named):
        raise pytest.UsageError(
            f"--inferbudget-compare took {named!r} as the run to compare with, but it is a "
            "test path; write --inferbudget-compare=RUN (or --inferbudget-compare-latest) "
            "and put test paths after it"
        )
    ab = config.getoption("inferbudget_ab")
    if config.getoption("inferbudget_compare_fail") and named is None and not latest and not ab:
        raise pytest.UsageError(
            "--inferbudget-compare-fail gates a comparison, but nothing is compared: add "
            "--inferbudget-compare=RUN, --inferbudget-compare-latest or --inferbudget-ab=SPEC"
        )
    return "" if latest else named  # "" (bare --inferbudget-compare): the latest run


def _ab_choice(config: pytest.Config, session: EngineSpec) -> str | None:
    """The second engine of an interleaved A/B run, checked like the first."""
    text = config.getoption("inferbudget_ab")
    if text is None:
        return None
    try:
        spec = EngineSpec.parse(str(text))
    except EngineSpecError as exc:
        raise pytest.UsageError(f"--inferbudget-ab: {exc}") from exc
    if spec.name == "replay" or session.name == "replay":
        raise pytest.UsageError(
            "--inferbudget-ab times two engines against each other; a replayed cassette "
            "has no timings: give two real engines"
        )
    return str(text)


def _looks_like_test_path(config: pytest.Config, value: str) -> bool:
    path = Path(config.invocation_params.dir, value.partition("::")[0])
    return path.is_dir() or (path.suffix == ".py" and path.exists())


def _path(config: pytest.Config, value: str | None) -> Path | None:
    return Path(config.invocation_params.dir, value) if value else None
