import re
from collections import Counter

import pytest

from rftlab.tasks.synthetic import (
    ANSWER_FORMATS,
    TEMPLATES,
    generate_pretraining_samples,
    generate_pretraining_texts,
    generate_problems,
    split_of,
)

ANNOT = re.compile(r"<<(\d+)([+\-*])(\d+)=(\d+)>>(\d+)")


def _calc(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def test_deterministic_for_a_seed():
    a = generate_problems(50, seed=3)
    b = generate_problems(50, seed=3)
    c = generate_problems(50, seed=4)
    assert [(p.question, p.answer, p.metadata["solution"]) for p in a] == [
        (p.question, p.answer, p.metadata["solution"]) for p in b
    ]
    assert [p.question for p in a] != [p.question for p in c]
    assert [s.response for s in generate_pretraining_samples(30, 1)] == [
        s.response for s in generate_pretraining_samples(30, 1)
    ]


def test_problem_record_fields():
    for p in generate_problems(20, seed=0):
        assert p.source == "synthetic" and p.prompt_style == "gsm8k"
        assert p.answer == str(int(p.answer))
        assert p.user_message().startswith(p.question)
        assert p.user_message().endswith('output the final answer after "####".')
        assert {"solution", "steps", "ops", "template"} <= set(p.metadata)
    ids = [p.id for p in generate_problems(200, seed=0)]
    assert len(set(ids)) == len(ids)


def test_solution_is_gsm8k_style_and_answers_are_right():
    for p in generate_problems(200, seed=1, max_steps=3, ops=("+", "-", "*"), templates=tuple(TEMPLATES)):
        lines = p.metadata["solution"].split("\n")
        assert lines[-1] == f"#### {p.answer}"
        assert len(lines) == p.metadata["steps"] + 1
        prev = None
        for line in lines[:-1]:
            m = ANNOT.search(line)
            assert m, line
            a, op, b, r, r2 = m.groups()
            assert _calc(int(a), op, int(b)) == int(r) == int(r2)
            if prev is not None:
                assert int(a) == prev  # each step starts from the previous result
            prev = int(r)
        assert prev == int(p.answer)
        assert [ANNOT.search(line).group(2) for line in lines[:-1]] == p.metadata["ops"]


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_steps_knob(steps):
    ps = generate_problems(40, seed=0, min_steps=steps, max_steps=steps)
    assert all(p.metadata["steps"] == steps for p in ps)


def test_ops_templates_and_range_knobs():
    ps = generate_problems(
        60,
        seed=2,
        ops=("*",),
        templates=("farm",),
        max_value=9,
        max_result=60,
        max_factor=3,
        min_steps=1,
        max_steps=2,
        split="all",
    )
    assert all(set(p.metadata["ops"]) == {"*"} and p.metadata["template"] == "farm" for p in ps)
    for p in ps:
        nums = [int(x) for x in re.findall(r"\d+", p.metadata["solution"])]
        assert max(nums) <= 60 and min(nums) >= 1
    small = generate_problems(100, seed=2, max_value=5, max_result=9)
    assert all(int(p.answer) <= 9 for p in small)
    assert all(p.metadata["max_intermediate"] <= 9 for p in small)
    with pytest.raises(ValueError, match="valid"):
        generate_problems(1, seed=0, ops=("/",))
    with pytest.raises(ValueError, match="valid"):
        generate_problems(1, seed=0, templates=("zoo",))


def test_train_and_test_never_overlap():
    test = generate_problems(300, seed=0, split="test")
    train = generate_problems(300, seed=0, split="train")
    assert all(split_of(p.question) == "test" for p in test)
    assert all(split_of(p.question) == "train" for p in train)
    corpus = {s.problem.question for s in generate_pretraining_samples(3000, seed=0)}
    assert not corpus & {p.question for p in test}
    # another seed's test stream is held out too
    assert not corpus & {p.question for p in generate_problems(300, seed=7, split="test")}


def test_pretraining_texts_mix_formats_and_errors():
    samples = generate_pretraining_samples(2000, seed=0)
    fmts = Counter(s.answer_format for s in samples)
    assert set(fmts) == set(ANSWER_FORMATS)
    assert 0.25 < fmts["hash"] / len(samples) < 0.35
    for s in samples:
        assert ("#### " in s.response) == (s.answer_format == "hash")
        assert re.findall(r"\d+", s.response)[-1] == str(s.final)
        if s.error == "none":
            assert s.final == int(s.problem.answer)
    wrong = sum(s.final != int(s.problem.answer) for s in samples) / len(samples)
    assert 0.05 < wrong < 0.2
    styles = Counter(s.style for s in samples)
    assert {"gsm8k", "plain", "terse"} == set(styles)
    pairs = generate_pretraining_texts(5, seed=0)
    assert all(u.endswith('after "####".') and r for u, r in pairs)


def test_pretraining_format_weights_knob():
    samples = generate_pretraining_samples(
        200,
        seed=0,
        format_weights={"hash": 1.0},
        error_weights={"none": 1.0},
        ops=("+",),
        templates=("shop",),
    )
    assert all(s.response.endswith(f"#### {s.problem.answer}") for s in samples)
    assert all(s.problem.metadata["template"] == "shop" for s in samples)
