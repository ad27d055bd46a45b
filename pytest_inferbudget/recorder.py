"""The ``infer`` fixture's object: generates through an engine and keeps every trace.

Longer than 500 lines because it is the one object a test holds: every kind of record a
test makes (traces, scores, code runs, load runs, measured texts) enters through it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

from pytest_inferbudget.errors import EngineError, InferBudgetError
from pytest_inferbudget.meters.windows import token_shares
from pytest_inferbudget.records import Prompt, Request, Response, Score, Trace

if TYPE_CHECKING:
    from pytest_inferbudget.code import CodeTask, SampleScore
    from pytest_inferbudget.engines import Engine
    from pytest_inferbudget.meters import MemoryMeter, Meter
    from pytest_inferbudget.meters.machine import MachineLoadMeter
    from pytest_inferbudget.meters.windows import EnergyWindows
    from pytest_inferbudget.perfmodel.predictions import Predictor
    from pytest_inferbudget.records import (
        BudgetResult,
        CapacitySearch,
        EngineInfo,
        LoadRun,
        MachineLoad,
        TextMeasurement,
    )
    from pytest_inferbudget.strategies import Strategy, StrategyResult

PromptInput = Prompt | list[dict[str, str]]


@dataclass(slots=True)
class Metering:
    """The meters that watch every engine call; any may be absent."""

    energy: Meter | None = None
    memory: MemoryMeter | None = None
    predictor: Predictor | None = None
    machine: MachineLoadMeter | None = None
    cpu_measured: bool = True
    """Whether the engine's work runs in this process tree, so that its CPU time is the
    engine's (False for a server this session did not start)."""
    loads: list[MachineLoad] = dataclasses.field(default_factory=list)
    """Every engine call's machine load, in order: a test reads the ones made during it."""
    _windows: itertools.count[int] = dataclasses.field(default_factory=itertools.count)
    energy_windows: EnergyWindows | None = dataclasses.field(default=None, init=False)
    """Joins consecutive calls into energy windows the meter resolves (NVML's counter)."""

    def __post_init__(self) -> None:
        if self.energy is not None:
            from pytest_inferbudget.meters.windows import EnergyWindows

            self.energy_windows = EnergyWindows(self.energy)

    def call(
        self, engine: Engine, requests: Sequence[Request], *, join: bool = True
    ) -> list[Response]:
        """One engine call inside one energy, memory and machine-load window, shared out
        per request.

        A batch's energy and CPU time are split between its requests in proportion to
        their completion tokens (equally when none produced any). Where the energy meter
        moves in steps too coarse for one call (NVML's counter), consecutive calls share
        one energy window (:mod:`pytest_inferbudget.meters.windows`) unless ``join`` is
        False (interleaved A/B calls, whose engines must not share a window).
        """
        windows = self.energy_windows
        if join and windows is not None and windows.joining:
            return windows.joined(lambda: self._call(engine, requests, metered=False))
        return self._call(engine, requests, metered=True)

    def _call(
        self, engine: Engine, requests: Sequence[Request], *, metered: bool
    ) -> list[Response]:
        key = f"engine-call-{next(self._windows)}"
        energy_meter = self.energy if metered else None
        meters = [m for m in (energy_meter, self.memory, self.machine) if m is not None]
        for meter in meters:
            meter.begin_window(key)
        try:
            responses = _call_engine(engine, requests)
        finally:
            energy = energy_meter.end_window(key) if energy_meter is not None else None
            memory = self.memory.end_window(key) if self.memory is not None else None
            load = self.machine.end_window(key) if self.machine is not None else None
        if energy is not None:
            energy = dataclasses.replace(energy, window_id=key, window_calls=1)
        peak_mb = memory.peak_rss_mb if memory is not None else None
        if load is not None:
            self.loads.append(load)
        cpu_ms = None
        if load is not None and load.own_cpu_s is not None and self.cpu_measured:
            cpu_ms = load.own_cpu_s * 1000.0
        if self.predictor is not None:
            responses = [self.predictor.annotate(r) for r in responses]
        shared = []
        for response, share in zip(responses, token_shares(responses), strict=True):
            shared.append(
                dataclasses.replace(
                    response,
                    energy=energy.portion(share) if energy is not None else None,
                    peak_memory_mb=peak_mb,
                    cpu_ms=None if cpu_ms is None or response.replayed else cpu_ms * share,
                )
            )
        return shared


class Recorder:
    """Bound to one engine for one test; ``traces`` and ``scores`` are what the budgets judge."""

    def __init__(
        self,
        engine: Engine,
        *,
        metering: Metering | None = None,
        judge: Callable[[Recorder], list[BudgetResult]] | None = None,
        min_samples: int = 1,
        max_samples: int = 200,
        sandbox: str = "auto",
        partner: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.partner = partner
        """``--inferbudget-ab``'s second engine: each call is served by both, in random
        order, and the partner's responses kept in :attr:`partner_traces`."""
        self.partner_traces: list[Trace] = []
        self._order = random.Random(0)
        self.sandbox = sandbox
        """Containment of :meth:`score_code`'s runs (``--inferbudget-sandbox``)."""
        self.metering = metering or Metering()
        if self.metering.energy_windows is not None:  # a window an earlier test left open
            self.metering.energy_windows.close()
            self.metering.energy_windows.forget()
        self._first_load = len(self.metering.loads)
        self.traces: list[Trace] = []
        self.scores: list[Score] = []
        self._judge = judge
        self.sampled_sequentially = False
        """Set once sample_until_confident looked at the samples between batches."""
        self.min_samples = min_samples
        self.max_samples = max_samples
        self._trace_of: dict[int, tuple[object, Trace]] = {}
        """id(result) -> (result, its trace); holding the result keeps its id unique."""
        self.loads: list[LoadRun] = []
        """Every ``load.run`` of the test and every capacity-search probe (docs/load.md)."""
        self.capacity: list[CapacitySearch] = []
        """Every ``load.find_max_rate`` of the test."""
        self.texts: list[TextMeasurement] = []
        """Every :meth:`measure_text` of the test."""

    @property
    def responses(self) -> list[Response]:
        return [r for t in self.traces for r in t.responses]

    def close_energy_window(self) -> None:
        """Close the energy window that joins this test's engine calls and give every
        response in it its share. The plugin calls it after the test body (and
        ``sample_until_confident`` before each look); call it yourself to read
        ``response.energy`` mid-test. A no-op where each call has its own window."""
        windows = self.metering.energy_windows
        if windows is None:
            return
        windows.close()
        self.traces = [windows.settle_trace(t) for t in self.traces]
        self._trace_of = {
            key: (result, windows.settle_trace(trace))
            for key, (result, trace) in self._trace_of.items()
        }
        windows.forget()

    @property
    def machine_load(self) -> MachineLoad | None:
        """How busy the machine was over this test's engine calls (None: not measured)."""
        from pytest_inferbudget.records import MachineLoad

        return MachineLoad.combine(self.metering.loads[self._first_load :])

    @overload
    def __call__(
        self,
        prompt: PromptInput,
        *,
        strategy: None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
        chat: bool = True,
    ) -> Response: ...

    @overload
    def __call__(
        self,
        prompt: PromptInput,
        *,
        strategy: Strategy,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
        chat: bool = True,
    ) -> StrategyResult: ...

    def __call__(
        self,
        prompt: PromptInput,
        *,
        strategy: Strategy | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
        chat: bool = True,
    ) -> Response | StrategyResult:
        """Generate for one prompt: greedy by default, ``n`` samples with ``temperature > 0``,
        or through ``strategy``, whose every engine call is recorded."""
        __tracebackhide__ = True
        if strategy is not None:
            return self._run_strategy(strategy, _as_prompt(prompt), max_new_tokens, seed)
        request = Request(_as_prompt(prompt), max_new_tokens, temperature, top_p, n, seed, chat)
        return self.run([request])[0]

    def generate(
        self,
        prompts: Sequence[PromptInput],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
        chat: bool = True,
    ) -> list[Response]:
        """Generate for several prompts as one batch; one response per prompt, in order."""
        __tracebackhide__ = True
        if isinstance(prompts, str):
            raise TypeError("generate() takes a list of prompts; use infer(prompt) for one")
        requests = [
            Request(_as_prompt(p), max_new_tokens, temperature, top_p, n, seed, chat)
            for p in prompts
        ]
        return self.run(requests)

    def run(self, requests: Sequence[Request]) -> list[Response]:
        """Send prepared requests as one batch; each becomes a trace of its own."""
        responses, theirs = _interleaved(
            self.metering, self.engine, self.partner, requests, self._order
        )
        for response in responses:
            self._keep(response, Trace((response,)))
        self.partner_traces += [Trace((r,)) for r in theirs or ()]
        return responses

    def _run_strategy(
        self, strategy: Strategy, prompt: Prompt, max_new_tokens: int, seed: int | None
    ) -> StrategyResult:
        __tracebackhide__ = True
        calls = _RecordingEngine(self.engine, self.metering, self.partner, self._order)
        start_ns = time.perf_counter_ns()
        result = strategy.run(calls, prompt, max_new_tokens=max_new_tokens, seed=seed)
        # interleaved with a partner, the wall time holds both engines' calls: not kept
        wall_ms = None if self.partner else (time.perf_counter_ns() - start_ns) / 1e6
        trace = Trace(tuple(calls.responses), strategy.name, wall_ms, result.answer)
        self._keep(result, trace)
        if self.partner is not None:
            self.partner_traces.append(Trace(tuple(calls.partner_responses), strategy.name))
        return result

    def keep(self, response: Response) -> None:
        """Record a response made outside :meth:`run` (a load run's request) as a trace
        of its own, so per-request budgets sample it and :meth:`score` takes it."""
        self._keep(response, Trace((response,)))

    def _keep(self, result: object, trace: Trace) -> None:
        self.traces.append(trace)
        self._trace_of[id(result)] = (result, trace)

    def score(
        self,
        result: Response | StrategyResult,
        *,
        correct: bool | Sequence[bool],
        problem: str | None = None,
        answer: str | Sequence[str | None] | None = None,
        efficiency: float | None = None,
    ) -> None:
        """Record whether a result was right; its cost comes from its own records.

        Samples group by ``problem`` (default: the prompt) for pass@k and eff@k. A
        response with ``n`` samples takes one ``correct`` (and ``answer``) per sample.
        """
        __tracebackhide__ = True
        found = self._trace_of.get(id(result))
        if found is None or found[0] is not result:
            raise ValueError(
                "score() takes a result returned by this test's infer(...) or "
                "infer.generate(...); it cannot price anything else"
            )
        trace = found[1]
        if problem is None:
            problem = _problem_key(trace.responses[0].request.prompt)
        if isinstance(result, Response) and result.request.n > 1:
            self._score_samples(result, trace, problem, correct, answer)
            return
        if not isinstance(correct, bool):
            raise TypeError(f"correct must be True or False for one sample, got {correct!r}")
        if answer is not None and not isinstance(answer, str):
            raise TypeError(f"answer must be a string for one sample, got {answer!r}")
        if answer is None and trace.strategy:
            answer = trace.answer
        self.scores.append(
            Score(
                problem,
                correct,
                trace.completion_tokens,
                trace.e2e_ms,
                answer,
                efficiency,
                eflops=trace.eflops,
                reasoning_tokens=trace.reasoning_tokens,
                strategy=trace.strategy,
            )
        )

    def _score_samples(
        self,
        result: Response,
        trace: Trace,
        problem: str,
        correct: bool | Sequence[bool],
        answer: str | Sequence[str | None] | None,
    ) -> None:
        __tracebackhide__ = True
        n = len(result.generations)
        if isinstance(correct, bool) or len(correct) != n:
            raise ValueError(
                f"this result holds {n} samples; pass correct=[...] with one entry per sample "
                "(for example [check(text) for text in result.texts])"
            )
        answers: Sequence[str | None] = [None] * n if answer is None else answer
        if isinstance(answers, str) or len(answers) != n:
            raise ValueError(f"answer must hold one entry per sample ({n}), got {answer!r}")
        for generation, is_correct, sample_answer in zip(
            result.generations, correct, answers, strict=True
        ):
            self.scores.append(
                Score(
                    problem,
                    bool(is_correct),
                    generation.completion_tokens,
                    generation.e2e_ms,
                    sample_answer,
                    eflops=_share(result.eflops, generation.completion_tokens, result),
                    reasoning_tokens=generation.reasoning_tokens,
                )
            )

    def measure_text(
        self, text: str, *, name: str = "", b: float = -27.0, window_tokens: int = 1024
    ) -> TextMeasurement:
        """The model's code length of ``text`` (prompt log-probs), its bits per byte and
        information capacity, kept for the ``information_capacity`` and ``bits_per_byte``
        budgets (docs/metrics.md); ``name`` is what a marker's ``text=`` picks."""
        __tracebackhide__ = True
        from pytest_inferbudget.perfmodel.information import measure_text

        measured = measure_text(self.engine, text, name=name, b=b, window_tokens=window_tokens)
        self.texts.append(measured)
        return measured

    def score_code(
        self,
        result: Response | StrategyResult,
        task: CodeTask | str | os.PathLike[str],
        *,
        problem: str | None = None,
        sandbox: str | None = None,
    ) -> list[SampleScore]:
        """Run the generated code of every sample of ``result`` on ``task`` in the sandbox
        and score it as ENAMEL does: correct when it passes, efficiency from its CPU time
        against the task's reference (see docs/code-efficiency.md). ``sandbox`` (default
        ``--inferbudget-sandbox``, else auto) picks the containment; where none works this
        raises :class:`~pytest_inferbudget.errors.SandboxError` naming the fix, unless it is
        ``"none"``, which warns that the scores ran uncontained."""
        __tracebackhide__ = True
        from pytest_inferbudget.code import (
            CodeTask,
            Containment,
            SandboxChoice,
            Sandboxed,
            extract_code,
            load_task,
            score_sample,
        )

        code_task = task if isinstance(task, CodeTask) else load_task(Path(task))
        texts = result.texts if isinstance(result, Response) else [result.text]
        executor = Sandboxed(SandboxChoice(sandbox or self.sandbox))
        samples = [
            score_sample(code_task, extract_code(text, code_task.entry_point), executor)
            for text in texts
        ]
        if any(s.containment is Containment.NONE for s in samples):
            warnings.warn(
                f"inferbudget: {code_task.name or code_task.entry_point}: model-written code "
                "ran uncontained (--inferbudget-sandbox=none); its scores are marked "
                "containment='none'",
                UserWarning,
                stacklevel=2,
            )
        problem = problem or code_task.name or None
        if isinstance(result, Response) and result.request.n > 1:
            self.score(result, correct=[s.passed for s in samples], problem=problem)
            for index, sample in enumerate(samples, start=len(self.scores) - len(samples)):
                self.scores[index] = dataclasses.replace(
                    self.scores[index],
                    efficiency=sample.score,
                    containment=sample.containment.value,
                )
        else:
            self.score(
                result, correct=samples[0].passed, problem=problem, efficiency=samples[0].score
            )
            self.scores[-1] = dataclasses.replace(
                self.scores[-1], containment=samples[0].containment.value
            )
        return samples

    def sample_until_confident(
        self, workload: Callable[[], object], *, batch: int = 5
    ) -> list[BudgetResult]:
        """Run ``workload`` in batches until every budget on the test has a confident
        verdict (pass or fail) or ``max_samples`` traces are recorded; see docs/confidence.md.
        """
        __tracebackhide__ = True
        if self._judge is None:
            raise InferBudgetError(
                "sample_until_confident() needs a budget marker with confidence=... on the test"
            )
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.sampled_sequentially = True
        while True:
            before = self.sample_count
            for _ in range(batch):
                workload()
            self.close_energy_window()  # a batch's calls are judged with their energy
            if self.sample_count == before:
                raise InferBudgetError(
                    "the workload recorded no generation and no score; it must call infer(...)"
                )
            if self.sample_count < self.min_samples:
                continue
            results = self._judge(self)
            # unmeasured (no meter, or a replay) cannot change with more samples
            settled = all(r.verdict in ("pass", "fail", "unmeasured") for r in results)
            if settled or any(r.verdict == "fail" for r in results):
                return results
            if self.sample_count >= self.max_samples:
                return results

    @property
    def reached_cap(self) -> bool:
        """Sequential sampling stopped because ``max_samples`` samples were drawn."""
        return self.sample_count >= self.max_samples

    @property
    def sample_count(self) -> int:
        """Samples so far: traces for cost budgets, or scores for accuracy budgets."""
        return max(len(self.traces), len(self.scores))


class _RecordingEngine:
    """What a strategy sees: the engine, with every call's responses kept for its trace."""

    def __init__(
        self,
        engine: Engine,
        metering: Metering,
        partner: Engine | None = None,
        order: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._metering = metering
        self._partner = partner
        self._order = order or random.Random(0)
        self.responses: list[Response] = []
        self.partner_responses: list[Response] = []

    @property
    def spec(self) -> str:
        return self._engine.spec

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        responses, theirs = _interleaved(
            self._metering, self._engine, self._partner, requests, self._order
        )
        self.responses.extend(responses)
        self.partner_responses.extend(theirs or ())
        return responses

    def describe(self) -> EngineInfo:
        return self._engine.describe()

    def close(self) -> None:
        """The session owns the engine; a strategy cannot close it."""


def _interleaved(
    metering: Metering,
    engine: Engine,
    partner: Engine | None,
    requests: Sequence[Request],
    order: random.Random,
) -> tuple[list[Response], list[Response] | None]:
    """The engine's responses, and the partner's to the same requests when there is one:
    both served one after the other in an order drawn per call (Randomized Multiple
    Interleaved Trials), each in its own metering window, so a shift of the machine's
    state falls on both sides alike."""
    if partner is None:
        return metering.call(engine, requests), None
    # the two engines' calls alternate, so none of them may join another's energy window
    if order.random() < 0.5:
        theirs = metering.call(partner, requests, join=False)
        return metering.call(engine, requests, join=False), theirs
    ours = metering.call(engine, requests, join=False)
    return ours, metering.call(partner, requests, join=False)


def _call_engine(engine: Engine, requests: Sequence[Request]) -> list[Response]:
    if not requests:
        return []
    try:
        responses = engine.generate(requests)
    except InferBudgetError:
        raise
    except Exception as exc:
        raise EngineError(f"engine {engine.spec} failed: {exc!r}") from exc
    if len(responses) != len(requests):
        raise EngineError(
            f"engine {engine.spec} returned {len(responses)} responses for {len(requests)} requests"
        )
    return responses


def _share(total: float | None, tokens: int, response: Response) -> float | None:
    """A sample's part of its request's cost, by completion tokens (as energy is split)."""
    return None if total is None else total * tokens / max(response.completion_tokens, 1)


def _as_prompt(prompt: PromptInput) -> Prompt:
    return prompt if isinstance(prompt, str) else tuple(prompt)


def _problem_key(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(list(prompt), sort_keys=True)
