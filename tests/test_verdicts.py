"""The verdict engine: every rule on hand-sized intervals (boundaries included), and the bandit lab's
former hand-coded verdicts reproduced by typed rules on a grid that hits every boundary."""

from __future__ import annotations

import itertools
import math

import pytest

from rftlab.verdicts import AnyOf, Condition, Interval, Rule, combine_all, combine_any, verdict

A, D, N = "agrees", "disagrees", "inconclusive"


@pytest.mark.parametrize(
    ("rule", "t", "low", "high", "expected"),
    [
        ("gt", 0.0, 0.1, 0.2, A),
        ("gt", 0.0, -0.1, 0.0, D),
        ("gt", 0.0, 0.0, 0.1, N),
        ("lt", 0.0, -0.2, -0.1, A),
        ("lt", 0.0, 0.0, 0.1, D),
        ("lt", 0.0, -0.1, 0.0, N),
        ("at_most", 0.05, -0.1, 0.05, A),
        ("at_most", 0.05, 0.01, 0.2, D),
        ("at_most", 0.05, -0.1, 0.2, N),
        ("differs", 0.05, 0.01, 0.2, A),
        ("differs", 0.05, -0.05, 0.05, D),
        ("differs", 0.05, -0.1, 0.1, N),
        ("above", 0.0, 0.1, 0.2, A),
        ("above", 0.0, -0.2, -0.1, D),
        ("above", 0.0, -0.1, 0.0, N),
        ("below", 0.0, -0.2, -0.1, A),
        ("below", 0.0, 0.1, 0.2, D),
        ("below", 0.0, 0.0, 0.1, N),
        ("at_least", 0.05, 0.05, 0.05, A),
        ("at_least", 0.05, 0.0, 0.04, D),
        ("at_least", 0.05, 0.0, 0.1, N),
    ],
)
def test_each_rule_on_hand_sized_intervals(rule, t, low, high, expected):
    assert verdict(rule, t, Interval((low + high) / 2, low, high, 10)) == expected


def test_too_few_seeds_or_nan_is_inconclusive():
    assert verdict("gt", 0.0, Interval(1.0, 0.5, 1.5, 2)) == N
    assert verdict("gt", 0.0, Interval(1.0, math.nan, 1.5, 10)) == N


def test_disagree_threshold_of_above_and_below():
    assert verdict("below", 0.1, Interval.point(0.3, 10), disagree=0.5) == N
    assert verdict("below", 0.1, Interval.point(0.6, 10), disagree=0.5) == D
    assert verdict("above", 0.5, Interval.point(0.0, 10), disagree=-math.inf) == N


def test_combinations():
    assert combine_all([]) == N and combine_any([]) == N
    assert combine_all([A, N]) == N and combine_all([A, D]) == D
    assert combine_any([D, A]) == A and combine_any([D, D]) == D


GRID = [-0.1, -0.05, 0.0, 0.05, 0.1]
INTERVALS = [(lo, hi) for lo, hi in itertools.product(GRID, GRID) if lo <= hi]


def old_direction(low, high, sign, delta):
    """rftlab.bandit.pipeline.verdict_direction before the engine (kept here as the reference)."""
    if sign > 0:
        return A if low > delta else D if high < delta else N
    return A if high < -delta else D if low > -delta else N


def iv(lo, hi):
    return Interval((lo + hi) / 2, lo, hi, 100)


@pytest.mark.parametrize(("f", "s"), list(itertools.product(INTERVALS, INTERVALS)))
def test_l2_rule_reproduces_the_hand_coded_verdict(f, s):
    old = A if f[1] < 0 and s[0] > 0 else D if f[0] > 0 or s[1] < 0 else N
    rule = Rule(all_of=(Condition("below", 0.0, iv(*f)), Condition("above", 0.0, iv(*s))))
    assert rule.verdict() == old


@pytest.mark.parametrize(("u", "ut", "t"), list(itertools.product(INTERVALS[::2], INTERVALS[::2], INTERVALS)))
def test_l1_rule_reproduces_the_hand_coded_verdict(u, ut, t):
    delta = 0.05
    less_stable, not_better = u[0] > 0 or ut[0] > 0, t[1] < delta
    old = A if less_stable and not_better else D if t[0] > delta or (u[1] < 0 and ut[1] < 0) else N
    rule = Rule(
        all_of=(
            AnyOf((Condition("above", 0.0, iv(*u)), Condition("above", 0.0, iv(*ut)))),
            Condition("below", delta, iv(*t)),
        )
    )
    assert rule.verdict() == old


@pytest.mark.parametrize(("d", "gain"), list(itertools.product(INTERVALS, GRID)))
def test_l3_rule_with_its_gate_reproduces_the_hand_coded_verdict(d, gain):
    old = old_direction(d[0], d[1], -1, 0.05) if gain >= 0.05 else N
    rule = Rule(all_of=(Condition("below", -0.05, iv(*d)),), requires=(Condition("at_least", 0.05, iv(gain, gain)),))
    assert rule.verdict() == old


@pytest.mark.parametrize(("m1", "m2", "gain"), list(itertools.product([0.8, 0.9, 0.95], [0.9, 0.95], INTERVALS)))
def test_l0_rule_reproduces_the_hand_coded_verdict(m1, m2, gain):
    learns = m1 > 0.9 and m2 > 0.9
    old = A if learns and gain[0] > 0 else D if not learns or gain[1] < 0 else N
    rule = Rule(
        all_of=(Condition("gt", 0.9, iv(m1, m1)), Condition("gt", 0.9, iv(m2, m2)), Condition("above", 0.0, iv(*gain)))
    )
    assert rule.verdict() == old


@pytest.mark.parametrize(("fail", "mass"), list(itertools.product([0.3, 0.5, 0.7], [0.05, 0.1, 0.3, 0.5, 0.7])))
def test_l4_rule_reproduces_the_hand_coded_verdict(fail, mass):
    old = A if fail > 0.5 and mass < 0.1 else D if mass > 0.5 else N
    rule = Rule(
        all_of=(
            Condition("above", 0.5, iv(fail, fail), disagree=-math.inf),
            Condition("below", 0.1, iv(mass, mass), disagree=0.5),
        )
    )
    assert rule.verdict() == old
