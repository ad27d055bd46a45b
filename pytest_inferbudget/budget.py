"""Budget specs: parsed and checked at collection, so a typo fails before any model loads.

PYTEST_DONT_REWRITE: loaded at start-up and holds no asserts; this skips pytest's pass.

A budget marker holds limits (``ms_per_request=1500``, ``pass_at_k=(4, 0.5)``) and
modifiers (``stat="p95"``, ``confidence=0.95``). A marker's modifiers apply to the limits
in that same marker, so one test can hold a mean and a tail limit on the same key
through two markers; the same key with the same statistic given two different limits is
a conflict.

Two families of keys: *cost* keys sample each trace (one logical request) the test
recorded; *accuracy* keys aggregate the scores given with ``infer.score``.

Longer than 500 lines because the key table and the marker parser that checks every key
against it are one concept. This module is all that ``pytest --co`` loads of budgets, so it
stays cheap to import: key tables and value objects are named tuples (a slotted dataclass
costs about a millisecond to build at import). Judging records against the limits lives in
:mod:`pytest_inferbudget.verdicts`, imported once a budgeted test has run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, final

import pytest

from pytest_inferbudget.errors import BudgetSpecError
from pytest_inferbudget.vocabulary import STATISTICS, Direction, Statistic

if TYPE_CHECKING:
    from pytest_inferbudget.records import Trace

DEFAULT_STAT = Statistic.MEAN.value
COST_UNITS = ("tokens", "ms", "eflops", "answer_tokens", "reasoning_tokens")
"""What a sample's cost can be counted in (energy joins when the meters record it);
``eflops`` is Kinetics' memory-aware cost, predicted with ``--inferbudget-accelerator``;
``answer_tokens`` / ``reasoning_tokens`` count one part of a reasoning model's tokens."""
TOKEN_COST_UNITS = ("tokens", "answer_tokens", "reasoning_tokens")
"""The cost units E3 can count in (it divides by generated tokens)."""

Sampler = Callable[["Trace", str], "Sequence[float | None]"]
"""Reads one trace's samples of a key; the ``str`` is the budget's ``energy=`` kind."""
Totals = Callable[["Trace", str], "tuple[float | None, float]"]
"""Reads one trace's (numerator, denominator) of a ratio of totals."""


@final
class Key(NamedTuple):
    """One budget key: THE row every other list (markers, verdicts, comparison, docs)
    derives from. Adding a key means adding a row here, with its sampler."""

    unit: str
    """What the limit is counted in; "" for a pure number (pass@k)."""
    sample: Sampler | None = None
    """Cost keys: the trace's samples. None for accuracy keys (computed from scores)."""
    totals: Totals | None = None
    """A ratio of totals over the test (J/token: all energy over all tokens), instead of
    a statistic of per-trace samples."""
    direction: Direction = Direction.AT_MOST
    fixed_stat: str | None = None
    """Set for keys whose statistic is part of their meaning (``max_tokens`` is a maximum)."""
    bounded: bool = False
    """Token counts are bounded by ``max_new_tokens``, which allows confident means."""
    needs_hardware: bool = False
    """Measured by a hardware meter: unmeasured here means skipped, not failed (unless
    strict), since the machine, not the code, lacks what the budget needs."""
    compared: bool = False
    """Compared across saved runs (``--inferbudget-compare``), per trace."""
    takes_k: bool = False
    """Accuracy keys given as ``(k, floor)``."""
    ratio: bool = False
    """A ratio of two random quantities (cost-of-pass, E3): no confident verdict."""
    deterministic: bool = False
    """Equal requests give equal values under greedy decoding (token counts): compared on
    the point change when no test can reach significance."""
    unmeasured_hint: str = ""
    """Why a trace may carry no sample of it, for the verdict's reason."""
    load_sensitive: bool = False
    """Other load on the machine moves it (wall-clock times; and the CPU time of an engine
    whose threads spin while they wait for a busy core): a comparison between runs under
    different load calls its change inconclusive."""
    load: bool = False
    """Judged on the test's load runs (``load.run``, ``load.find_max_rate``) against the
    marker's ``slo=`` (docs/load.md), not per trace or per score."""
    text: bool = False
    """Judged on the texts the test measured with ``infer.measure_text`` (the marker's
    ``text=`` picks one by name), not per trace or per score."""
    paired: bool = False
    """Judged on two strategies' scores of the same problems, paired per problem: the
    marker's ``versus=`` names the baseline strategy (docs/strategies.md)."""

    @property
    def accuracy(self) -> bool:
        return self.sample is None and self.totals is None and not self.load and not self.text


def _energy_totals(trace: Trace, kind: str) -> tuple[float | None, float]:
    """Energy over the measured windows per output token, as vLLM's and Zeus's meters
    report it: a ratio of totals, not a mean of per-request ratios."""
    return trace.bounded_energy(kind), float(trace.completion_tokens)


def _acceptance_totals(trace: Trace, _: str) -> tuple[float | None, float]:
    """All accepted draft tokens over all drafted ones, as vLLM's counters give it."""
    found = trace.speculation
    return (None, 0.0) if found is None else (float(found.accepted), float(found.drafted))


def _accept_length_totals(trace: Trace, _: str) -> tuple[float | None, float]:
    """Tokens emitted by the verification steps (accepted + one per step) over the steps."""
    found = trace.speculation
    if found is None:
        return None, 0.0
    return float(found.accepted + found.steps), float(found.steps)


_SPEC_HINT = (
    "no speculative decoding was counted: turn it on in the engine spec (vllm "
    "?speculative=ngram, transformers ?prompt_lookup_num_tokens=N, openai ?spec_metrics=true "
    "on a vLLM server with --speculative-config; docs/speculative.md)"
)

_ENERGY_HINT = (
    "no energy within its error bound: no meter measured it, or the windows were too short "
    "for the energy counter to resolve within 10% (batch more requests per engine call)"
)

KEYS: dict[str, Key] = {
    "max_tokens": Key(
        "tokens", lambda t, _: [g.completion_tokens for g in t.generations], fixed_stat="max"
    ),
    "tokens_per_request": Key(
        "tokens",
        lambda t, _: [t.completion_tokens],
        bounded=True,
        compared=True,
        deterministic=True,
    ),
    "prompt_tokens_per_request": Key(
        "tokens", lambda t, _: [t.prompt_tokens], compared=True, deterministic=True
    ),
    "ms_per_request": Key(
        "ms",
        lambda t, _: [t.e2e_ms],
        compared=True,
        load_sensitive=True,
        unmeasured_hint="the engine measured no end-to-end time (replayed results carry none)",
    ),
    "ttft_ms": Key(
        "ms",
        lambda t, _: [t.ttft_ms],
        compared=True,
        load_sensitive=True,
        unmeasured_hint="the engine measured no time to first token",
    ),
    "tpot_ms": Key(
        "ms",
        lambda t, _: [t.tpot_ms],
        compared=True,
        load_sensitive=True,
        unmeasured_hint="time per output token needs a completion of two or more tokens",
    ),
    "reasoning_tokens": Key(
        "tokens",
        lambda t, _: [t.reasoning_tokens],
        bounded=True,
        compared=True,
        deterministic=True,
        unmeasured_hint="the reasoning tokens were not counted: the server sent reasoning but "
        "no usage per chunk or in completion_tokens_details, and no tokenizer is known "
        "(name one with ?tokenizer=FOLDER)",
    ),
    "answer_tokens": Key(
        "tokens",
        lambda t, _: [t.answer_tokens],
        bounded=True,
        compared=True,
        deterministic=True,
        unmeasured_hint="the reasoning tokens were not counted, so neither were the answer's",
    ),
    "ttfat_ms": Key(
        "ms",
        lambda t, _: [t.ttfat_ms],
        compared=True,
        load_sensitive=True,
        unmeasured_hint="no first answer token: the completion ended inside its reasoning "
        "(raise max_new_tokens), or the engine timed no tokens (unstreamed or replayed)",
    ),
    "cpu_ms_per_request": Key(
        "ms",
        lambda t, _: [t.cpu_ms],
        compared=True,
        load_sensitive=True,
        unmeasured_hint="no CPU time: the engine is a server this session did not start, or "
        "the results were replayed",
    ),
    "joules_per_token": Key(
        "J/token",
        totals=_energy_totals,
        fixed_stat="total",
        needs_hardware=True,
        unmeasured_hint=_ENERGY_HINT,
    ),
    "joules_per_request": Key(
        "J",
        lambda t, kind: [t.bounded_energy(kind)],
        needs_hardware=True,
        unmeasured_hint=_ENERGY_HINT,
    ),
    "idealized_ms_per_request": Key(
        "ms",
        lambda t, _: [t.idealized_ms],
        unmeasured_hint="no runtime profile: pass --inferbudget-profile PATH (make one with "
        "`inferbudget calibrate --engine SPEC --out PATH`)",
    ),
    "roofline_ratio": Key(
        "x",
        lambda t, _: [t.roofline_ratio],
        unmeasured_hint="no hardware bound: pass --inferbudget-accelerator NAME "
        "(or cpu:PEAK_GFLOPS:BANDWIDTH_GBS)",
    ),
    "eflops_per_request": Key(
        "eFLOPs",
        lambda t, _: [t.eflops],
        compared=True,
        deterministic=True,
        unmeasured_hint="no hardware to price bytes against: pass --inferbudget-accelerator "
        "NAME (or cpu:PEAK_GFLOPS:BANDWIDTH_GBS)",
    ),
    "peak_memory_mb": Key(
        "MB",
        lambda t, _: [t.peak_memory_mb],
        fixed_stat="max",
        needs_hardware=True,
        unmeasured_hint="the memory meter could not read this process's peak RSS",
    ),
    "peak_gpu_memory_mb": Key(
        "MB",
        lambda t, _: [t.peak_gpu_memory_mb],
        fixed_stat="max",
        needs_hardware=True,
        unmeasured_hint="the engine reports no GPU memory: it runs on the CPU or is a server "
        "(transformers on CUDA gives torch's peak, vLLM its KV-cache blocks)",
    ),
    "spec_acceptance_rate": Key(
        "",
        totals=_acceptance_totals,
        direction=Direction.AT_LEAST,
        fixed_stat="total",
        unmeasured_hint=_SPEC_HINT,
    ),
    "spec_accept_length": Key(
        "tokens/step",
        totals=_accept_length_totals,
        direction=Direction.AT_LEAST,
        fixed_stat="total",
        unmeasured_hint=_SPEC_HINT,
    ),
    "pass_at_k": Key("", direction=Direction.AT_LEAST, takes_k=True, compared=True),
    "eff_at_k": Key("", direction=Direction.AT_LEAST, takes_k=True, compared=True),
    "maj_at_k": Key("", direction=Direction.AT_LEAST, takes_k=True, compared=True),
    "cost_of_pass": Key("tokens", ratio=True, compared=True),
    "e3": Key("", direction=Direction.AT_LEAST, ratio=True, compared=True),
    "attainment": Key("", direction=Direction.AT_LEAST, load=True),
    "goodput_rps": Key("req/s", direction=Direction.AT_LEAST, load=True),
    "good_tokens_per_s": Key("tokens/s", direction=Direction.AT_LEAST, load=True),
    "max_rate_rps": Key("req/s", direction=Direction.AT_LEAST, load=True),
    "information_capacity": Key("", direction=Direction.AT_LEAST, text=True),
    "bits_per_byte": Key("bits/byte", text=True),
    "tokens_saved": Key("", direction=Direction.AT_LEAST, paired=True),
}
"""Every budget key. Cost keys sample each trace (one logical request) the test recorded;
accuracy keys aggregate the scores given with ``infer.score``."""

COST_KEYS: dict[str, Key] = {
    name: key for name, key in KEYS.items() if not key.accuracy and not key.load and not key.text
}
TEXT_KEYS: dict[str, Key] = {name: key for name, key in KEYS.items() if key.text}
ACCURACY_KEYS: dict[str, Key] = {name: key for name, key in KEYS.items() if key.accuracy}
LOAD_KEYS: dict[str, Key] = {name: key for name, key in KEYS.items() if key.load}
COMPARED_KEYS: dict[str, Key] = {name: key for name, key in KEYS.items() if key.compared}
"""What ``--inferbudget-compare`` compares per test; ``--inferbudget-compare-fail`` and
``compare_fail=`` may name these."""
BUDGET_KEYS = tuple(KEYS)
MODIFIERS = (
    "stat",
    "confidence",
    "min_samples",
    "max_samples",
    "eff_reference",
    "eff_cost",
    "eff_alpha",
    "cost_unit",
    "energy",
    "hardware",
    "compare_fail",
    "relative_to_best",
    "slo",
    "slo_requires_correct",
    "text",
    "versus",
    "candidate",
    "accuracy_margin",
)
ENERGY_KINDS = ("gross", "net")

PLANNED_KEYS: frozenset[str] = frozenset()
"""Keys DESIGN.md names that this version does not check yet: refused, never ignored."""


@final
class BudgetLimit(NamedTuple):
    """One limit on one key, with the modifiers of the marker that set it."""

    key: str
    limit: float
    stat: str
    k: int | None = None
    confidence: float | None = None
    reference: float | None = None
    """eff@k: the reference cost a sample is scored against."""
    cost: str = "tokens"
    """eff@k and cost-of-pass: what a sample's cost is counted in."""
    alpha: float = 2.0
    """eff@k: ENAMEL's censoring factor; a cost at or beyond alpha x reference scores 0."""
    energy: str = "gross"
    """Energy keys: ``gross`` as metered, or ``net`` of the idle power."""
    hardware: str | None = None
    """A pattern matched against the machine; None is the limit for any other machine."""
    slo: tuple[tuple[str, float], ...] = ()
    """Load keys: the marker's SLO terms (``(("ttft_ms", 500.0), ...)``)."""
    requires_correct: bool = False
    """Load keys: a request is good only when also scored correct."""
    text: str | None = None
    """Text keys: the name given to ``infer.measure_text``; None judges every text."""
    versus: str | None = None
    """``tokens_saved``: the baseline strategy's name, as its scores carry it."""
    candidate: str | None = None
    """``tokens_saved``: the strategy judged; None for the only other one scored."""
    margin: float = 0.0
    """``tokens_saved``: how much accuracy the candidate may lose and still be not worse."""

    @property
    def direction(self) -> Direction:
        return KEYS[self.key].direction

    @property
    def unit(self) -> str:
        return self.cost if self.key == "cost_of_pass" else KEYS[self.key].unit

    @property
    def label(self) -> str:
        return f"{self.key}@{self.k}" if self.k is not None else self.key


@final
class BudgetSpec(NamedTuple):
    """Every limit on one test, and how many samples a sequential run may take."""

    limits: tuple[BudgetLimit, ...] = ()
    min_samples: int | None = None
    max_samples: int | None = None
    compare_fail: tuple[tuple[str, float], ...] = ()
    """Per-test regression thresholds, over --inferbudget-compare-fail's."""
    relative_to_best: tuple[tuple[str, float, str], ...] = ()
    """Engine sweeps: (key, factor, stat) - within factor of the best engine's figure."""

    @property
    def confident(self) -> bool:
        return any(limit.confidence is not None for limit in self.limits)

    def __bool__(self) -> bool:
        """True when the test has a limit to judge (a tuple of fields would always be)."""
        return bool(self.limits)


def needs_hardware(label: str) -> bool:
    """Whether a result's key is measured by a hardware meter (see ``Key``)."""
    metric = KEYS.get(label)
    return metric is not None and metric.needs_hardware


def _where(where: str, key: str, value: object) -> str:
    return f"{where}: budget {key}={value!r}"


def _positive(value: object, *, where: str, key: str, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BudgetSpecError(
            f"{_where(where, key, value)} must be a number"
            + (f" (in {unit})" if unit else "")
            + f", got {type(value).__name__}"
        )
    if not math.isfinite(value) or value <= 0:
        raise BudgetSpecError(
            f"{_where(where, key, value)} must be a finite number above 0"
            + (f" (in {unit})" if unit else "")
        )
    return float(value)


def _count(value: object, *, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BudgetSpecError(f"{_where(where, key, value)} must be an integer >= 1")
    return value


def _k_and_floor(value: object, *, where: str, key: str) -> tuple[int, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise BudgetSpecError(
            f"{_where(where, key, value)} must be a pair (k, floor), for example {key}=(4, 0.5)"
        )
    k = _count(value[0], where=where, key=f"{key}[k]")
    floor = value[1]
    upper = math.inf if key == "eff_at_k" else 1.0
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 <= floor <= upper:
        bound = "0 or more" if key == "eff_at_k" else "between 0 and 1"
        raise BudgetSpecError(f"{_where(where, key, value)}: the floor must be {bound}")
    return k, float(floor)


def _choice(value: object, choices: Iterable[str], *, where: str, key: str) -> str:
    options = tuple(choices)
    if value not in options:
        raise BudgetSpecError(
            f"{_where(where, key, value)} is not one of {', '.join(repr(c) for c in options)}"
        )
    return str(value)


def parse_marker_kwargs(kwargs: Mapping[str, Any], *, where: str) -> list[BudgetLimit]:
    """Validate one ``budget`` marker's keywords; ``where`` names the test in errors."""
    for key in kwargs:
        if key not in BUDGET_KEYS and key not in MODIFIERS:
            raise BudgetSpecError(_unknown_key_message(key, where))
    stat = kwargs.get("stat", DEFAULT_STAT)
    if not isinstance(stat, str) or stat not in STATISTICS:
        raise BudgetSpecError(
            f"{where}: budget stat={stat!r} is not a statistic; "
            f"use one of {', '.join(repr(s) for s in STATISTICS)}"
        )
    confidence = kwargs.get("confidence")
    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, float)
        or not 0.5 <= confidence < 1
    ):
        raise BudgetSpecError(
            f"{_where(where, 'confidence', confidence)} must be a probability in [0.5, 1), "
            "such as 0.95"
        )
    reference = kwargs.get("eff_reference")
    if reference is not None:
        reference = _positive(reference, where=where, key="eff_reference", unit="")
    cost = _choice(kwargs.get("eff_cost", "tokens"), COST_UNITS, where=where, key="eff_cost")
    cost_unit = _choice(kwargs.get("cost_unit", "tokens"), COST_UNITS, where=where, key="cost_unit")
    energy = _choice(kwargs.get("energy", "gross"), ENERGY_KINDS, where=where, key="energy")
    alpha = _positive(kwargs.get("eff_alpha", 2.0), where=where, key="eff_alpha", unit="")
    if alpha <= 1:
        raise BudgetSpecError(f"{_where(where, 'eff_alpha', alpha)} must be above 1")
    limits: list[BudgetLimit] = []
    for key, value in kwargs.items():
        if key in COST_KEYS:
            metric = COST_KEYS[key]
            limit = _positive(value, where=where, key=key, unit=metric.unit)
            key_stat = metric.fixed_stat or stat
            key_confidence = None if metric.fixed_stat else confidence
            if key_confidence is not None:
                _check_confident_cost(key, metric, key_stat, where)
            limits.append(
                BudgetLimit(key, limit, key_stat, confidence=key_confidence, energy=energy)
            )
        elif key in ACCURACY_KEYS and KEYS[key].paired:
            limits.append(_paired_limit(kwargs, key, where, confidence))
        elif key in ACCURACY_KEYS:
            if KEYS[key].takes_k:
                k, floor = _k_and_floor(value, where=where, key=key)
                limits.append(
                    BudgetLimit(key, floor, "mean", k, confidence, reference, cost, alpha)
                )
            else:
                if confidence is not None and KEYS[key].ratio:
                    raise BudgetSpecError(
                        f"{where}: budget {key} is a ratio of two random quantities and has "
                        "no confident verdict here; drop confidence= from its marker"
                    )
                unit = cost_unit if key == "cost_of_pass" else ""
                limit = _positive(value, where=where, key=key, unit=unit)
                limits.append(BudgetLimit(key, limit, "mean", cost=cost_unit))
    limits += _load_limits(kwargs, where, confidence)
    limits += _text_limits(kwargs, where)
    limits += _hardware_limits(kwargs, where)
    if not limits and "compare_fail" not in kwargs and "relative_to_best" not in kwargs:
        raise BudgetSpecError(
            f"{where}: budget marker sets no limit; give at least one of {', '.join(BUDGET_KEYS)}"
        )
    if "eff_reference" in kwargs and not any(lim.key == "eff_at_k" for lim in limits):
        raise BudgetSpecError(f"{where}: eff_reference= is given without eff_at_k in its marker")
    return limits


def _paired_limit(
    kwargs: Mapping[str, Any], key: str, where: str, confidence: float | None
) -> BudgetLimit:
    """``tokens_saved=0.2, versus="self_consistency(n=5)"`` (``candidate=``,
    ``accuracy_margin=`` optional): a share of the baseline's tokens, at least 0."""
    value = kwargs[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise BudgetSpecError(
            f"{_where(where, key, value)} must be the share of the baseline's tokens to save, "
            "in [0, 1): 0.2 saves a fifth, 0 asks only for no more tokens"
        )
    names = {}
    for modifier in ("versus", "candidate"):
        name = kwargs.get(modifier)
        if (modifier == "versus" or name is not None) and (not isinstance(name, str) or not name):
            raise BudgetSpecError(
                f"{_where(where, modifier, name)} must name a strategy as its results carry "
                f"it (strategy.name, such as 'self_consistency(n=5)'); {key} needs versus="
            )
        names[modifier] = name
    margin = kwargs.get("accuracy_margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
        raise BudgetSpecError(
            f"{_where(where, 'accuracy_margin', margin)} must be the accuracy the candidate "
            "may lose and still count as not worse, in [0, 1), such as 0.05"
        )
    return BudgetLimit(
        key,
        float(value),
        "mean",
        confidence=confidence,
        versus=names["versus"],
        candidate=names["candidate"],
        margin=float(margin),
    )


def _check_paired_modifiers(kwargs: Mapping[str, Any], where: str) -> None:
    if any(KEYS[key].paired for key in kwargs if key in KEYS):
        return
    for modifier in ("versus", "candidate", "accuracy_margin"):
        if modifier in kwargs:
            raise BudgetSpecError(
                f"{where}: {modifier}= is given without tokens_saved in its marker"
            )


def _text_limits(kwargs: Mapping[str, Any], where: str) -> list[BudgetLimit]:
    name = kwargs.get("text")
    if name is not None and (not isinstance(name, str) or not name):
        raise BudgetSpecError(
            f"{_where(where, 'text', name)} must be the name given to infer.measure_text(..., "
            "name=...)"
        )
    keys = [key for key in kwargs if key in TEXT_KEYS]
    if name is not None and not keys:
        raise BudgetSpecError(
            f"{where}: text= is given without information_capacity or bits_per_byte in its marker"
        )
    limits = []
    for key in keys:
        value = kwargs[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise BudgetSpecError(f"{_where(where, key, value)} must be a finite number")
        if key == "bits_per_byte":
            value = _positive(value, where=where, key=key, unit="bits/byte")
        limits.append(BudgetLimit(key, float(value), "", text=name))
    return limits


def _load_limits(
    kwargs: Mapping[str, Any], where: str, confidence: float | None
) -> list[BudgetLimit]:
    """``slo={...}`` (or a preset name) with ``attainment=``, ``goodput_rps=``,
    ``good_tokens_per_s=``, ``max_rate_rps=``; a preset alone implies its attainment."""
    requires = kwargs.get("slo_requires_correct", False)
    if not isinstance(requires, bool):
        raise BudgetSpecError(f"{_where(where, 'slo_requires_correct', requires)} must be a bool")
    values: dict[str, object] = {k: v for k, v in kwargs.items() if k in LOAD_KEYS}
    slo = kwargs.get("slo")
    terms: tuple[tuple[str, float], ...] = ()
    if slo is None:
        if requires:
            raise BudgetSpecError(f"{where}: budget slo_requires_correct=True needs slo=...")
        needing = [k for k in values if k != "max_rate_rps"]
        if needing:
            raise BudgetSpecError(
                f"{where}: budget {needing[0]} needs slo=..., the objectives each request "
                "must meet, such as slo={'ttft_ms': 500, 'tpot_ms': 50} or a preset name"
            )
    else:
        terms, implied = _parse_slo(slo, where)
        if not values:
            if implied is None:
                raise BudgetSpecError(
                    f"{where}: budget slo= sets objectives but no limit on them; add "
                    "attainment=, goodput_rps=, good_tokens_per_s= or max_rate_rps="
                )
            values["attainment"] = implied
    limits = []
    for key, value in values.items():
        floor = _positive(value, where=where, key=key, unit=KEYS[key].unit)
        if key == "attainment" and floor > 1:
            raise BudgetSpecError(
                f"{_where(where, key, value)} is a share of requests: between 0 and 1"
            )
        level = confidence if key == "attainment" else None
        limits.append(
            BudgetLimit(key, floor, "mean", confidence=level, slo=terms, requires_correct=requires)
        )
    return limits


def _parse_slo(value: object, where: str) -> tuple[tuple[tuple[str, float], ...], float | None]:
    """The SLO's terms, and the attainment a preset implies (None for a dict)."""
    from pytest_inferbudget.load.presets import SLO_PRESETS, SLO_TERMS

    if isinstance(value, str):
        preset = SLO_PRESETS.get(value)
        if preset is None:
            raise BudgetSpecError(
                f"{_where(where, 'slo', value)} is not a preset; presets: {', '.join(SLO_PRESETS)}"
            )
        return preset.terms, preset.attainment
    if not isinstance(value, Mapping) or not value:
        raise BudgetSpecError(
            f"{_where(where, 'slo', value)} must map terms ({', '.join(SLO_TERMS)}) to ms, "
            "for example slo={'ttft_ms': 500}, or name a preset"
        )
    for term in value:
        if term not in SLO_TERMS:
            raise BudgetSpecError(
                f"{where}: budget slo term {term!r} is not one of {', '.join(SLO_TERMS)}"
            )
    return tuple(
        (term, _positive(value[term], where=where, key=f"slo[{term!r}]", unit="ms"))
        for term in SLO_TERMS
        if term in value
    ), None


def _hardware_limits(kwargs: Mapping[str, Any], where: str) -> list[BudgetLimit]:
    """``hardware={"cuda:*H100*": {"ms_per_request": 80}}``: limits for matching machines,
    taking the marker's modifiers unless they set their own."""
    variants = kwargs.get("hardware")
    if variants is None:
        return []
    if not isinstance(variants, Mapping) or not variants:
        raise BudgetSpecError(
            f"{_where(where, 'hardware', variants)} must map a machine pattern to limits, "
            "for example hardware={'cuda:*H100*': {'ms_per_request': 80}}"
        )
    outer = {k: v for k, v in kwargs.items() if k in MODIFIERS and k != "hardware"}
    limits = []
    for pattern, inner in variants.items():
        if not isinstance(pattern, str) or not isinstance(inner, Mapping) or not inner:
            raise BudgetSpecError(
                f"{where}: budget hardware entry {pattern!r}: {inner!r} must be a pattern "
                "string mapped to a dict of limits"
            )
        if "hardware" in inner:
            raise BudgetSpecError(f"{where}: budget hardware entries cannot nest hardware=")
        for limit in parse_marker_kwargs({**outer, **inner}, where=f"{where} [{pattern}]"):
            limits.append(limit._replace(hardware=pattern))
    return limits


def _check_confident_cost(key: str, metric: Key, stat: str, where: str) -> None:
    if stat == "max":
        raise BudgetSpecError(
            f"{where}: budget {key} with stat='max' and confidence: no finite sample "
            "bounds a maximum with confidence; use stat='p99' (or drop confidence)"
        )
    if stat == "mean" and not metric.bounded:
        raise BudgetSpecError(
            f"{where}: budget {key} with stat='mean' and confidence: the mean of an "
            "unbounded quantity has no distribution-free confidence interval; use a quantile "
            "such as stat='p50' or stat='p90' with confidence"
        )


def _unknown_key_message(key: str, where: str) -> str:
    if key in PLANNED_KEYS:
        return (
            f"{where}: budget key {key!r} is not supported by this version of "
            f"pytest-inferbudget yet; supported keys: {', '.join(BUDGET_KEYS)}"
        )
    import difflib  # only on this error path: start-up stays light

    known = [*BUDGET_KEYS, *MODIFIERS]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{where}: unknown budget key {key!r}; {hint}known keys: {', '.join(known)}"


def parse_markers(
    markers: Iterable[tuple[Sequence[Any], Mapping[str, Any]]], *, where: str
) -> BudgetSpec:
    """Merge several ``budget`` markers (``(args, kwargs)`` each) into one spec."""
    merged: dict[tuple[str, str, int | None, str | None], BudgetLimit] = {}
    caps: dict[str, int] = {}
    gates: dict[str, float] = {}
    relative: dict[str, tuple[str, float, str]] = {}
    for args, kwargs in markers:
        if args:
            raise BudgetSpecError(
                f"{where}: budget takes keyword limits only, such as "
                f"@pytest.mark.budget(ms_per_request=500); got positional {tuple(args)!r}"
            )
        _check_paired_modifiers(kwargs, where)  # here: hardware= variants inherit them
        for limit in parse_marker_kwargs(kwargs, where=where):
            slot = (limit.key, limit.stat, limit.k, limit.hardware)
            earlier = merged.get(slot)
            if earlier is not None and earlier != limit:
                raise BudgetSpecError(
                    f"{where}: budget markers conflict on {limit.label} (stat {limit.stat}): "
                    f"{_describe(earlier)} vs {_describe(limit)}; keep one"
                )
            merged[slot] = limit
        gates.update(_compare_fail(kwargs.get("compare_fail"), where))
        for key, factor in _relative_to_best(kwargs.get("relative_to_best"), where).items():
            relative[key] = (key, factor, str(kwargs.get("stat", DEFAULT_STAT)))
        for cap in ("min_samples", "max_samples"):
            if cap in kwargs:
                value = _count(kwargs[cap], where=where, key=cap)
                if caps.setdefault(cap, value) != value:
                    raise BudgetSpecError(
                        f"{where}: budget markers conflict on {cap}: {caps[cap]} vs {value}"
                    )
    spec = BudgetSpec(
        tuple(merged.values()),
        caps.get("min_samples"),
        caps.get("max_samples"),
        tuple(gates.items()),
        tuple(relative.values()),
    )
    if spec.min_samples and spec.max_samples and spec.min_samples > spec.max_samples:
        raise BudgetSpecError(
            f"{where}: budget min_samples={spec.min_samples} is above "
            f"max_samples={spec.max_samples}"
        )
    if (spec.min_samples or spec.max_samples) and not spec.confident:
        raise BudgetSpecError(
            f"{where}: min_samples/max_samples bound sequential sampling, which needs "
            "confidence=... on a budget of the same test"
        )
    return spec


def _compare_fail(value: object, where: str) -> dict[str, float]:
    """``compare_fail={"ms_per_request": "10%", "tokens_per_request": 0}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BudgetSpecError(
            f"{_where(where, 'compare_fail', value)} must map a metric to a threshold, "
            "for example compare_fail={'ms_per_request': '10%'}"
        )
    gates = {}
    for metric, threshold in value.items():
        if metric not in COMPARED_KEYS:
            raise BudgetSpecError(
                f"{where}: budget compare_fail names {metric!r}; compared metrics are "
                f"{', '.join(COMPARED_KEYS)}"
            )
        if isinstance(threshold, str) and threshold.endswith("%"):
            try:
                threshold = float(threshold[:-1]) / 100
            except ValueError:
                threshold = None
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
            raise BudgetSpecError(
                f"{where}: budget compare_fail[{metric!r}] must be a fraction >= 0 or a "
                "percentage such as '10%'"
            )
        gates[str(metric)] = float(threshold)
    return gates


RELATIVE_THROUGHPUT = "tokens_per_s"
"""``relative_to_best`` may name it beside the cost keys: output tokens per second of
engine time, a floor (best is the highest); ``records.sweep.THROUGHPUT_KEY``."""


def _relative_to_best(value: object, where: str) -> dict[str, float]:
    """``relative_to_best={"ms_per_request": 1.1}``: at most 1.1x the best engine's."""
    if value is None:
        return {}
    keys = [RELATIVE_THROUGHPUT, *COST_KEYS]
    if not isinstance(value, Mapping) or not value:
        raise BudgetSpecError(
            f"{_where(where, 'relative_to_best', value)} must map a key to a factor >= 1, "
            "for example relative_to_best={'ms_per_request': 1.1} (at most 10% slower than "
            "the best engine of the sweep)"
        )
    factors = {}
    for key, factor in value.items():
        if key not in keys:
            kind = "an accuracy or load key" if key in KEYS else "not a key"
            raise BudgetSpecError(
                f"{where}: budget relative_to_best names {key!r}, {kind}; it takes "
                f"{', '.join(keys)}"
            )
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor >= 1:
            raise BudgetSpecError(
                f"{where}: budget relative_to_best[{key!r}] = {factor!r} must be a number "
                ">= 1: how many times the best engine's figure is allowed (1.1: within 10%)"
            )
        if math.isinf(factor):
            raise BudgetSpecError(f"{where}: budget relative_to_best[{key!r}] must be finite")
        factors[str(key)] = float(factor)
    return factors


def _describe(limit: BudgetLimit) -> str:
    text = f"{limit.limit:g}"
    if limit.confidence is not None:
        text += f" at confidence {limit.confidence:g}"
    return text


BUDGET = pytest.StashKey[BudgetSpec]()
NO_BUDGET = BudgetSpec()


def item_budget(item: pytest.Item) -> BudgetSpec:
    """The item's merged budget markers, parsed once; an item with none parses nothing."""
    spec = item.stash.get(BUDGET, None)
    if spec is None:
        markers = [(m.args, m.kwargs) for m in item.iter_markers("budget")]
        spec = parse_markers(markers, where=item.nodeid) if markers else NO_BUDGET
        item.stash[BUDGET] = spec
    return spec
