"""`rftlab export`: the exported directory loads with plain transformers and gives the run's log-probs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rftlab import trainer
from rftlab.cli import main
from rftlab.config import load_config
from rftlab.errors import RftlabError
from rftlab.export import export_run
from rftlab.policy import Policy, load_policy_for, response_logp

FAST = [
    "train.rounds=2",
    "eval.every=0",
    "eval.train_samples=2",
    "data.test_size=2",
    "data.difficulty=any",
    "run.progress=false",
    "rollout.max_new_tokens=24",
    "optim.lr=1e-2",
]


@pytest.mark.parametrize("extra", [[], ["model.lora_rank=4", "model.lora_alpha=64"]], ids=["full", "lora"])
def test_export_reproduces_the_runs_final_log_probs(tmp_path, extra):
    cfg = load_config("tiny", FAST + extra)
    trainer.train(cfg, tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0

    trained = load_policy_for(cfg.model)  # the run's final weights, as the trainer holds them
    trained.load_trainable_state_dict(
        torch.load(tmp_path / "run" / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    )
    exported = Policy(
        "hf",
        AutoModelForCausalLM.from_pretrained(tmp_path / "hf"),
        AutoTokenizer.from_pretrained(tmp_path / "hf"),
        torch.device("cpu"),
    )
    assert not hasattr(exported.model, "peft_config")
    problem = trainer.load_task(cfg)[1][0]
    assert exported.prompt_text(problem) == trained.prompt_text(problem)  # the chat template travelled
    batch = trainer.generate(trained, [trained.prompt_text(problem)], samples_per_prompt=2, max_new_tokens=16, seed=0)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    with torch.no_grad():
        want, got = response_logp(trained, *args)[0], response_logp(exported, *args)[0]
        base = response_logp(load_policy_for(cfg.model, train=False), *args)[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(base, want, atol=1e-3)  # training did move the policy


def test_export_errors_are_one_line(tmp_path):
    with pytest.raises(RftlabError, match="not a run directory"):
        export_run(tmp_path, tmp_path / "out")
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(RftlabError, match="no checkpoint"):
        export_run(tmp_path, tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(RftlabError, match="not empty"):
        export_run(tmp_path, tmp_path / "out")


def test_prompt_format_reads_a_users_file_with_the_runs_field_names(tmp_path, monkeypatch, caplog):
    """A run on a custom-field file: export and sample read it as the run did (no 'could not read' fallback)."""
    import json

    from rftlab.config import load_config
    from rftlab.export import run_prompt_format

    monkeypatch.chdir(tmp_path)
    row = {"prompt": "Tom has 3 apples and buys 9 more. How many now?", "target": "3 + 9 = 12\n#### 12"}
    (tmp_path / "mine.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "mine_test.jsonl").write_text(json.dumps(row) + "\n")
    overrides = ["data.dataset=mine.jsonl", "data.question_field=prompt", "data.answer_field=target"]
    cfg = load_config("tiny", [*overrides, "data.format=gsm8k", "data.test_path=mine_test.jsonl"])
    with caplog.at_level("WARNING"):
        assert run_prompt_format(cfg) == ("gsm8k", cfg.resolved_answer_format("gsm8k"))
    assert "could not read" not in caplog.text
    # without the run's field names the same file cannot be read: the fallback is taken and said
    plain = load_config("tiny", ["data.dataset=mine.jsonl"])
    with caplog.at_level("WARNING"):
        run_prompt_format(plain)
    assert "could not read" in caplog.text
