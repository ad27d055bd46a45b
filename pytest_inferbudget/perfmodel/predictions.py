"""Per-request predictions that make latency portable: HELM's idealized runtime from a
calibrated profile, and the roofline lower bound on the hardware named by the user.

The one place the performance model meets a test run: the ``inferbudget_metering``
fixture builds a :class:`Predictor` from the options and the recorder annotates each
response with it. The models it applies live in the modules beside it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_inferbudget.errors import InferBudgetError

if TYPE_CHECKING:
    from pytest_inferbudget.perfmodel.accelerators import Accelerator, CpuSpec
    from pytest_inferbudget.perfmodel.flops import ModelShape
    from pytest_inferbudget.perfmodel.profile import RuntimeProfile
    from pytest_inferbudget.records import Response


@dataclass(frozen=True, slots=True)
class Predictor:
    """Annotates each response with its idealized and roofline times and its memory-aware
    cost (eFLOPs), where configured."""

    profile: RuntimeProfile | None = None
    shape: ModelShape | None = None
    accelerator: Accelerator | CpuSpec | None = None

    def annotate(self, response: Response) -> Response:
        idealized = bound_ms = memory_aware = None
        prompt_tokens = response.prompt_tokens
        output_tokens = response.max_completion_tokens
        if self.profile is not None:
            from pytest_inferbudget.perfmodel.profile import predict_ms

            idealized = predict_ms(self.profile, prompt_tokens, output_tokens)
        if self.shape is not None and self.accelerator is not None:
            from pytest_inferbudget.perfmodel.flops import request_cost
            from pytest_inferbudget.perfmodel.roofline import eflops, roofline

            cost = request_cost(
                self.shape, prompt_tokens, output_tokens, batch_size=len(response.generations)
            )
            bound_ms = sum(phase.bound_ms for phase in roofline(cost, self.accelerator))
            memory_aware = eflops(cost, self.accelerator)
        return dataclasses.replace(
            response, idealized_ms=idealized, roofline_ms=bound_ms, eflops=memory_aware
        )


def build_predictor(
    engine_info: Mapping[str, Any], profile_path: Path | None, accelerator: str | None
) -> Predictor:
    profile = shape = chosen = None
    if profile_path is not None:
        from pytest_inferbudget.perfmodel.profile import RuntimeProfile

        profile = RuntimeProfile.load(profile_path)
    if accelerator:
        from pytest_inferbudget.perfmodel.accelerators import parse_accelerator

        chosen = parse_accelerator(accelerator)
        shape = model_shape(engine_info, "the roofline")
    return Predictor(profile, shape, chosen)


def model_shape(engine_info: Mapping[str, Any], needed_by: str) -> ModelShape:
    """The shape of the engine's model from its ``config.json`` (a local model folder)."""
    from pytest_inferbudget.perfmodel.flops import ModelShape

    config = Path(str(engine_info.get("model", ""))) / "config.json"
    if not config.is_file():
        raise InferBudgetError(f"{needed_by} needs the model's config.json, not found at {config}")
    return ModelShape.from_config(json.loads(config.read_text()), dtype=engine_info.get("dtype"))
