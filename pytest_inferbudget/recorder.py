"""The ``infer`` fixture's object: generates through an engine and keeps every response."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_inferbudget.engines import Engine
from pytest_inferbudget.errors import EngineError, InferBudgetError
from pytest_inferbudget.records import Prompt, Request, Response


class Recorder:
    """Bound to one engine for one test; ``responses`` is what the budgets are judged on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.responses: list[Response] = []

    def __call__(
        self,
        prompt: Prompt | list[dict[str, str]],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
        chat: bool = True,
    ) -> Response:
        """Generate for one prompt: greedy by default, ``n`` samples with ``temperature > 0``."""
        request = Request(_as_prompt(prompt), max_new_tokens, temperature, top_p, n, seed, chat)
        return self.run([request])[0]

    def generate(
        self,
        prompts: Sequence[Prompt | list[dict[str, str]]],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
        chat: bool = True,
    ) -> list[Response]:
        """Generate for several prompts as one batch; one response per prompt, in order."""
        if isinstance(prompts, str):
            raise TypeError("generate() takes a list of prompts; use infer(prompt) for one")
        requests = [
            Request(_as_prompt(p), max_new_tokens, temperature, top_p, n, seed, chat)
            for p in prompts
        ]
        return self.run(requests)

    def run(self, requests: Sequence[Request]) -> list[Response]:
        """Send prepared requests to the engine and record what comes back."""
        if not requests:
            return []
        try:
            responses = self.engine.generate(requests)
        except InferBudgetError:
            raise
        except Exception as exc:
            raise EngineError(f"engine {self.engine.spec} failed: {exc!r}") from exc
        if len(responses) != len(requests):
            raise EngineError(
                f"engine {self.engine.spec} returned {len(responses)} responses for "
                f"{len(requests)} requests"
            )
        self.responses.extend(responses)
        return responses


def _as_prompt(prompt: Prompt | list[dict[str, str]]) -> Prompt:
    return prompt if isinstance(prompt, str) else tuple(prompt)
