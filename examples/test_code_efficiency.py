"""eff@k and pass@k on code the default model writes, run and timed in the sandbox.

Each test samples solutions to one task shipped in ``pytest_inferbudget/code/tasks/``,
and ``infer.score_code`` runs every sample in a contained child process against the
task's levels of tests: wrong code scores 0, correct code scores its CPU time against the
expert reference's (ENAMEL's score: about 1 at the reference's speed, 0 at ``alpha``
times its time). The budget markers then hold pass@k (is the code right?) and eff@k (is
the best of k samples fast?) to floors, beside the tokens it cost to get a right answer.

The floors are what SmolLM2-135M-Instruct reached here on CPU, under these seeds and
with seeds 1 and 2 as a check, with some margin below the lowest; see
docs/code-efficiency.md for the measured figures.
"""

from __future__ import annotations

import pytest

from pytest_inferbudget.code import example_task_path, load_task

IS_EVEN = load_task(example_task_path("is_even"))
IS_PRIME = load_task(example_task_path("is_prime"))
COUNT_PRIMES = load_task(example_task_path("count_primes"))


# Measured pass@1: 1.0 with seeds 0, 1 and 2 (12 of 12 samples right). No eff@k here: the
# reference spends under a millisecond, below the 1 ms floor on a level's time, so any right
# answer scores between 1 and 2 and eff@k would measure only correctness.
@pytest.mark.budget(pass_at_k=(1, 0.75), cost_of_pass=150)
def test_is_even(infer):
    out = infer(IS_EVEN.prompt, temperature=0.7, n=4, seed=0, max_new_tokens=96)
    samples = infer.score_code(out, IS_EVEN)
    assert len(samples) == 4


# Measured with seeds 0, 1, 2: pass@1 0.375, 0.625, 0.375; pass@4 0.93, 1.0, 0.93;
# eff@4 0.46, 0.39, 0.40; cost-of-pass 405, 213, 371 tokens. The model's right answers
# try every divisor up to the square root (twice the reference's work, which skips even
# divisors: score 0.5 at this task's alpha = 3) or count i up while i * i <= n (about four
# times the work: score 0).
@pytest.mark.budget(pass_at_k=(1, 0.25), cost_of_pass=600)
@pytest.mark.budget(pass_at_k=(4, 0.8), eff_at_k=(4, 0.3))
def test_is_prime(infer):
    out = infer(IS_PRIME.prompt, temperature=0.7, n=8, seed=0, max_new_tokens=160)
    samples = infer.score_code(out, IS_PRIME)
    assert all(s.passed or s.score == 0 for s in samples)  # wrong code never scores


@pytest.mark.xfail(
    strict=True,
    reason="eff@k needs a sieve within alpha = 2 of an expert's odd-only sieve; the model "
    "writes no correct count_primes at all (0 of 12 samples with seeds 0, 1, 2)",
)
@pytest.mark.budget(eff_at_k=(4, 0.5))
def test_count_primes_as_fast_as_an_expert(infer):
    prompt = "Complete this Python function. Reply with only the code.\n\n" + COUNT_PRIMES.prompt
    out = infer(prompt, temperature=0.7, n=4, seed=0, max_new_tokens=192)
    infer.score_code(out, COUNT_PRIMES)
