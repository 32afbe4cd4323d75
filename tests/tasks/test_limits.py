"""Prompt length against the model's context: refused with the row id, or skipped and counted."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from rftlab.cli import main
from rftlab.config import load_config
from rftlab.errors import ConfigError, DataError
from rftlab.policy import load_policy
from rftlab.tasks.limits import check_prompt_lengths, max_token_bytes, model_context
from rftlab.tasks.problem import Problem


class CountingTokenizer:
    """The real tokenizer, recording the length of every text it is asked to tokenize."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, text, *args, **kwargs):
        self.calls.append(len(text))
        return self.inner(text, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def tiny():
    return load_policy("tiny")


@pytest.fixture
def policy(tiny):
    return dataclasses.replace(tiny, tokenizer=CountingTokenizer(tiny.tokenizer))


def cfg(*overrides):
    return load_config("tiny", ["data.dataset=synthetic", *overrides])


def tokens(policy, problem):
    return len(policy.tokenizer.inner(policy.prompt_text(problem), add_special_tokens=False)["input_ids"])


def problem(i, words):
    return Problem(f"file/{i}", " ".join(["apples"] * words) + " How many?", "5", "file")


def test_context_is_the_models_positions(tiny):
    assert model_context(tiny) == tiny.model.config.max_position_embeddings == 256
    assert max_token_bytes(tiny.tokenizer) >= 2


def test_short_prompts_pass_without_tokenizing(policy):
    ok = [problem(i, 3) for i in range(5)]
    roomy = cfg("rollout.max_new_tokens=16")  # 240 tokens for a prompt: more than these prompts' bytes
    assert check_prompt_lengths(roomy, policy, ok, ok[:2]) == (ok, ok[:2])
    assert policy.tokenizer.calls == []  # decided from byte length alone


def test_a_10_mb_question_is_refused_with_its_id_without_tokenizing(policy):
    huge = Problem("file/7", "1 + " * 2_500_000 + "1 = ?", "5", "file")  # 10 MB
    with pytest.raises(DataError) as err:
        check_prompt_lengths(cfg(), policy, [problem(0, 3), huge], [problem(1, 3)])
    message = str(err.value)
    assert "'file/7'" in message and "256 positions" in message and "data.on_bad_row=skip" in message
    assert "\n" not in message
    assert max(policy.tokenizer.calls, default=0) < 1000  # the short row maybe; the huge one never


def test_the_limit_is_exact_in_tokens(policy, caplog):
    """Between the byte bounds the prompt is tokenized as the rollout does; a prompt of exactly the
    context's 256 tokens fits, one token more does not. A prompt that fits but leaves less room than
    rollout.max_new_tokens (160) is kept with one warning."""
    by_length = {tokens(policy, problem(0, n)): n for n in range(1, 400)}
    limit = 256
    fits, over = problem(0, by_length[limit]), problem(1, by_length[limit + 1])
    with caplog.at_level("WARNING"):
        assert check_prompt_lengths(cfg(), policy, [fits]) == ([fits],)
    assert "1 prompt(s) longer than 96 tokens leave fewer than rollout.max_new_tokens=160" in caplog.text
    with pytest.raises(DataError, match=rf"'file/1' is a prompt of {limit + 1} tokens"):
        check_prompt_lengths(cfg(), policy, [over])
    assert policy.tokenizer.calls  # these two needed the tokenizer
    roomy, tight = problem(2, by_length[96]), problem(3, by_length[97])
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert check_prompt_lengths(cfg(), policy, [roomy]) == ([roomy],)
    assert "leave fewer" not in caplog.text  # exactly max_new_tokens positions left: no warning
    with caplog.at_level("WARNING"):
        assert check_prompt_lengths(cfg(), policy, [tight]) == ([tight],)
    assert "(first: file/3, 97 tokens)" in caplog.text


def test_skip_mode_leaves_long_prompts_out_and_counts_them(policy, caplog):
    rows = [problem(0, 3), Problem("file/1", "x " * 5_000_000, "5", "file"), problem(2, 400), problem(3, 3)]
    with caplog.at_level("WARNING"):
        kept, test = check_prompt_lengths(cfg("data.on_bad_row=skip"), policy, rows, rows[:1])
    assert [p.id for p in kept] == ["file/0", "file/3"] and [p.id for p in test] == ["file/0"]
    assert "skipped 2 prompt(s) longer than 256 tokens" in caplog.text and "file/1" in caplog.text
    with pytest.raises(DataError, match="every prompt of a split"):
        check_prompt_lengths(cfg("data.on_bad_row=skip"), policy, rows, rows[1:2])


def test_a_response_budget_that_fills_the_context_is_a_config_error(policy):
    with pytest.raises(ConfigError, match=r"rollout.max_new_tokens=256 leaves no room .* 256 positions"):
        check_prompt_lengths(cfg("rollout.max_new_tokens=256"), policy, [problem(0, 3)])


def test_no_known_context_means_no_check(tiny):
    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=None))
    tok = SimpleNamespace(model_max_length=int(1e30))  # transformers' "no limit known"
    blind = dataclasses.replace(tiny, model=model, tokenizer=tok)
    rows = [Problem("file/0", "x " * 1000, "5", "file")]
    assert model_context(blind) is None
    assert check_prompt_lengths(cfg(), blind, rows) == (rows,)


# ------------------------------------------------------------------------------------------ the commands


def _data_file(tmp_path, long_words=3000):
    """A GSM8K-format file whose third row is a prompt far past tiny's 256-position context."""
    rows = [
        {"question": f"Tom has {i} apples and gets 2 more. How many now?", "answer": f"#### {i + 2}"} for i in range(6)
    ]
    rows[2]["question"] = "apples " * long_words + "How many?"
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


RUN = [
    "data.difficulty=any",
    "train.rounds=1",
    "eval.train_samples=1",
    "data.test_size=2",
    "run.threads=1",
    "rollout.max_new_tokens=16",
    "run.progress=false",
]


def _error_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("rftlab: error")]


def test_run_refuses_a_long_prompt_in_one_line_and_makes_no_run_directory(tmp_path, capsys):
    data = _data_file(tmp_path)
    out = tmp_path / "run"
    assert main(["run", "tiny", f"data.dataset={data}", *RUN, "--out", str(out)]) == 2
    (line,) = _error_lines(capsys)
    assert "'data/3' is a prompt of at least" in line and "data.on_bad_row=skip" in line, line
    assert not out.exists()


def test_run_skips_and_counts_a_long_prompt_under_on_bad_row_skip(tmp_path, caplog):
    data = _data_file(tmp_path)
    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        assert main(["run", "tiny", f"data.dataset={data}", "data.on_bad_row=skip", *RUN, "--out", str(out)]) == 0
    assert "skipped 1 prompt(s)" in caplog.text and "data/3" in caplog.text
    assert "data/3" not in json.loads((out / "summary.json").read_text())["train_example_ids"]


def test_eval_refuses_a_long_prompt_in_one_line(tmp_path, capsys):
    data = _data_file(tmp_path)
    args = ["eval", "tiny", f"data.dataset={data}", "run.threads=1", "rollout.max_new_tokens=16"]
    assert main([*args, "--train-problems", "2", "--samples", "1", "--skip-test"]) == 2
    (line,) = _error_lines(capsys)
    assert "'data/3'" in line, line
