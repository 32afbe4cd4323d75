"""Multi-task runs (data.mix): config validation, per-task data, and a short real run on tiny."""

from __future__ import annotations

import json

import pytest
import torch
from killed_runs import deterministic, train_killed_in_update

from rftlab import trainer
from rftlab.config import ConfigError, describe_fields, load_config
from rftlab.evaluation import EvalResult
from rftlab.multitask import load_mix, pooled, with_answer_formats
from rftlab.runs import read_jsonl

# ----------------------------------------------------------------------------- config


def test_mix_defaults_leave_a_single_task_run_alone():
    cfg = load_config("tiny")
    assert cfg.data.mix.tasks == [] and cfg.examples_per_round_total == 1
    assert cfg.rollouts_per_round_total == 1


def test_mix_counts_default_to_one_each_and_sum_per_round():
    cfg = load_config("tiny", ["data.mix.tasks=[add, sub]", "rollout.rollouts_per_round=4"])
    assert cfg.data.mix.example_counts == [1, 1] and cfg.data.mix.round_counts == [1, 1]
    assert cfg.examples_per_round_total == 2 and cfg.rollouts_per_round_total == 8
    cfg = load_config("tiny", ["data.mix.tasks=[add, sub]", "data.mix.examples=[4, 2]", "data.mix.per_round=[3, 1]"])
    assert cfg.examples_per_round_total == 4


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.mix.tasks=[add, sbu]"], r"data.mix.tasks: unknown task 'sbu'; valid: add, sub"),
        (["data.mix.tasks=[add, add]"], r"data.mix.tasks=\['add', 'add'\] names a task twice"),
        (["data.mix.tasks=add"], r"data.mix.tasks='add': expected a list"),
        (
            ["data.mix.tasks=[add]", "data.mix.eval_tasks=[add]"],
            r"data.mix.eval_tasks: 'add' is also in data.mix.tasks",
        ),
        (["data.mix.tasks=[add]", "data.mix.eval_tasks=[div]"], r"data.mix.eval_tasks: unknown task 'div'"),
        (["data.mix.tasks=[add, sub]", "data.mix.examples=[2]"], r"data.mix.examples has 1 counts for 2 tasks"),
        (["data.mix.tasks=[add, sub]", "data.mix.per_round=[1, 0]"], r"data.mix.per_round contains 0"),
        (["data.mix.tasks=[add]", "data.mix.examples=[1.5]"], r"data.mix.examples contains 1.5"),
        (
            ["data.mix.tasks=[add, sub]", "data.mix.examples=[2, 1]", "data.mix.per_round=[1, 2]"],
            r"data.mix.per_round draws 2 examples of task 'sub' per round but data.mix.examples gives it 1",
        ),
        (["data.mix.tasks=[add]", "data.train_examples=2"], r"data.train_examples=2 with data.mix.tasks"),
        (["data.mix.tasks=[add]", "train.examples_per_round=2", "data.train_examples=2"], r"data.train_examples=2"),
        (["data.mix.tasks=[add]", "data.train_example_ids=[add-x]"], r"data.train_example_ids cannot be combined"),
        (["data.mix.eval_tasks=[sub]"], r"data.mix.eval_tasks is set but data.mix.tasks is empty"),
        (["data.mix.per_round=[1]"], r"data.mix.per_round is set but data.mix.tasks is empty"),
        (["data.mix.task=[add]"], r"unknown config key data.mix.task \(did you mean data.mix.tasks\?\)"),
    ],
)
def test_mix_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides)


def test_mix_fields_are_documented():
    rows = {key: (default, help_) for key, default, _, help_ in describe_fields()}
    for key in ("data.mix.tasks", "data.mix.examples", "data.mix.per_round", "data.mix.eval_tasks"):
        assert key in rows and rows[key][1], key


# ----------------------------------------------------------------------------- data


def test_each_task_has_its_test_set_and_answer_format():
    cfg = load_config(None, ["data.mix.tasks=[gsm8k, math500]", "data.mix.eval_tasks=[add]", "data.test_size=7"])
    mix = with_answer_formats(cfg, load_mix(cfg), None)
    assert [len(mix.test[t]) for t in ("gsm8k", "math500", "add")] == [7, 7, 7]
    assert set(mix.train) == {"gsm8k", "math500"}  # an evaluated-only task has no train pool
    assert mix.answer_format == {"gsm8k": "gsm8k_strict", "math500": "boxed", "add": "gsm8k_strict"}
    # MATH-500 trains and tests on one split: its candidate pool is held out of its test set
    from rftlab.selection import candidate_pool

    pool = {p.id for p in candidate_pool(mix.train["math500"], cfg.data.difficulty_pool, cfg.data.selection_seed)}
    assert pool and not pool & {p.id for p in load_mix(load_config(None, ["data.mix.tasks=[math500]"])).test["math500"]}
    assert [p.id for p in mix.test_union] == [p.id for p in mix.test["gsm8k"] + mix.test["math500"]]


def test_pooled_evaluation_counts_every_problem_once():
    a = EvalResult(n=2, correct=[2, 0, 1], mean_response_tokens=10.0, format_rate=1.0)
    b = EvalResult(n=2, correct=[1], mean_response_tokens=30.0, format_rate=0.5)
    p = pooled([a, b])
    assert p.correct == [2, 0, 1, 1] and p.pass_at_1 == pytest.approx(4 / 8)
    assert p.mean_response_tokens == pytest.approx(15.0) and p.format_rate == pytest.approx(0.875)
    assert p.formatted == -1  # not counted in a part: not counted in the whole
    a = EvalResult(n=2, correct=[2, 0, 1], mean_response_tokens=10.0, format_rate=5 / 6, formatted=5)
    b = EvalResult(n=2, correct=[1], mean_response_tokens=30.0, format_rate=0.5, formatted=1)
    p = pooled([a, b])
    assert p.formatted == 6 and p.accuracy_given_format == pytest.approx(4 / 6)
    assert p.format_rate * p.accuracy_given_format == pytest.approx(p.pass_at_1)


# ----------------------------------------------------------------------------- a real run on tiny

FAST = [
    "train.rounds=4",
    "eval.every=2",
    "eval.train_samples=4",
    "data.test_size=6",
    "data.difficulty=any",
    "run.checkpoint_every=2",
    "run.progress=false",
    "rollout.max_new_tokens=96",
    "data.mix.tasks=[add, sub]",
    "data.mix.examples=[2, 1]",
    "data.mix.per_round=[1, 1]",
]


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "run"
    summary = trainer.train(load_config("tiny", FAST), out)
    return out, summary


def test_multi_task_run_draws_per_task_and_logs_per_task_keys(mix_run):
    out, summary = mix_run
    rows = read_jsonl(out / "metrics.jsonl")
    ids = summary["train_example_ids"]
    assert [i.split("-")[0] for i in ids] == ["add", "add", "sub"] and summary["dataset"] == "add+sub"
    for r in rows:
        if r["split"] == "train_round":
            assert [i.split("-")[0] for i in r["example_ids"]] == ["add", "sub"]  # one of each, per round
            assert r["rollouts_total"] == 2 * r["round"]
            continue
        for task in ("add", "sub"):
            for split in ("train", "test"):
                key = f"{split}/{task}/pass_at_1"
                assert 0 <= r[f"{key}_low"] <= r[key] <= r[f"{key}_high"] <= 1
            # Pass@1 = format rate x accuracy among well-formed answers, per task and pooled, as in one-task rows
            for prefix in (f"{split}/{task}" for split in ("train", "test")):
                if r[f"{prefix}/accuracy_given_format"] is not None:
                    product = r[f"{prefix}/format_rate"] * r[f"{prefix}/accuracy_given_format"]
                    assert product == pytest.approx(r[f"{prefix}/pass_at_1"])
        for split in ("train", "test"):
            assert r[f"{split}/responses"] > 0 and f"{split}/accuracy_given_format" in r
        # equal test sizes: the pooled test Pass@1 is the mean over the trained tasks
        assert r["test/pass_at_1"] == pytest.approx((r["test/add/pass_at_1"] + r["test/sub/pass_at_1"]) / 2)
        # train Pass@1 pools the 3 examples: 2 of add, 1 of sub
        assert r["train/pass_at_1"] == pytest.approx((2 * r["train/add/pass_at_1"] + r["train/sub/pass_at_1"]) / 3)
    drawn = {i for r in rows if r["split"] == "train_round" for i in r["example_ids"]}
    assert drawn <= set(ids)


@pytest.mark.slow  # a kill and a resume of a real run; the sampler's own resume test is fast (tests/tasks)
def test_multi_task_run_resumes_to_the_same_result(tmp_path, mix_run):
    whole, _ = mix_run
    cfg = load_config("tiny", FAST)
    train_killed_in_update(cfg, tmp_path / "killed")
    trainer.train(cfg, tmp_path / "killed", resume=True)
    assert deterministic(read_jsonl(whole / "metrics.jsonl")) == deterministic(
        read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    )
    w1 = torch.load(whole / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    w2 = torch.load(tmp_path / "killed" / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_evaluated_only_task_is_logged_but_not_pooled(tmp_path):
    extra = [
        "train.rounds=1",
        "eval.every=0",
        "data.mix.tasks=[add]",
        "data.mix.examples=[1]",
        "data.mix.per_round=[1]",
    ]
    out = tmp_path / "eval_only"
    trainer.train(load_config("tiny", FAST + extra + ["data.mix.eval_tasks=[sub]"]), out)
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "eval"]
    for r in evals:
        assert "test/sub/pass_at_1" in r and "train/sub/pass_at_1" not in r
        assert r["test/pass_at_1"] == r["test/add/pass_at_1"]
    assert json.loads((out / "summary.json").read_text())["train_example_ids"][0].startswith("add-")


def test_eval_command_refuses_a_mix_in_one_line(capsys):
    from rftlab.cli import main

    assert main(["eval", "tiny", "data.mix.tasks=[add, sub]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.mix.tasks is set" in err and "train.rounds=0" in err and "\n" not in err
