"""Named tasks for multi-task training, and the sampler that draws each round's examples from them.

A *task* is a problem family with its own train pool and its own test set: a synthetic family (the
generator of `rftlab.tasks.synthetic` with fixed knobs, one skill each) or a vendored dataset.
`TASKS` is the registry the config key `data.mix.tasks` names entries of:

- `add`, `sub`: 1-2 step word problems that only add / only subtract, within the distribution the
  built-in `tiny` was pretrained on (which mixed both). Measured on tiny, 48 held-out problems x 4
  samples at temperature 1: strict `####` Pass@1 0.22 (add) and 0.25 (sub); any answer line 0.58
  and 0.67. Two skills tiny can attempt, each with medium-difficulty examples to train on.
- `mul`: multiplication chains, never seen by tiny (its Pass@1 there: 0.02): for models that can.
- `long`: exactly 3 steps of + and -, longer than tiny's pretraining (1-2 steps).
- `gsm8k`, `math500`: the vendored datasets, for real models (MATH-500 has only a test split: its
  training candidates are held out of its test set, as for a single-task run).

Synthetic tasks draw train problems with seed 0 and test problems with seed 1 from the generator's
split of the question space (a hash of the text), so a test problem is never a train problem, nor
in tiny's pretraining corpus. Their ids carry the task (`add-3f2a...`), so the ids of a run's
training examples, rollout logs and the difficulty cache say which task a problem belongs to.

The sampler (`MixSampler`) draws, every round, `per_round[t]` of task t's training examples without
replacement within the task, from a generator seeded by a pure function of (run seed, round, task):
it keeps no state, so a resumed run draws exactly what an uninterrupted one draws.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rftlab.errors import ConfigError, DataError
from rftlab.tasks.problem import Problem

SYNTHETIC_TASK_SIZE = 500  # problems per split of a synthetic task (the single-task `synthetic` size)


@dataclass(frozen=True)
class TaskSpec:
    """One named task: where its problems come from, and a line of help."""

    name: str
    help: str
    dataset: str  # "synthetic" (generated with `knobs`) or a `load_problems` dataset name
    train_split: str = "train"
    test_split: str = "test"
    knobs: dict[str, Any] = field(default_factory=dict)  # rftlab.tasks.synthetic.generate_problems knobs


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            "add", "synthetic: 1-2 steps, additions only (in tiny's pretraining)", "synthetic", knobs={"ops": ("+",)}
        ),
        TaskSpec(
            "sub", "synthetic: 1-2 steps, subtractions only (in tiny's pretraining)", "synthetic", knobs={"ops": ("-",)}
        ),
        TaskSpec(
            "mul",
            "synthetic: 1-2 multiplications by 2-3 (not in tiny's pretraining)",
            "synthetic",
            knobs={"ops": ("*",), "max_factor": 3},
        ),
        TaskSpec(
            "long",
            "synthetic: exactly 3 steps of + and - (longer than tiny's pretraining)",
            "synthetic",
            knobs={"min_steps": 3, "max_steps": 3, "max_result": 40},
        ),
        TaskSpec("gsm8k", "vendored GSM8K (train 7473 / test 1319)", "gsm8k"),
        TaskSpec("math500", "vendored MATH-500 (test 500; training candidates held out of it)", "math500", "test"),
    ]
}


def task_spec(name: str, key: str = "data.mix.tasks") -> TaskSpec:
    """The registry entry, or a one-line ConfigError naming the key and the valid names."""
    if name not in TASKS:
        raise ConfigError(f"{key}: unknown task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name]


def load_task_split(name: str, split: str, *, on_bad_row: str = "error") -> list[Problem]:
    """The problems of one split ("train" or "test") of a named task, each tagged with its task.

    Synthetic problems get ids `<task>-<hash of the question>` and `source=<task>`; every problem
    gets `metadata["task"]`.
    """
    spec = task_spec(name)
    split_name = spec.train_split if split == "train" else spec.test_split
    if spec.dataset == "synthetic":
        from rftlab.tasks.synthetic import generate_problems

        raw = generate_problems(SYNTHETIC_TASK_SIZE, seed=0 if split == "train" else 1, split=split_name, **spec.knobs)
        return [
            dataclasses.replace(p, id=f"{name}-{p.id.removeprefix('synthetic-')}", source=name, metadata=_tag(p, name))
            for p in raw
        ]
    from rftlab.tasks.loading import load_problems

    problems = load_problems(spec.dataset, split_name, on_bad_row=on_bad_row)
    if not problems:
        raise DataError(f"task {name!r}: split {split_name!r} of {spec.dataset} is empty")
    return [dataclasses.replace(p, metadata=_tag(p, name)) for p in problems]


def _tag(problem: Problem, task: str) -> dict[str, Any]:
    return {**problem.metadata, "task": task}


def task_of(problem: Problem) -> str | None:
    """The task a problem was loaded for (None outside a multi-task run)."""
    return problem.metadata.get("task")


# ----------------------------------------------------------------------------- the sampler


def round_seed(seed: int, round_: int, task: str) -> int:
    """A 63-bit seed, a pure function of (run seed, round, task): the same in every process."""
    digest = hashlib.blake2b(f"{seed}/{round_}/examples/{task}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class MixSampler:
    """Each round: `per_round[t]` distinct examples of task t (without replacement within a task).

    The training examples are one list ordered by task: task t owns the `counts[t]` entries after
    those of the tasks before it. `draw` returns indices into that list, task by task, each task's
    drawn in the order of a seeded permutation.
    """

    tasks: tuple[str, ...]
    counts: tuple[int, ...]  # training examples of each task
    per_round: tuple[int, ...]  # examples drawn from each task per round
    seed: int

    def __post_init__(self) -> None:
        if not (len(self.tasks) == len(self.counts) == len(self.per_round)) or not self.tasks:
            raise ValueError("MixSampler needs one count and one per-round count per task")
        for task, n, k in zip(self.tasks, self.counts, self.per_round, strict=True):
            if not 1 <= k <= n:
                raise ValueError(f"task {task}: draws {k} of {n} examples per round; need 1 <= per_round <= examples")

    @property
    def offsets(self) -> list[int]:
        """Index of each task's first example in the combined list."""
        return [sum(self.counts[:i]) for i in range(len(self.counts))]

    def draw(self, round_: int) -> list[int]:
        """This round's examples: indices into the combined list, sum(per_round) of them."""
        picks: list[int] = []
        for task, offset, n, k in zip(self.tasks, self.offsets, self.counts, self.per_round, strict=True):
            order = torch.randperm(n, generator=torch.Generator().manual_seed(round_seed(self.seed, round_, task)))
            picks += [offset + i for i in order[:k].tolist()]
        return picks


def split_by_task(problems: Sequence[Problem], tasks: Sequence[str]) -> dict[str, list[Problem]]:
    """The problems of each task, in their order (tasks with none get an empty list)."""
    out: dict[str, list[Problem]] = {t: [] for t in tasks}
    for p in problems:
        out.setdefault(task_of(p) or "", []).append(p)
    return out
