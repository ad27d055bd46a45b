"""Performance models: what a request *should* cost, as opposed to what a meter measured.

- :mod:`~pytest_inferbudget.perfmodel.flops`: FLOPs and bytes of a request from the model's
  shape;
- :mod:`~pytest_inferbudget.perfmodel.accelerators`: peak FLOP/s and bandwidth of devices;
- :mod:`~pytest_inferbudget.perfmodel.roofline`: the lower bound those two imply;
- :mod:`~pytest_inferbudget.perfmodel.profile`, :mod:`~pytest_inferbudget.perfmodel.fit`,
  :mod:`~pytest_inferbudget.perfmodel.calibrate`: HELM's idealized runtime (the profile
  and prediction, the fit, the timing run that feeds it);
- :mod:`~pytest_inferbudget.perfmodel.predictions`: the one place they meet a test run.

Only the standard library is imported; nothing here is loaded at pytest start-up.
"""

from __future__ import annotations

from pytest_inferbudget.errors import (
    CalibrationError,
    FitError,
    FlopsError,
    ProfileError,
)
from pytest_inferbudget.perfmodel.accelerators import (
    ACCELERATORS,
    Accelerator,
    CpuSpec,
    parse_accelerator,
)
from pytest_inferbudget.perfmodel.calibrate import (
    DEFAULT_OUTPUT_LENGTHS,
    DEFAULT_REPEATS,
    QUICK_OUTPUT_LENGTHS,
    QUICK_PROMPT_LENGTHS,
    QUICK_REPEATS,
    calibrate,
)
from pytest_inferbudget.perfmodel.fit import FIT_METHODS, FIT_STATISTICS, build_profile, fit_profile
from pytest_inferbudget.perfmodel.flops import (
    DTYPE_BYTES,
    ModelShape,
    PhaseCost,
    RequestCost,
    mean_token_flops,
    request_cost,
)
from pytest_inferbudget.perfmodel.profile import (
    PROFILE_SCHEMA_VERSION,
    PROMPT_LENGTHS,
    CalibrationRow,
    FitDiagnostics,
    RuntimeFit,
    RuntimeProfile,
    TimingSample,
    predict_ms,
)
from pytest_inferbudget.perfmodel.roofline import (
    PhaseBound,
    eflops,
    hardware_intensity,
    roofline,
    roofline_ms,
)

__all__ = [
    "ACCELERATORS",
    "DEFAULT_OUTPUT_LENGTHS",
    "DEFAULT_REPEATS",
    "DTYPE_BYTES",
    "FIT_METHODS",
    "FIT_STATISTICS",
    "PROFILE_SCHEMA_VERSION",
    "PROMPT_LENGTHS",
    "QUICK_OUTPUT_LENGTHS",
    "QUICK_PROMPT_LENGTHS",
    "QUICK_REPEATS",
    "Accelerator",
    "CalibrationError",
    "CalibrationRow",
    "CpuSpec",
    "FitDiagnostics",
    "FitError",
    "FlopsError",
    "ModelShape",
    "PhaseBound",
    "PhaseCost",
    "ProfileError",
    "RequestCost",
    "RuntimeFit",
    "RuntimeProfile",
    "TimingSample",
    "build_profile",
    "calibrate",
    "eflops",
    "fit_profile",
    "hardware_intensity",
    "mean_token_flops",
    "parse_accelerator",
    "predict_ms",
    "request_cost",
    "roofline",
    "roofline_ms",
]
