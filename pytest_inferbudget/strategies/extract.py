"""Answer extractors: ``(text) -> str | None``, ``None`` when the text holds no answer.

Any callable of that shape works wherever a strategy takes ``extract=``; these are
the common ones. They never raise on odd text: they return ``None``.
"""

from __future__ import annotations

import re
import string

from pytest_inferbudget.errors import StrategyConfigError
from pytest_inferbudget.strategies.base import Extractor

_NUMBER = re.compile(
    # a minus sign only where it cannot be a hyphen or a range ("3-4" ends in 4, not -4)
    r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?"
    r"|\d+(?:,\d{3})*(?:\.\d+)?"
)


def normalize_number(text: str) -> str:
    """Canonical form of a number: ``"1,234.50"`` -> ``"1234.5"``, ``"7.0"`` -> ``"7"``,
    ``"007"`` -> ``"7"``, ``"-0"`` -> ``"0"``."""
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("-").replace(",", "")
    whole, _, fraction = digits.partition(".")
    fraction = fraction.rstrip("0")
    number = str(int(whole or "0")) + (f".{fraction}" if fraction else "")
    return "0" if number == "0" else sign + number


def last_number(text: str) -> str | None:
    """The last number in the text, normalized by :func:`normalize_number`.

    Thousands separators (``1,234``) and decimals (``2.50``) are understood; a
    sentence's final period is not part of the number. ``None`` when there is none.
    """
    matches = _NUMBER.findall(text)
    return normalize_number(matches[-1]) if matches else None


def boxed(text: str) -> str | None:
    r"""The content of the last well-formed ``\boxed{...}``, nested braces included.

    ``\boxed{\frac{1}{2}}`` gives ``\frac{1}{2}``. ``None`` when there is no
    ``\boxed`` with balanced braces.
    """
    position = len(text)
    while True:
        position = text.rfind("\\boxed", 0, position)
        if position < 0:
            return None
        content = _braced(text, position + len("\\boxed"))
        if content is not None:
            return content.strip()


def _braced(text: str, start: int) -> str | None:
    index = start
    while index < len(text) and text[index].isspace():
        index += 1
    if index >= len(text) or text[index] != "{":
        return None
    depth = 0
    for end in range(index, len(text)):
        if text[end] == "{":
            depth += 1
        elif text[end] == "}":
            depth -= 1
            if depth == 0:
                return text[index + 1 : end]
    return None


_EDGE = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb"  # curly quotes, guillemets


def first_word(text: str) -> str | None:
    """The first word, without surrounding punctuation or markup: ``"**Paris**."`` -> ``"Paris"``.

    Case is kept (pass ``normalize=str.lower`` to vote case-blind). ``None`` when
    the text has no word.
    """
    for token in text.split():
        word = token.strip(_EDGE)
        if word:
            return word
    return None


def regex(pattern: str | re.Pattern[str], *, group: int | str | None = None) -> Extractor:
    """An extractor returning the LAST match of ``pattern``, stripped.

    It returns ``group`` of the match; by default group 1 when the pattern has a group,
    else the whole match. An invalid pattern or group is a ``StrategyConfigError`` now,
    not at the first call.
    """
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise StrategyConfigError(f"regex: invalid pattern {pattern!r}: {exc}") from exc
    which: int | str = group if group is not None else (1 if compiled.groups else 0)
    if isinstance(which, int) and not 0 <= which <= compiled.groups:
        raise StrategyConfigError(
            f"regex: pattern {compiled.pattern!r} has {compiled.groups} group(s), no group {which}"
        )
    if isinstance(which, str) and which not in compiled.groupindex:
        raise StrategyConfigError(
            f"regex: pattern {compiled.pattern!r} has no group named {which!r}"
        )

    def extract(text: str) -> str | None:
        last = None
        for last in compiled.finditer(text):  # noqa: B007 - only the last match is kept
            pass
        if last is None:
            return None
        value = last.group(which)
        return value.strip() if value is not None else None

    extract.__name__ = extract.__qualname__ = f"regex({compiled.pattern!r})"
    return extract


__all__ = ["boxed", "first_word", "last_number", "normalize_number", "regex"]
