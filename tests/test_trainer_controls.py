"""Control rewards and the format x accuracy eval keys through the real trainer on tiny."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from killed_runs import deterministic, train_killed_in_update

from rftlab import trainer
from rftlab.config import load_config
from rftlab.rewards import extract_answer
from rftlab.runs import read_jsonl

FAST = [
    "train.rounds=4",
    "eval.every=2",
    "eval.train_samples=4",
    "data.test_size=4",
    "data.difficulty=any",
    "run.checkpoint_every=2",
    "run.progress=false",
    "rollout.max_new_tokens=96",
    "run.threads=1",
]


def rollouts(out):
    with gzip.open(out / "rollouts.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def test_format_reward_pays_the_answer_line_and_eval_rows_decompose_pass_at_1(tmp_path):
    cfg = load_config("tiny", FAST + ["objective.reward_design=format", "rollout.rollouts_per_round=2"])
    trainer.train(cfg, tmp_path / "f")
    for r in rollouts(tmp_path / "f"):
        assert r["reward"] == float(extract_answer(r["text"], "gsm8k_strict") is not None)
        assert not (r["correct"] and r["reward"] == 0.0)  # a correct response is always well formed
    evals = [r for r in read_jsonl(tmp_path / "f" / "metrics.jsonl") if r["split"] == "eval"]
    assert [r["round"] for r in evals] == [0, 2, 4]
    per_test_problem = cfg.eval.test_samples if cfg.eval.test_mode == "sample" else 1  # tiny: 2 samples
    for r in evals:
        for split, n in (("train", 4), ("test", 4 * per_test_problem)):
            fmt, acc = r[f"{split}/format_rate"], r[f"{split}/accuracy_given_format"]
            assert r[f"{split}/responses"] == n
            assert r[f"{split}/format_rate_low"] <= fmt <= r[f"{split}/format_rate_high"]
            if acc is None:
                assert fmt == 0.0 and r[f"{split}/pass_at_1"] == 0.0
            else:
                assert r[f"{split}/accuracy_given_format_low"] <= acc <= r[f"{split}/accuracy_given_format_high"]
                assert fmt * acc == pytest.approx(r[f"{split}/pass_at_1"])


def test_random_reward_draws_are_the_seeded_stream_and_survive_a_resume(tmp_path):
    cfg = load_config("tiny", FAST + ["objective.reward_design=random", "objective.random_reward_rate=0.5"])
    trainer.train(cfg, tmp_path / "whole")
    # golden: round r's reward is 1[u < 0.5], u the first draw of the generator seeded by (0, r, "reward/random")
    expected = [
        float(
            torch.rand(1, 1, generator=torch.Generator().manual_seed(trainer.derive_seed(0, r, "reward/random"))) < 0.5
        )
        for r in range(1, 5)
    ]
    assert [r["reward"] for r in rollouts(tmp_path / "whole")] == expected

    train_killed_in_update(cfg, tmp_path / "killed")
    trainer.train(cfg, tmp_path / "killed", resume=True)
    assert deterministic(read_jsonl(tmp_path / "whole" / "metrics.jsonl")) == deterministic(
        read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    )
