"""Entropy of a next-token distribution, whole or from its top k (difficulty routing)."""

from __future__ import annotations

import math

import pytest

from pytest_inferbudget.metrics import entropy, top_k_entropy


def test_entropy_of_hand_distributions() -> None:
    assert entropy([0.0]) == 0.0  # one certain token
    assert entropy([math.log(0.5)] * 2) == pytest.approx(math.log(2))
    assert entropy([math.log(1 / 7)] * 7) == pytest.approx(math.log(7))  # uniform: ln V
    p = [0.5, 0.25, 0.25]
    assert entropy(math.log(x) for x in p) == pytest.approx(1.5 * math.log(2))
    # an impossible token adds nothing (0 log 0 = 0)
    assert entropy([0.0, -math.inf]) == 0.0


def test_entropy_refuses_what_is_not_a_whole_distribution() -> None:
    with pytest.raises(ValueError, match="top_k_entropy"):
        entropy([math.log(0.5), math.log(0.3)])  # 0.8 of the mass
    with pytest.raises(ValueError, match="<= 0"):
        entropy([0.5])
    with pytest.raises(ValueError, match="<= 0"):
        entropy([float("nan")])
    with pytest.raises(ValueError, match="empty"):
        entropy([])


def test_top_k_entropy_renormalises_the_k_listed() -> None:
    # the top 2 of [0.4, 0.4, 0.2]: renormalised to [0.5, 0.5], the tail ignored
    assert top_k_entropy([math.log(0.4), math.log(0.4)]) == pytest.approx(math.log(2))
    # the top 3 of a distribution with a long tail: p_i / sum p, then -sum p ln p
    top = [0.6, 0.2, 0.1]
    q = [x / sum(top) for x in top]
    expected = -sum(x * math.log(x) for x in q)
    assert top_k_entropy(math.log(x) for x in top) == pytest.approx(expected)
    # at most ln k; a whole distribution gives its exact entropy either way
    assert top_k_entropy([-1.0, -2.0, -3.0]) <= math.log(3)
    whole = [math.log(x) for x in (0.5, 0.25, 0.25)]
    assert top_k_entropy(whole) == pytest.approx(entropy(whole))
    # scale-free: very small log-probabilities do not underflow
    assert top_k_entropy([-1000.0, -1000.0]) == pytest.approx(math.log(2))


def test_top_k_entropy_needs_some_mass() -> None:
    with pytest.raises(ValueError, match="-inf"):
        top_k_entropy([-math.inf, -math.inf])
    assert top_k_entropy([-0.1]) == 0.0  # one listed token: certain among the listed
