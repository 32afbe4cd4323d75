"""Bring your own data: the trainer's data set-up (`load_task`, `set_up`) on user files.

A separate test file (`data.test_path`), a single file held out from itself, train/test overlap
refused, the difficulty pool checked against the data before any model is loaded or any sampling,
errors that name the skip setting, and the skip warning printed once.
"""

from __future__ import annotations

import json
import logging

import pytest

from rftlab import trainer
from rftlab.config import load_config
from rftlab.errors import ConfigError, DataError, RftlabError


def gsm8k_rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"question": f"Tom has {i} apples and buys 2. How many now?", "answer": f"{i} + 2\n#### {i + 2}"}
        for i in range(start, start + n)
    ]


def write_jsonl(path, rows) -> str:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def config(dataset: str, *overrides: str):
    return load_config("tiny", [f"data.dataset={dataset}", "run.progress=false", *overrides])


def test_test_path_gives_the_test_set_and_the_whole_train_file_is_trainable(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", gsm8k_rows(60))
    test = write_jsonl(tmp_path / "test.jsonl", gsm8k_rows(10, start=100))
    train_split, test_set = trainer.load_task(config(train, f"data.test_path={test}"))
    assert [p.id for p in train_split] == [f"train/{i}" for i in range(1, 61)]
    assert [p.id for p in test_set] == [f"test/{i}" for i in range(1, 11)]


def test_a_single_file_holds_its_training_candidates_out_of_the_test_set(tmp_path):
    data = write_jsonl(tmp_path / "mine.jsonl", gsm8k_rows(30))
    cfg = config(data, "data.difficulty_pool=8")
    train_split, test_set = trainer.load_task(cfg)
    pool = {p.id for p in trainer.training_candidates(cfg, train_split)}
    assert len(train_split) == 30 and len(pool) == 8
    assert len(test_set) == 22 and not pool & {p.id for p in test_set}
    assert [p.id for p in trainer.load_task(cfg)[1]] == [p.id for p in test_set]  # deterministic
    # explicit ids: only they are held out
    _, test_set = trainer.load_task(config(data, "data.train_example_ids=[mine/3]"))
    assert len(test_set) == 29 and "mine/3" not in {p.id for p in test_set}


def test_a_single_small_file_says_to_give_a_test_file(tmp_path):
    data = write_jsonl(tmp_path / "five.jsonl", gsm8k_rows(5))
    with pytest.raises(RftlabError, match=r"five\.jsonl has 5 problems .* data\.test_path="):
        trainer.load_task(config(data))


def test_train_and_test_overlap_is_refused(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", gsm8k_rows(60))
    leaked = dict(gsm8k_rows(1, start=7)[0])
    leaked["question"] = "  tom has 7 APPLES and buys 2.\nHow many now? "  # same question, other case and spacing
    test = write_jsonl(tmp_path / "test.jsonl", gsm8k_rows(5, start=100) + [leaked])
    cfg = config(train, f"data.test_path={test}", "data.difficulty_pool=60")
    with pytest.raises(
        ConfigError, match=r"train and test overlap: 1 training candidate.*train/8 is test problem test/6"
    ):
        trainer.load_task(cfg)
    with pytest.raises(ConfigError, match="overlap"):
        trainer.load_task(config(train, f"data.test_path={test}", "data.train_example_ids=[train/8]"))
    # a training example outside the test set is fine
    trainer.load_task(config(train, f"data.test_path={test}", "data.train_example_ids=[train/9]"))


def test_pool_smaller_than_difficulty_pool_is_refused_before_any_model_or_sampling(tmp_path, monkeypatch):
    train = write_jsonl(tmp_path / "five.jsonl", gsm8k_rows(5))
    test = write_jsonl(tmp_path / "test.jsonl", gsm8k_rows(5, start=100))

    def must_not_run(*args, **kwargs):
        raise AssertionError("sampled or loaded a model before refusing")

    for name in ("load_policy_for", "estimate_difficulty", "evaluate", "generate"):
        monkeypatch.setattr(trainer, name, must_not_run)
    with pytest.raises(ConfigError) as err:
        trainer.train(config(train, f"data.test_path={test}"), tmp_path / "run")
    message = str(err.value)
    assert "5 problem(s), fewer than data.difficulty_pool=48" in message
    assert "data.train_example_ids=[five/1]" in message and "data.difficulty=any" in message
    assert "data.difficulty_pool=5" in message
    assert not (tmp_path / "run").exists()


def test_a_malformed_row_names_file_line_and_the_skip_setting(tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", gsm8k_rows(3) + ['{"question": "q"}'] + gsm8k_rows(40, start=10))
    with pytest.raises(DataError, match=r"bad\.jsonl line 4: missing field 'answer' \(data\.on_bad_row=skip"):
        trainer.load_task(config(data))


def test_skipped_rows_are_warned_about_once(tmp_path, caplog):
    data = write_jsonl(tmp_path / "bad.jsonl", gsm8k_rows(3) + ["{not json"] + gsm8k_rows(60, start=10))
    with caplog.at_level(logging.WARNING):
        train_split, _ = trainer.load_task(config(data, "data.on_bad_row=skip"))
    assert len(train_split) == 63
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "line 4" in warnings[0]


def test_custom_field_names_and_format(tmp_path):
    rows = [{"prompt": f"What is {i} + 2?", "target": str(i + 2)} for i in range(60)]
    data = write_jsonl(tmp_path / "own.jsonl", rows)
    with pytest.raises(DataError, match="data.question_field"):
        trainer.load_task(config(data))
    cfg = config(data, "data.question_field=prompt", "data.answer_field=target", "data.format=math")
    train_split, _ = trainer.load_task(cfg)
    assert (train_split[0].question, train_split[0].answer) == ("What is 0 + 2?", "2")
    missing = write_jsonl(tmp_path / "other.jsonl", [{"q": "x", "target": "1"}] + rows)
    with pytest.raises(DataError, match=r"line 1: missing field 'prompt' \(data\.question_field\)"):
        trainer.load_task(config(missing, "data.question_field=prompt", "data.answer_field=target", "data.format=math"))


def test_test_path_that_does_not_exist(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", gsm8k_rows(60))
    with pytest.raises(ConfigError, match=r"data\.test_path='nope\.jsonl': no such file"):
        trainer.load_task(config(train, "data.test_path=nope.jsonl"))


def test_a_single_file_with_difficulty_any_holds_out_only_the_examples_taken(tmp_path):
    data = write_jsonl(tmp_path / "mine.jsonl", gsm8k_rows(6))
    cfg = config(data, "data.difficulty=any", "data.train_examples=2", "train.examples_per_round=1")
    train_split, test_set = trainer.load_task(cfg)
    taken = {p.id for p in trainer.training_candidates(cfg, train_split)}
    assert len(taken) == 2 and len(test_set) == 4 and not taken & {p.id for p in test_set}
