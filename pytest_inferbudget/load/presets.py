"""Published SLOs by name, and the terms an SLO may hold.

PYTEST_DONT_REWRITE: imported by the budget parser (at collection) when a marker names
an SLO; holds no asserts and imports nothing.

Every preset's limits are p99 limits: a preset is its terms and an attainment of 0.99,
the share of requests that must meet every term. Sources (docs/load.md cites them):
MLPerf Inference's LLM server-scenario latency constraints (mlcommons/inference,
``loadgen/mlperf.conf`` and the inference policies), and GuideLLM's SLO guide for chat.
"""

from __future__ import annotations

from typing import NamedTuple, final

SLO_TERMS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
"""What an SLO may bound, all in milliseconds per request: time to first token, time per
output token after the first, the largest gap between output chunks, end-to-end time."""


@final
class SloPreset(NamedTuple):
    terms: tuple[tuple[str, float], ...]
    attainment: float
    source: str


_MLPERF = "MLPerf Inference server scenario, p99 TTFT/TPOT (mlcommons/inference mlperf.conf)"

SLO_PRESETS: dict[str, SloPreset] = {
    "mlperf-llama2-70b": SloPreset((("ttft_ms", 2000.0), ("tpot_ms", 200.0)), 0.99, _MLPERF),
    "mlperf-llama2-70b-interactive": SloPreset(
        (("ttft_ms", 450.0), ("tpot_ms", 40.0)), 0.99, _MLPERF
    ),
    "mlperf-llama3.1-8b": SloPreset((("ttft_ms", 2000.0), ("tpot_ms", 100.0)), 0.99, _MLPERF),
    "mlperf-llama3.1-8b-interactive": SloPreset(
        (("ttft_ms", 500.0), ("tpot_ms", 30.0)), 0.99, _MLPERF
    ),
    "mlperf-llama3.1-405b": SloPreset((("ttft_ms", 6000.0), ("tpot_ms", 175.0)), 0.99, _MLPERF),
    "mlperf-llama3.1-405b-interactive": SloPreset(
        (("ttft_ms", 4500.0), ("tpot_ms", 80.0)), 0.99, _MLPERF
    ),
    "mlperf-mixtral-8x7b": SloPreset((("ttft_ms", 2000.0), ("tpot_ms", 200.0)), 0.99, _MLPERF),
    "mlperf-deepseek-r1": SloPreset((("ttft_ms", 2000.0), ("tpot_ms", 80.0)), 0.99, _MLPERF),
    "mlperf-deepseek-r1-interactive": SloPreset(
        (("ttft_ms", 1500.0), ("tpot_ms", 15.0)), 0.99, _MLPERF
    ),
    "guidellm-chat": SloPreset(
        (("ttft_ms", 200.0), ("itl_ms", 50.0)),
        0.99,
        "GuideLLM SLO guide, chat: TTFT <= 200 ms and ITL <= 50 ms for 99% of requests",
    ),
}
"""Named SLOs: ``slo="mlperf-llama3.1-8b"`` in a budget marker."""
