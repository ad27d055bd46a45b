"""How well an idealized-runtime profile predicts requests it was not calibrated on.

For each engine (the transformers engine and vLLM in process, both on the default model),
``pytest_inferbudget.perfmodel.calibrate`` times the calibration grid (HELM's prompt
lengths 1, 256, 512, 1024, 1536 by default; output lengths 8 and 32; repeats; a warm-up)
and fits the profile, exactly as ``inferbudget calibrate`` does. Then held-out requests,
whose prompt and output lengths are all off the grid (in between its lengths, and output
lengths the grid never asked for), are timed on the same engine, and each one's measured
end-to-end time is compared with the profile's prediction from its token counts:

    APE = |predicted - measured| / measured,   MAPE = mean APE over the held-out requests

Three fits of the same calibration samples are scored: HELM's model (``f(p) + g (o - 1)``)
fitted to each grid cell's median (``calibrate``'s default), the same by least squares over
every sample (``statistic="mean"``), and the denoised one with a fixed per-request overhead
(``overhead=True``); the profile keeps the first, as ``inferbudget calibrate`` does, unless
``--overhead`` is given. Prints JSON on stdout (progress and vLLM's logs go to stderr).

    python tests/bench/idealized_mape.py [--engines transformers,vllm] [--repeats 3]
        [--prompt-lengths 1,256,512,1024,1536] [--output-lengths 8,32]
        [--held-out-repeats 2] [--overhead] [--torch-threads N]

Held-out prompts are natural English text (not the calibration's repeated word), sized
with the engine's tokenizer to about the wanted number of tokens, each starting at a
different word so that no request is served from vLLM's prefix cache (the profile predicts
uncached prefill; calibration itself starts every prompt differently for the same reason).
Predictions use the prompt and completion token counts each engine reports, so a
generation that stops early is still predicted correctly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from pytest_inferbudget import hardware
from pytest_inferbudget.engines import DEFAULT_ENGINE_SPEC, Engine, EngineSpec
from pytest_inferbudget.perfmodel import (
    DEFAULT_OUTPUT_LENGTHS,
    DEFAULT_REPEATS,
    PROMPT_LENGTHS,
    RuntimeFit,
    RuntimeProfile,
    calibrate,
    fit_profile,
    predict_ms,
)
from pytest_inferbudget.records import Request

ENGINE_SPECS = {
    "transformers": DEFAULT_ENGINE_SPEC,
    "vllm": "vllm:smollm2-135m-instruct",
}

HELD_OUT: tuple[tuple[int, int], ...] = (
    (16, 24),
    (96, 12),
    (180, 40),
    (300, 6),
    (420, 20),
    (600, 16),
    (800, 10),
    (1100, 24),
    (1300, 4),
    (1450, 14),
)
"""(prompt tokens, output tokens) asked for: every prompt length between two calibrated
ones, every output length off the grid (shorter, between and longer)."""

PASSAGE = (
    "The lighthouse keeper climbed the narrow stairs every evening, counting the steps "
    "as his father had taught him, and wound the great clockwork that turned the lamp. "
    "From the gallery he could see the fishing boats coming home across the bay, their "
    "sails dark against the sunset, and the gulls circling over the harbour where the "
    "market stalls were closing for the night. In winter the storms came from the north "
    "and the waves broke high over the rocks, so he kept a log of the wind, the tide and "
    "every ship that passed, writing slowly in a careful hand by the light of the lamp."
)


def say(line: str) -> None:
    print(f"[idealized_mape] {line}", file=sys.stderr, flush=True)


def make_engine(name: str) -> Engine:
    spec = EngineSpec.parse(ENGINE_SPECS[name])
    if name == "vllm":
        # built directly, so the bench runs whether or not the engine is registered
        from pytest_inferbudget.engines.vllm import VllmEngine

        return VllmEngine.from_spec(spec, say)
    from pytest_inferbudget.engines import create_engine

    return create_engine(spec, say)


def count_tokens(engine: Engine) -> Callable[[str], int]:
    """The engine's own count for a raw prompt, from its tokenizer (both engines tokenize
    raw text with ``add_special_tokens=True``). A probe request would put the prompt in
    vLLM's prefix cache and make the timed request that follows a cache hit."""
    tokenizer: Any = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        raise SystemExit(f"{engine.spec} exposes no tokenizer to size held-out prompts")

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    return count


def held_out_prompt(count: Callable[[str], int], target: int, offset: int, avoid: set[int]) -> str:
    """Natural text of about ``target`` tokens, never of a calibrated length, starting at
    word ``offset`` of the passage: a distinct start per request, so no request shares a
    cached prefix with another."""
    words = PASSAGE.split()

    def text(n: int) -> str:
        return " ".join(words[(offset + i) % len(words)] for i in range(n))

    n = max(1, round(target * 0.75))
    for _ in range(6):  # correct the word count from the measured tokens per word
        tokens = count(text(n))
        if abs(tokens - target) <= max(2, target // 50):
            break
        n = max(1, round(n * target / tokens))
    while count(text(n)) in avoid:
        n += 1
    return text(n)


def score(fit: RuntimeProfile | RuntimeFit, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Absolute percentage errors of ``fit`` on the measured held-out rows."""
    errors = []
    for row in rows:
        predicted = predict_ms(fit, row["prompt_tokens"], row["output_tokens"])
        errors.append(100.0 * abs(predicted - row["measured_ms"]) / row["measured_ms"])
    diagnostics = fit.diagnostics
    return {
        "mape_pct": round(statistics.fmean(errors), 2),
        "median_ape_pct": round(statistics.median(errors), 2),
        "max_ape_pct": round(max(errors), 2),
        "r_squared": None if diagnostics is None else diagnostics.r_squared,
        "r_squared_prompt": None if diagnostics is None else diagnostics.r_squared_prompt,
        "r_squared_decode": None if diagnostics is None else diagnostics.r_squared_decode,
        "prompt_ms": {str(k): round(v, 2) for k, v in fit.prompt_ms.items()},
        "per_output_token_ms": round(fit.per_output_token_ms, 3),
        "overhead_ms": None if fit.overhead_ms is None else round(fit.overhead_ms, 2),
    }


def run_engine(name: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    engine = make_engine(name)
    load_s = time.perf_counter() - started
    try:
        profile = calibrate(
            engine,
            prompt_lengths=args.prompt_lengths,
            output_lengths=args.output_lengths,
            repeats=args.repeats,
            warmup=args.warmup,
            overhead=args.overhead,
            progress=say,
        )
        count = count_tokens(engine)
        calibrated = set(profile.prompt_lengths)
        rows: list[dict[str, Any]] = []
        held_started = time.perf_counter()
        for repeat in range(args.held_out_repeats):
            for index, (p, o) in enumerate(HELD_OUT):
                offset = 7 * (repeat * len(HELD_OUT) + index)
                text = held_out_prompt(count, p, offset, calibrated)
                generation = engine.generate([Request(text, max_new_tokens=o, chat=False)])[
                    0
                ].generations[0]
                if generation.e2e_ms is None:
                    raise SystemExit(f"{name} reported no e2e_ms")
                measured = generation.e2e_ms
                predicted = predict_ms(
                    profile, generation.prompt_tokens, generation.completion_tokens
                )
                row = {
                    "repeat": repeat,
                    "prompt_tokens": generation.prompt_tokens,
                    "output_tokens": generation.completion_tokens,
                    "max_new_tokens": o,
                    "measured_ms": measured,
                    "ttft_ms": generation.ttft_ms,
                    "predicted_ms": predicted,
                    "ape_pct": round(100 * abs(predicted - measured) / measured, 2),
                }
                rows.append(row)
                say(
                    f"{name} held-out p={row['prompt_tokens']} o={row['output_tokens']}: "
                    f"{measured:.1f} ms measured, {predicted:.1f} predicted"
                )
        held_s = time.perf_counter() - held_started
        info = engine.describe()
    finally:
        engine.close()
    samples = profile.samples()
    lengths = profile.prompt_lengths
    variants = {
        "helm": score(fit_profile(samples, lengths), rows),
        "helm_least_squares": score(fit_profile(samples, lengths, statistic="mean"), rows),
        "denoised": score(fit_profile(samples, lengths, overhead=True), rows),
    }
    kept = variants["denoised" if args.overhead else "helm"]
    grid = {(s.prompt_tokens, s.output_tokens) for s in samples}
    off_grid = all((r["prompt_tokens"], r["output_tokens"]) not in grid for r in rows)
    return {
        "spec": engine.spec,
        "engine": {k: v for k, v in info.items() if k != "model"},
        "profile_fit": "denoised" if args.overhead else "helm",
        "mape_pct": kept["mape_pct"],
        "r_squared": kept["r_squared"],
        "variants": variants,
        "held_out_requests": len(rows),
        "held_out_prompt_lengths_off_grid": all(r["prompt_tokens"] not in calibrated for r in rows),
        "held_out_cells_off_grid": off_grid,
        "calibration_samples": len(samples),
        "load_s": round(load_s, 1),
        "calibration_s": profile.calibration.get("duration_s"),
        "held_out_s": round(held_s, 1),
        "hardware_key": profile.hardware_key,
        "requests": rows,
        "calibration_table": [row.to_dict() for row in profile.table],
    }


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="transformers,vllm")
    parser.add_argument("--prompt-lengths", type=int_list, default=PROMPT_LENGTHS)
    parser.add_argument("--output-lengths", type=int_list, default=DEFAULT_OUTPUT_LENGTHS)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--held-out-repeats", type=int, default=2)
    parser.add_argument(
        "--overhead", action="store_true", help="keep the denoised fit (default: HELM's plain one)"
    )
    parser.add_argument("--torch-threads", type=int, default=None)
    args = parser.parse_args(argv)
    engines = [name for name in args.engines.split(",") if name]
    unknown = set(engines) - set(ENGINE_SPECS)
    if unknown:
        parser.error(f"unknown engine(s) {', '.join(sorted(unknown))}")
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    # vLLM logs to stdout, in this process and in its engine core: send all of it to
    # stderr at the descriptor level, and print the JSON alone on the real stdout
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    fingerprint = hardware.fingerprint()
    load_before = os.getloadavg()
    results = {name: run_engine(name, args) for name in engines}
    report = {
        "bench": "idealized_mape",
        "machine": {
            "cpu_model": fingerprint.get("cpu_model"),
            "cpu_count": fingerprint.get("cpu_count"),
            "python": platform.python_version(),
            "torch_threads": args.torch_threads,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "calibration_grid": {
            "prompt_lengths": list(args.prompt_lengths),
            "output_lengths": list(args.output_lengths),
            "repeats": args.repeats,
            "warmup": args.warmup,
        },
        "held_out_asked": [list(cell) for cell in HELD_OUT],
        "held_out_repeats": args.held_out_repeats,
        "target_mape_pct": 10.0,
        "summary": {
            name: {
                "mape_pct": result["mape_pct"],
                "r_squared": result["r_squared"],
                "fit": result["profile_fit"],
                "helm_mape_pct": result["variants"]["helm"]["mape_pct"],
                "helm_least_squares_mape_pct": result["variants"]["helm_least_squares"]["mape_pct"],
                "denoised_mape_pct": result["variants"]["denoised"]["mape_pct"],
            }
            for name, result in results.items()
        },
        "engines": results,
    }
    json_out.write(json.dumps(report, indent=2) + "\n")
    json_out.flush()


if __name__ == "__main__":  # vLLM spawns its engine core: the guard is required
    main()
