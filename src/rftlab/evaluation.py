"""Pass@1 and pass@k estimators, confidence intervals, and evaluating a policy on problems.

- `pass_at_k(n, c, k)`: the unbiased estimator 1 - C(n-c, k) / C(n, k) of Chen et al. (2021),
  for n samples of which c are correct (a biased "at least one of the first k" is not used).
- `wilson_interval`: the 95% Wilson score interval of a proportion (well behaved at 0 and 1,
  where a train-example Pass@1 estimated from 16 samples often sits).
- `decomposition_row`: Pass@1 = format rate x accuracy among well-formed answers. A response is
  well formed when the reward's extraction (`rewards.extract_answer` with the run's answer format)
  finds a final answer in it, whatever its value; a correct response is always well formed (`score`
  extracts first), so the product is exact. Each factor gets its Wilson interval (the format rate over
  all responses, the accuracy over the well-formed ones), so a reader sees which one moved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rftlab.config import Config
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
    formatted: int = -1  # responses with an extractable answer (-1: not counted)

    @property
    def pass_at_1(self) -> float:
        return sum(self.correct) / (self.n * len(self.correct))

    def pass_at(self, k: int) -> float:
        return sum(pass_at_k(self.n, c, k) for c in self.correct) / len(self.correct)

    @property
    def responses(self) -> int:
        """Responses scored: n per problem."""
        return self.n * len(self.correct)

    @property
    def accuracy_given_format(self) -> float | None:
        """Share correct among the well-formed responses; None when no response was well formed."""
        return sum(self.correct) / self.formatted if self.formatted > 0 else None

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
    return score_responses(
        batch.texts,
        batch.prompt_index,
        [p.answer for p in problems],
        answer_format,
        n=n,
        mean_response_tokens=float(batch.response_lengths.float().mean()),
    )


def score_responses(
    texts: Sequence[str],
    prompt_index: Sequence[int],
    answers: Sequence[str],
    answer_format: str,
    *,
    n: int,
    mean_response_tokens: float = 0.0,
) -> EvalResult:
    """Score responses (`texts[j]` answers problem `prompt_index[j]`, reference `answers[i]`, n each).

    Counts per problem the correct responses (the reward, `rewards.score`) and overall the well-formed
    ones (the reward's extraction finds a final answer). Never raises on model output.
    """
    from rftlab.rewards import extract_answer

    correct = [0] * len(answers)
    formatted = 0
    for text, i in zip(texts, prompt_index, strict=True):
        correct[i] += int(score(text, answers[i], answer_format))
        formatted += extract_answer(text, answer_format) is not None
    return EvalResult(
        n=n,
        correct=correct,
        mean_response_tokens=mean_response_tokens,
        format_rate=formatted / len(texts),
        formatted=formatted,
    )


def decomposition_row(prefix: str, result: EvalResult) -> dict[str, float | int | None]:
    """`{prefix}/format_rate_low|high`, `{prefix}/accuracy_given_format[_low|_high]` and `{prefix}/responses`.

    Pass@1 = format_rate x accuracy_given_format (pooled over every response scored). The format
    rate's 95% Wilson interval is over all responses, the accuracy's over the well-formed ones; an
    evaluation with no well-formed response has accuracy None (undefined), never a division error.
    """
    if result.formatted < 0:
        raise ValueError("decomposition_row needs an EvalResult with its `formatted` count")
    fmt_low, fmt_high = wilson_interval(result.formatted, result.responses)
    acc = result.accuracy_given_format
    acc_low, acc_high = (None, None) if acc is None else wilson_interval(sum(result.correct), result.formatted)
    return {
        f"{prefix}/format_rate_low": fmt_low,
        f"{prefix}/format_rate_high": fmt_high,
        f"{prefix}/accuracy_given_format": acc,
        f"{prefix}/accuracy_given_format_low": acc_low,
        f"{prefix}/accuracy_given_format_high": acc_high,
        f"{prefix}/responses": result.responses,
    }


def run_eval_settings(cfg: Config, prompt_style: str | None) -> dict:
    """The `evaluate` keyword arguments a run's config sets (sampling, length, batching, engine), shared by
    the single-task and the multi-task evaluation so the two cannot drift apart."""
    return dict(
        prompt_style=prompt_style,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        max_new_tokens=cfg.rollout.max_new_tokens,
        batch_size=cfg.eval.batch_size,
        engine=cfg.rollout.engine,
        sort_by_length=cfg.eval.sort_by_length,
    )
