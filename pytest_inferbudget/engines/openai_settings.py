"""The ``openai`` engine's spec options, checked once into a frozen record."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from pytest_inferbudget.engines import DEFAULT_REASONING_DELIMITERS, EngineSpec
from pytest_inferbudget.engines.openai_wire import TOKEN_MODES, TokenMode
from pytest_inferbudget.errors import EngineSpecError

OPTIONS = (
    "model",
    "api_key_env",
    "endpoint",
    "timeout_s",
    "max_concurrency",
    "continuous_usage",
    "retries",
    "tokens",
    "tokenizer",
    "probe",
    "spec_metrics",
)
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
ENDPOINTS = ("auto", "chat", "completions")
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True, slots=True)
class OpenAISettings:
    base_url: str
    model: str | None
    endpoint: str
    timeout_s: float
    max_concurrency: int
    continuous_usage: bool
    api_key_env: str | None
    retries: int = 2
    """Further attempts after a refused connection or a retryable status, each timed
    from its own start: a failed attempt never counts toward a latency."""
    tokens: TokenMode = "auto"
    tokenizer: str | None = None
    """A tokenizer folder or alias; None: the one the model's name implies, if any."""
    probe: bool = True
    spec_metrics: bool = False
    """Read vLLM's spec-decode counters on the server's ``/metrics`` before and after each
    call (approximate on a server that others use too; docs/speculative.md)."""
    reasoning: tuple[str, str] | None = DEFAULT_REASONING_DELIMITERS
    """Delimiters of reasoning written in the text, for servers without a reasoning
    parser (the ``reasoning`` option); None: never split the text."""

    @classmethod
    def from_spec(cls, spec: EngineSpec) -> OpenAISettings:
        spec.check_options(OPTIONS)
        options = spec.options
        base_url = spec.target.rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineSpecError(
                f"engine spec '{spec}': the target must be the server's http(s) API root, "
                f"as in 'openai:{DEFAULT_BASE_URL}?model=NAME', got {spec.target!r}"
            )
        endpoint = options.get("endpoint", "auto")
        if endpoint not in ENDPOINTS:
            raise EngineSpecError(
                f"engine spec '{spec}': endpoint must be one of {', '.join(ENDPOINTS)}, "
                f"got {endpoint!r}"
            )
        try:
            timeout_s = float(options.get("timeout_s", "60"))
        except ValueError:
            timeout_s = 0.0
        if not timeout_s > 0:
            raise EngineSpecError(
                f"engine spec '{spec}': timeout_s must be a number of seconds > 0, "
                f"got {options.get('timeout_s')!r}"
            )
        concurrency = options.get("max_concurrency", "16")
        if not concurrency.isdigit() or int(concurrency) < 1:
            raise EngineSpecError(
                f"engine spec '{spec}': max_concurrency must be an integer >= 1, "
                f"got {concurrency!r}"
            )
        flags = {}
        for name, default in (
            ("continuous_usage", "false"),
            ("probe", "true"),
            ("spec_metrics", "false"),
        ):
            value = options.get(name, default).lower()
            if value not in BOOLEANS:
                raise EngineSpecError(
                    f"engine spec '{spec}': {name} must be true or false, got {options[name]!r}"
                )
            flags[name] = BOOLEANS[value]
        tokens = next((m for m in TOKEN_MODES if m == options.get("tokens", "auto")), None)
        if tokens is None:
            raise EngineSpecError(
                f"engine spec '{spec}': tokens must be one of {', '.join(TOKEN_MODES)}, "
                f"got {options['tokens']!r}"
            )
        retries = options.get("retries", "2")
        if not retries.isdigit():
            raise EngineSpecError(
                f"engine spec '{spec}': retries must be an integer >= 0, got {retries!r}"
            )
        api_key_env = options.get("api_key_env") or None
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise EngineSpecError(
                f"engine spec '{spec}': api_key_env={api_key_env} names an environment "
                f"variable that is not set (or empty); export it or drop the option"
            )
        return cls(
            base_url=base_url,
            model=options.get("model") or None,
            endpoint=endpoint,
            timeout_s=timeout_s,
            max_concurrency=int(concurrency),
            continuous_usage=flags["continuous_usage"],
            api_key_env=api_key_env,
            retries=int(retries),
            tokens=tokens,
            tokenizer=options.get("tokenizer") or None,
            probe=flags["probe"],
            spec_metrics=flags["spec_metrics"],
            reasoning=spec.reasoning_delimiters(),
        )
