"""Named tasks and the multi-task sampler: what each task holds, and what the sampler draws."""

from collections import Counter

import pytest

from rftlab.errors import ConfigError
from rftlab.tasks.mix import TASKS, MixSampler, load_task_split, split_by_task, task_of, task_spec


@pytest.mark.parametrize("name", ["add", "sub"])
def test_synthetic_task_has_one_skill_and_disjoint_splits(name):
    train, test = load_task_split(name, "train"), load_task_split(name, "test")
    assert len(train) == len(test) == 500
    op = {"add": "+", "sub": "-"}[name]
    for p in train[:100] + test[:100]:
        assert set(p.metadata["ops"]) == {op}, p.question
        assert p.id.startswith(f"{name}-") and p.source == name and task_of(p) == name
    assert not {p.question for p in train} & {p.question for p in test}
    assert [p.metadata["split"] for p in test[:50]] == ["test"] * 50  # never in tiny's pretraining half


def test_tasks_do_not_share_problems():
    add, sub = load_task_split("add", "train"), load_task_split("sub", "train")
    assert not {p.id for p in add} & {p.id for p in sub}
    assert not {p.question for p in add} & {p.question for p in sub}


def test_vendored_tasks_keep_their_ids_and_are_tagged():
    gsm = load_task_split("gsm8k", "test")
    assert gsm[0].id == "gsm8k/test/0" and task_of(gsm[0]) == "gsm8k" and gsm[0].prompt_style == "gsm8k"
    math = load_task_split("math500", "train")  # MATH-500's only split serves both
    assert math[0].id.startswith("math500/test/") and math[0].prompt_style == "math"


def test_unknown_task_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"data.mix.tasks: unknown task 'ad'; valid: add, sub"):
        task_spec("ad")
    assert set(TASKS) >= {"add", "sub", "mul", "long", "gsm8k", "math500"}


def test_split_by_task_keeps_order():
    add, sub = load_task_split("add", "train")[:3], load_task_split("sub", "train")[:2]
    groups = split_by_task([sub[0], add[0], add[1], sub[1], add[2]], ["add", "sub"])
    assert groups["add"] == add and groups["sub"] == sub


# ----------------------------------------------------------------------------- the sampler


def test_sampler_draws_the_configured_count_of_each_task_every_round():
    s = MixSampler(("add", "sub", "mul"), counts=(3, 2, 4), per_round=(2, 1, 4), seed=7)
    assert s.offsets == [0, 3, 5]
    for r in range(1, 201):
        pick = s.draw(r)
        assert len(pick) == 7 and len(set(pick)) == 7  # without replacement
        assert sum(0 <= i < 3 for i in pick) == 2
        assert sum(3 <= i < 5 for i in pick) == 1
        assert sorted(i for i in pick if i >= 5) == [5, 6, 7, 8]  # all of mul's 4, every round
        assert pick[:2] == [i for i in pick if i < 3]  # task by task, in data.mix.tasks order


def test_sampler_spreads_draws_over_a_tasks_examples():
    s = MixSampler(("add", "sub"), counts=(3, 2), per_round=(1, 1), seed=0)
    counts = Counter(i for r in range(1, 601) for i in s.draw(r))
    # 600 draws of 1 of 3: each ~200 (binomial sd ~11.5), 1 of 2: each ~300; bounds at > 5 sd
    assert all(140 < counts[i] < 260 for i in range(3)), counts
    assert all(230 < counts[i] < 370 for i in (3, 4)), counts


def test_sampler_is_seeded_and_resume_identical():
    a = MixSampler(("add", "sub"), counts=(5, 5), per_round=(2, 2), seed=3)
    whole = [a.draw(r) for r in range(1, 21)]
    assert whole == [MixSampler(("add", "sub"), (5, 5), (2, 2), seed=3).draw(r) for r in range(1, 21)]
    resumed = MixSampler(("add", "sub"), (5, 5), (2, 2), seed=3)  # a new process after a checkpoint at 10
    assert [resumed.draw(r) for r in range(11, 21)] == whole[10:]
    other = MixSampler(("add", "sub"), (5, 5), (2, 2), seed=4)
    assert [other.draw(r) for r in range(1, 21)] != whole
    assert len({tuple(p) for p in whole}) > 5  # rounds differ from each other


def test_tasks_draw_independently():
    """Adding a task leaves what the other tasks draw unchanged (each task has its own seed)."""
    one = MixSampler(("add",), (4,), (2,), seed=1)
    two = MixSampler(("add", "sub"), (4, 3), (2, 1), seed=1)
    for r in range(1, 30):
        assert two.draw(r)[:2] == one.draw(r)


@pytest.mark.parametrize("counts, per_round", [((2,), (3,)), ((2,), (0,)), ((2, 2), (1,))])
def test_sampler_refuses_impossible_counts(counts, per_round):
    with pytest.raises(ValueError):
        MixSampler(("add",) * len(counts), counts, per_round, seed=0)
