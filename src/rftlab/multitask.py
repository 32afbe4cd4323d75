"""Multi-task runs (`data.mix`): each task's data, training examples and evaluation, for the trainer.

The paper trains on one task; its future work asks what a second one does. With `data.mix.tasks`
set, a run loads every named task (`rftlab.tasks.mix.TASKS`) with its own train pool and test set,
chooses `data.mix.examples[t]` training examples of each task by the base model's Pass@1 on that
task's own candidate pool (the same `data.difficulty` bucket for every task), draws
`data.mix.per_round[t]` of them per round (`MixSampler`), and scores each response with its task's
answer format (GSM8K's `####` for gsm8k-style prompts, `\\boxed{}` for MATH).

Evaluation is per task, every task with its own seed:
- `train/<task>/pass_at_1` on that task's training examples; `train/pass_at_1` pools every training
  example, as a single-task run with several examples does;
- `test/<task>/pass_at_1` (with `_low`, `_high`, `test/<task>/format_rate`) on each trained task's
  and each `data.mix.eval_tasks` task's test set; `test/pass_at_1` pools the *trained* tasks' test
  problems (equal test sizes: the mean over tasks), so it still means "test Pass@1 on what the run
  trains on", and an evaluated-only task never enters it.
A run without `data.mix.tasks` never comes here: its numbers are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rftlab.config import Config
from rftlab.errors import RftlabError
from rftlab.evaluation import EvalResult, decomposition_row, evaluate, run_eval_settings
from rftlab.policy import Policy
from rftlab.selection import DifficultySettings, candidate_pool, estimate_difficulty, select_by_difficulty
from rftlab.tasks.mix import MixSampler, TaskSpec, load_task_split, split_by_task, task_spec
from rftlab.tasks.problem import Problem


@dataclass
class MixData:
    """Every task of a multi-task run: its train pool, its test set and its answer format."""

    tasks: list[str]  # trained, in data.mix.tasks order
    eval_tasks: list[str]  # evaluated only
    train: dict[str, list[Problem]] = field(default_factory=dict)  # trained tasks only
    test: dict[str, list[Problem]] = field(default_factory=dict)  # trained and evaluated-only tasks
    answer_format: dict[str, str] = field(default_factory=dict)

    @property
    def evaluated(self) -> list[str]:
        return self.tasks + self.eval_tasks

    @property
    def train_union(self) -> list[Problem]:
        return [p for t in self.tasks for p in self.train[t]]

    @property
    def test_union(self) -> list[Problem]:
        """The trained tasks' test problems: what `test/pass_at_1` pools."""
        return [p for t in self.tasks for p in self.test[t]]


def load_mix(cfg: Config) -> MixData:
    """Each task's train pool and its fixed test subset (the first data.test_size held-out problems).

    A task whose training and test problems come from one split (MATH-500) keeps its candidate
    pool out of its test subset, as `trainer.load_task` does for a single task.
    """
    mix = cfg.data.mix
    data = MixData(list(mix.tasks), list(mix.eval_tasks))
    for name in data.evaluated:
        spec = task_spec(name)
        test = load_task_split(name, "test", on_bad_row=cfg.data.on_bad_row)
        held_out: set[str] = set()
        if name in mix.tasks:
            train = load_task_split(name, "train", on_bad_row=cfg.data.on_bad_row)
            data.train[name] = train
            if spec.train_split == spec.test_split:
                held_out = {p.id for p in candidate_pool(train, cfg.data.difficulty_pool, cfg.data.selection_seed)}
        data.test[name] = [p for p in test if p.id not in held_out][: cfg.data.test_size]
        if not data.test[name]:
            raise RftlabError(f"data.mix: task {name!r} has no test problems left after holding out its candidates")
    return data


def with_answer_formats(cfg: Config, data: MixData, style: str | None) -> MixData:
    """Fill in each task's reward extraction (data.answer_format, resolved for its prompt style)."""
    for name in data.evaluated:
        first = data.test[name][0]
        data.answer_format[name] = cfg.resolved_answer_format(style or first.prompt_style)
    return data


def sampler(cfg: Config) -> MixSampler:
    mix = cfg.data.mix
    return MixSampler(tuple(mix.tasks), tuple(mix.example_counts), tuple(mix.round_counts), cfg.seed)


def choose_mix_examples(
    cfg: Config,
    policy: Policy,
    data: MixData,
    settings_for: Callable[[TaskSpec, str], DifficultySettings],
) -> tuple[list[Problem], dict[str, float]]:
    """Each task's training examples, task after task: the first of its candidate pool in the bucket.

    `settings_for(task spec, answer format)` gives the cache key of a task's base Pass@1 estimate.
    """
    examples: list[Problem] = []
    estimates: dict[str, float] = {}
    for name, count in zip(data.tasks, cfg.data.mix.example_counts, strict=True):
        pool = candidate_pool(data.train[name], cfg.data.difficulty_pool, cfg.data.selection_seed)
        if cfg.data.difficulty == "any":
            chosen = pool[:count]
        else:
            base = estimate_difficulty(
                policy, pool, settings_for(task_spec(name), data.answer_format[name]), batch_size=cfg.eval.batch_size
            )
            try:
                chosen = select_by_difficulty(pool, base, cfg.data.difficulty, count)
            except RftlabError as err:
                raise RftlabError(f"data.mix task {name!r}: {err}") from None
            estimates.update({p.id: base[p.id] for p in chosen})
        if len(chosen) < count:
            raise RftlabError(f"data.mix task {name!r}: {len(chosen)} candidates for {count} training examples")
        examples += chosen
    return examples, estimates


# ----------------------------------------------------------------------------- evaluation


def pooled(results: list[EvalResult]) -> EvalResult:
    """Several evaluations with the same samples per problem, as one over all their problems."""
    n = results[0].n
    problems = [len(r.correct) for r in results]
    total = sum(problems)
    return EvalResult(
        n=n,
        correct=[c for r in results for c in r.correct],
        mean_response_tokens=sum(r.mean_response_tokens * k for r, k in zip(results, problems, strict=True)) / total,
        format_rate=sum(r.format_rate * k for r, k in zip(results, problems, strict=True)) / total,
        formatted=-1 if any(r.formatted < 0 for r in results) else sum(r.formatted for r in results),
    )


def result_keys(prefix: str, result: EvalResult) -> dict[str, float]:
    """`<prefix>/pass_at_1` with its 95% interval, the format rate, and Pass@1 split into format rate x
    accuracy among well-formed answers (`evaluation.decomposition_row`), as a single-task row has them."""
    low, high = result.interval
    return {
        f"{prefix}/pass_at_1": result.pass_at_1,
        f"{prefix}/pass_at_1_low": low,
        f"{prefix}/pass_at_1_high": high,
        f"{prefix}/format_rate": result.format_rate,
        **(decomposition_row(prefix, result) if result.formatted >= 0 else {}),
    }


def evaluate_mix(
    cfg: Config,
    policy: Policy,
    data: MixData,
    train_examples: list[Problem],
    style: str | None,
    seed_for: Callable[[str], int],
    round_: int,
) -> dict[str, float]:
    """The eval row of a multi-task run: pooled keys as a single-task row has, then per-task keys.

    `seed_for(purpose)` is the run's derived seed of this round for `purpose` (eval/train/<task>, ...).
    """
    common = run_eval_settings(cfg, style)
    show = cfg.run.progress
    by_task = split_by_task(train_examples, data.tasks)
    on_train: dict[str, EvalResult] = {}
    for name in data.tasks:
        on_train[name] = evaluate(
            policy,
            by_task[name],
            answer_format=data.answer_format[name],
            samples=cfg.eval.train_samples,
            greedy=False,
            seed=seed_for(f"eval/train/{name}"),
            progress=f"eval train {name} (round {round_})" if show else None,
            **common,
        )
    on_test: dict[str, EvalResult] = {}
    for name in data.evaluated:
        on_test[name] = evaluate(
            policy,
            data.test[name],
            answer_format=data.answer_format[name],
            samples=cfg.eval.test_samples,
            greedy=cfg.eval.test_mode == "greedy",
            seed=seed_for(f"eval/test/{name}"),
            progress=f"eval test {name} (round {round_})" if show else None,
            **common,
        )
    train_all = pooled([on_train[t] for t in data.tasks])
    test_all = pooled([on_test[t] for t in data.tasks])
    row = {
        **result_keys("train", train_all),
        **result_keys("test", test_all),
        "test/response_tokens": test_all.mean_response_tokens,
    }
    for k in cfg.eval.pass_k:
        row[f"test/pass_at_{k}"] = test_all.pass_at(k)
    for name in data.tasks:
        row.update(result_keys(f"train/{name}", on_train[name]))
    for name in data.evaluated:
        row.update(result_keys(f"test/{name}", on_test[name]))
    return row
