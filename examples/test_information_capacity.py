"""Information capacity: how well the model compresses a public-domain text per FLOP.

The text ships in ``data/declaration_of_independence.txt`` (the opening of the 1776
Declaration of Independence). ``infer.measure_text`` scores it with the model's prompt
log-probabilities; the budgets bound its bits per byte and its information capacity
(docs/metrics.md, "Information capacity and bits per byte").
"""

from __future__ import annotations

from pathlib import Path

import pytest

TEXT = (Path(__file__).parent / "data" / "declaration_of_independence.txt").read_text(
    encoding="utf-8"
)


@pytest.mark.budget(bits_per_byte=2.0, information_capacity=-1.0, text="declaration")
def test_the_model_compresses_the_declaration(infer):
    measured = infer.measure_text(TEXT, name="declaration")
    assert measured.scored_tokens > 500
