"""pass@k against brute-force enumeration; interval sanity."""

import itertools
import math

import pytest

from rftlab.evaluation import pass_at_k, wilson_interval


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c correct) that contain at least one correct sample."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_closed_forms():
    assert pass_at_k(16, 4, 1) == pytest.approx(4 / 16)  # pass@1 is the plain mean
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # only 4 wrong: every 5-subset has a correct one
    assert pass_at_k(200, 3, 100) == pytest.approx(1 - math.comb(197, 100) / math.comb(200, 100))


def test_pass_at_k_rejects_impossible_inputs():
    for n, c, k in [(4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_wilson_interval_contains_estimate_and_is_bounded():
    for n in [1, 16, 200]:
        for c in range(0, n + 1, max(1, n // 8)):
            low, high = wilson_interval(c, n)
            assert 0.0 <= low <= c / n <= high <= 1.0
    low, high = wilson_interval(0, 16)
    assert low == 0.0 and 0.15 < high < 0.25  # Wilson upper bound for 0/16 is about 0.194
    assert (
        wilson_interval(8, 16)[1] - wilson_interval(8, 16)[0]
        > wilson_interval(100, 200)[1] - wilson_interval(100, 200)[0]
    )
