"""The text a local engine tokenizes for a request, shared so that the transformers and
vLLM engines count the same prompt tokens for the same request."""

from __future__ import annotations

from typing import Any

from pytest_inferbudget.errors import EngineError
from pytest_inferbudget.records import Request


def prompt_text(tokenizer: Any, request: Request, spec: str) -> str:
    """The chat template rendered with the generation prompt, then the prefill; raw text
    for ``chat=False``. A chat template holds its special tokens already, so tokenize the
    result with ``add_special_tokens=not request.chat``."""
    if not request.chat:
        return str(request.prompt) + request.prefill
    if not getattr(tokenizer, "chat_template", None):
        raise EngineError(
            f"{spec}: the model has no chat template; pass chat=False to send the prompt as "
            f"raw text"
        )
    messages = (
        [{"role": "user", "content": request.prompt}]
        if isinstance(request.prompt, str)
        else [dict(m) for m in request.prompt]
    )
    text: str = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text + request.prefill
