"""The verdict engine: a stated rule applied to an interval, and verdicts combined over conditions.

One engine for both kinds of findings: the LLM pipeline's claims (`rftlab.pipeline.findings`, 95%
bootstrap intervals over seeds) and the bandit lab's counterparts (`rftlab.bandit.pipeline`, 99%
paired normal intervals). A leaf (no rftlab imports), so the bandit simulator's floor can use it.

Rules, on an interval [low, high] of n seeds (a point value is the interval [v, v]):
- gt t:       agrees if low > t;   disagrees if high <= t; else inconclusive.
- lt t:       agrees if high < t;  disagrees if low >= t;  else inconclusive.
- at_most d:  agrees if high <= d; disagrees if low > 0;   else inconclusive.
- differs d:  agrees if the interval excludes 0; disagrees if it lies within [-d, d]; else inconclusive.
- above t:    agrees if low > t;   disagrees if high < u;  else inconclusive (u: `disagree`, default t).
- below t:    agrees if high < t;  disagrees if low > u;   else inconclusive (u: `disagree`, default t).
- at_least t: agrees if low >= t;  disagrees if high < t;  else inconclusive.
- Fewer than `min_seeds` seeds (or a nan end): inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

VERDICTS = ("agrees", "disagrees", "inconclusive")
MIN_SEEDS = 3
RULES = ("gt", "lt", "at_most", "differs", "above", "below", "at_least")


def smoke_caveat(scale: str) -> str:
    """The caveat every verdict of a quick (smoke-test) run carries; `scale` says how small it was."""
    return f"quick mode ({scale}) is a smoke test: it cannot support a verdict; run without --quick for one"


def _decide(agree: bool, disagree: bool) -> str:
    return "agrees" if agree else "disagrees" if disagree else "inconclusive"


def verdict(rule: str, threshold: float, est, *, min_seeds: int = MIN_SEEDS, disagree: float | None = None) -> str:
    """The rule applied to `est` (anything with `low`, `high` and `n`); see the module docstring."""
    low, high, t = est.low, est.high, float(threshold)
    u = t if disagree is None else float(disagree)
    if est.n < min_seeds or math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if rule == "gt":
        return _decide(low > t, high <= t)
    if rule == "lt":
        return _decide(high < t, low >= t)
    if rule == "at_most":
        return _decide(high <= t, low > 0)
    if rule == "differs":
        return _decide(low > 0 or high < 0, -t <= low and high <= t)
    if rule == "above":
        return _decide(low > t, high < u)
    if rule == "below":
        return _decide(high < t, low > u)
    if rule == "at_least":
        return _decide(low >= t, high < t)
    raise ValueError(f"unknown rule {rule!r}")


def combine_all(verdicts: Sequence[str]) -> str:
    """agrees if every verdict agrees, disagrees if any disagrees, else (or with none) inconclusive."""
    if verdicts and all(v == "agrees" for v in verdicts):
        return "agrees"
    return "disagrees" if "disagrees" in verdicts else "inconclusive"


def combine_any(verdicts: Sequence[str]) -> str:
    """agrees if some verdict agrees, disagrees if every one disagrees, else inconclusive."""
    if "agrees" in verdicts:
        return "agrees"
    return "disagrees" if verdicts and all(v == "disagrees" for v in verdicts) else "inconclusive"


@dataclass(frozen=True)
class Interval:
    """A statistic with its interval over n seeds."""

    value: float
    low: float
    high: float
    n: int

    @staticmethod
    def point(value: float, n: int) -> Interval:
        return Interval(value, value, value, n)


@dataclass(frozen=True)
class Condition:
    """One rule on one statistic."""

    rule: str
    threshold: float
    est: Interval
    disagree: float | None = None  # `above`/`below`: the other side's threshold (-inf/inf: never)

    def verdict(self) -> str:
        return verdict(self.rule, self.threshold, self.est, disagree=self.disagree)


@dataclass(frozen=True)
class AnyOf:
    """Conditions of which one agreeing suffices (combine_any)."""

    conditions: tuple[Condition, ...]

    def verdict(self) -> str:
        return combine_any([c.verdict() for c in self.conditions])


@dataclass(frozen=True)
class Rule:
    """A finding's rule: every condition must agree (combine_all); `requires` gates it (inconclusive
    unless each of them agrees, however the conditions come out)."""

    all_of: tuple[Condition | AnyOf, ...] = ()
    requires: tuple[Condition, ...] = field(default=())

    def verdict(self) -> str:
        if any(c.verdict() != "agrees" for c in self.requires):
            return "inconclusive"
        return combine_all([c.verdict() for c in self.all_of])
