"""Pass@1 and pass@k estimators, confidence intervals, and evaluating a policy on problems.

- `pass_at_k(n, c, k)`: the unbiased estimator 1 - C(n-c, k) / C(n, k) of Chen et al. (2021),
  for n samples of which c are correct (a biased "at least one of the first k" is not used).
- `wilson_interval`: the 95% Wilson score interval of a proportion (well behaved at 0 and 1,
  where a train-example Pass@1 estimated from 16 samples often sits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rftlab.policy import Policy
from rftlab.rewards import score
from rftlab.rollout import generate
from rftlab.tasks.problem import Problem

Z_95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k)/C(n, k) (Chen et al. 2021, eq. 1).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which is exact and never forms huge binomials.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion (successes may be fractional, e.g. a mean of per-problem rates)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 (p = 1) the lower (upper) bound is exactly 0 (1); say so instead of a rounding residue.
    low = 0.0 if p <= 0.0 else max(0.0, centre - half)
    high = 1.0 if p >= 1.0 else min(1.0, centre + half)
    return (low, high)


@dataclass
class EvalResult:
    """Per-problem correct counts from n samples each, and the estimates built on them."""

    n: int  # samples per problem
    correct: list[int]  # per problem
    mean_response_tokens: float
    format_rate: float  # share of responses with an extractable answer in the expected format

    @property
    def pass_at_1(self) -> float:
        return sum(self.correct) / (self.n * len(self.correct))

    def pass_at(self, k: int) -> float:
        return sum(pass_at_k(self.n, c, k) for c in self.correct) / len(self.correct)

    @property
    def interval(self) -> tuple[float, float]:
        """95% interval of Pass@1: over samples for one problem, over problems for a set."""
        if len(self.correct) == 1:
            return wilson_interval(self.correct[0], self.n)
        return wilson_interval(self.pass_at_1 * len(self.correct), len(self.correct))


def evaluate(
    policy: Policy,
    problems: Sequence[Problem],
    *,
    answer_format: str,
    prompt_style: str | None,
    samples: int,
    greedy: bool,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int,
    progress: str | Callable[[int, int], None] | None = None,
    engine: str = "hf",
    sort_by_length: bool = False,
) -> EvalResult:
    """Generate `samples` responses (or one greedy response) per problem and score them."""
    from rftlab.rewards import extract_answer

    prompts = [policy.prompt_text(p, prompt_style) for p in problems]
    n = 1 if greedy else samples
    batch = generate(
        policy,
        prompts,
        samples_per_prompt=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        greedy=greedy,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        engine=engine,
        sort_by_length=sort_by_length,
    )
    correct = [0] * len(problems)
    formatted = 0
    for text, i in zip(batch.texts, batch.prompt_index, strict=True):
        correct[i] += int(score(text, problems[i].answer, answer_format))
        formatted += extract_answer(text, answer_format) is not None
    return EvalResult(
        n=n,
        correct=correct,
        mean_response_tokens=float(batch.response_lengths.float().mean()),
        format_rate=formatted / len(batch),
    )
