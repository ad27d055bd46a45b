"""The model's own tokenizer, counting tokens a server did not report.

As ``vllm bench serve`` does when usage is missing, the output text is tokenized again:
an estimate (a text need not tokenize back into the tokens that made it), labelled
``tokenizer`` on every generation it counted. The end-of-sequence token that stopped a
generation has no text; it is counted, as the in-process engines and vLLM's usage count
it. Prompts are counted through the tokenizer's chat template, which may differ from the
server's (llama.cpp's ``--chat_format``), so prompt counts are the rougher estimate.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pytest_inferbudget.engines.openai_wire import TokenMode
from pytest_inferbudget.engines.prompts import prompt_text
from pytest_inferbudget.errors import EngineSpecError, EngineUnavailableError
from pytest_inferbudget.records import Request

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def default_tokenizer(model: str) -> str | None:
    """The tokenizer a served model's name implies: a packaged alias (also through its
    GGUF's file name, which llama.cpp serves as the model's id) or a local folder."""
    from pytest_inferbudget.models import PACKAGED_MODELS

    name = model.rstrip("/")
    for alias, packaged in PACKAGED_MODELS.items():
        if name == alias or Path(name).name == Path(packaged.gguf_member).name:
            return alias
    folder = Path(name).expanduser()
    if any((folder / f).is_file() for f in TOKENIZER_FILES):
        return str(folder)
    return None


def resolve_tokenizer(option: str, spec: str) -> Path:
    """A local tokenizer folder for the ``tokenizer`` option: an alias (provisioned like
    the default model) or a folder holding a Hugging Face tokenizer."""
    from pytest_inferbudget.models import PACKAGED_MODELS, resolve_model

    if option in PACKAGED_MODELS:
        return resolve_model(option, lambda line: None)
    folder = Path(option).expanduser()
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise EngineSpecError(
            f"engine spec '{spec}': tokenizer={option!r} is neither a known alias "
            f"({', '.join(PACKAGED_MODELS)}) nor a folder holding a Hugging Face tokenizer "
            f"({' or '.join(TOKENIZER_FILES)}); pass one of those"
        )
    return folder


def token_counter(
    option: str | None, mode: TokenMode, model: str, spec: str
) -> TokenCounter | None:
    """The tokenizer that counts what the server does not: the ``tokenizer`` option's,
    else the one the model's name implies; a folder is checked now, not mid-run, and the
    tokenizer loads only if a count is ever missing."""
    from pytest_inferbudget.models import PACKAGED_MODELS

    name = option or default_tokenizer(model)
    if name is None:
        if mode == "tokenizer":
            raise EngineSpecError(
                f"engine spec '{spec}': tokens=tokenizer, but no tokenizer is known for "
                f"model {model!r}; name one with ?tokenizer=FOLDER"
            )
        return None
    if option is not None and name not in PACKAGED_MODELS:
        resolve_tokenizer(name, spec)
    return TokenCounter(name, spec)


class TokenCounter:
    """Counts a request's prompt and a completion's tokens with a local tokenizer, loaded
    on first use (transformers is imported only then)."""

    def __init__(self, name: str, spec: str) -> None:
        self.name = name
        """The ``tokenizer`` option's value or the default that the model's name implied."""
        self._spec = spec
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                folder = resolve_tokenizer(self.name, self._spec)
                try:
                    from transformers import AutoTokenizer
                except ImportError as exc:
                    raise EngineUnavailableError(
                        f"{self._spec}: counting tokens the server did not report needs "
                        f"transformers ({exc}); pip install 'pytest-inferbudget[transformers]'"
                    ) from exc
                self._tokenizer = AutoTokenizer.from_pretrained(folder)
            return self._tokenizer

    def prompt_tokens(self, request: Request) -> int:
        tokenizer = self._load()
        text = prompt_text(tokenizer, request, self._spec)
        return len(tokenizer(text, add_special_tokens=not request.chat).input_ids)

    def completion_tokens(self, text: str, finish_reason: str) -> int:
        """Tokens of ``text``, plus the end-of-sequence token when the model stopped."""
        tokenizer = self._load()
        counted = len(tokenizer(text, add_special_tokens=False).input_ids)
        return counted + (1 if finish_reason == "stop" else 0)

    def length_tokens(self, text: str) -> int:
        """Tokens of a completion cut at its token limit (no end token)."""
        return self.completion_tokens(text, "length")
