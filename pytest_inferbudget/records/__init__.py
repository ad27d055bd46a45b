"""Records: plain data of what a run asked, measured and concluded, with its JSON codec.

Every record converts to and from builtin types only (``to_dict`` / ``from_dict``), so
records cross xdist's wire, land in JSON reports and come back unchanged. ``None``
always means "not measured", never zero. The bottom layer: imports nothing of the
package but ``vocabulary``.
"""

from __future__ import annotations

from pytest_inferbudget.records.codec import decode_float, encode_float
from pytest_inferbudget.records.comparison import Comparison, MetricChange, TestComparison
from pytest_inferbudget.records.engine import EngineInfo
from pytest_inferbudget.records.information import TextLogprobs, TextMeasurement
from pytest_inferbudget.records.load import (
    CapacityProbe,
    CapacitySearch,
    LoadRequest,
    LoadRun,
    Saturation,
)
from pytest_inferbudget.records.machine import MachineLoad
from pytest_inferbudget.records.requests import (
    ENTROPY_SOURCES,
    MAX_TOP_LOGPROBS,
    TOKEN_SOURCES,
    EntropySource,
    Generation,
    Prompt,
    Request,
    Response,
    Score,
    TokenSource,
    TopLogprobs,
    Trace,
    tpot_ms,
)
from pytest_inferbudget.records.results import (
    SCHEMA_VERSION,
    BudgetResult,
    CommitInfo,
    Judgement,
    RunRecord,
    TestRecord,
)
from pytest_inferbudget.records.speculation import Speculation

__all__ = [
    "ENTROPY_SOURCES",
    "MAX_TOP_LOGPROBS",
    "SCHEMA_VERSION",
    "TOKEN_SOURCES",
    "BudgetResult",
    "CapacityProbe",
    "CapacitySearch",
    "CommitInfo",
    "Comparison",
    "EngineInfo",
    "EntropySource",
    "Generation",
    "Judgement",
    "LoadRequest",
    "LoadRun",
    "MachineLoad",
    "MetricChange",
    "Prompt",
    "Request",
    "Response",
    "RunRecord",
    "Saturation",
    "Score",
    "Speculation",
    "TestComparison",
    "TestRecord",
    "TextLogprobs",
    "TextMeasurement",
    "TokenSource",
    "TopLogprobs",
    "Trace",
    "decode_float",
    "encode_float",
    "tpot_ms",
]
