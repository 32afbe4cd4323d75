"""`rftlab sample`: a trained run's policy answers a question as the run would; errors are one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from rftlab import trainer
from rftlab.cli import main
from rftlab.config import load_config
from rftlab.export import EXPORT_INFO
from rftlab.policy import load_policy_for
from rftlab.rewards import extract_answer
from rftlab.tasks.problem import Problem

FAST = [
    "train.rounds=2",
    "eval.every=0",
    "eval.train_samples=2",
    "data.test_size=2",
    "data.difficulty=any",
    "run.progress=false",
    "run.threads=1",
    "rollout.max_new_tokens=24",
    "optim.lr=1e-2",
]
QUESTION = "Mia has 12 stickers and gives 5 to her brother. How many stickers does she have left?"
RUNS = {"full": [], "lora": ["model.lora_rank=4", "model.lora_alpha=64"]}


@pytest.fixture(scope="module", params=list(RUNS))
def trained(request, tmp_path_factory):
    """(config, run directory) of a 2-round tiny run, full fine-tune and LoRA."""
    cfg = load_config("tiny", FAST + RUNS[request.param])
    out = tmp_path_factory.mktemp(f"sample-{request.param}") / "run"
    trainer.train(cfg, out)
    return cfg, out


def _sample_json(capsys, *argv) -> dict:
    assert main(["sample", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_greedy_sample_is_the_runs_policy_greedy_output(trained, capsys):
    cfg, run = trained
    got = _sample_json(capsys, run, QUESTION, "--temperature", "0", "--max-new-tokens", 24, "--device", "cpu")

    policy = load_policy_for(cfg.model)  # the run's final weights, as the trainer holds them
    policy.load_trainable_state_dict(torch.load(run / "checkpoint" / "trainer.pt", weights_only=False)["model"])
    prompt = policy.prompt_text(Problem("q", QUESTION, "", "test"), "gsm8k")  # tiny's data: gsm8k prompts
    want = trainer.generate(policy, [prompt], greedy=True, max_new_tokens=24, seed=0)
    assert got["prompt"] == prompt and got["greedy"]
    assert got["texts"] == want.texts  # one response, the run's policy's greedy one
    assert got["answers"] == [extract_answer(want.texts[0], "gsm8k_strict")]


def test_sample_prints_n_responses_with_answers_and_rewards(trained, capsys):
    _, run = trained
    argv = ["sample", str(run), QUESTION, "--n", "3", "--max-new-tokens", "32", "--answer", "7", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert [f"--- response {i}/3" in out for i in (1, 2, 3, 4)] == [True, True, True, False]
    assert "checkpoint at round 2 of 2" in out and "answer format gsm8k_strict" in out
    assert out.count("  reward ") == 3 and "of 3 correct" in out

    got = _sample_json(capsys, *argv[1:])
    assert len(got["texts"]) == 3 and len(set(got["texts"])) > 1  # sampled, not three greedy copies
    # the reward is the verifier's: 1 exactly where the strict answer is the reference
    assert got["rewards"] == [int(a == "7") for a in got["answers"]]


def test_an_exported_folder_samples_like_its_run(trained, capsys, tmp_path):
    _, run = trained
    assert main(["export", str(run), str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    info = json.loads((tmp_path / "hf" / EXPORT_INFO).read_text())
    assert (info["prompt_style"], info["answer_format"], info["checkpoint_round"]) == ("gsm8k", "gsm8k_strict", 2)
    assert info["max_new_tokens"] == 24 and info["provenance"]["versions"]["torch"] == torch.__version__
    greedy = ["--temperature", "0", "--max-new-tokens", "24", "--device", "cpu"]
    from_run = _sample_json(capsys, run, QUESTION, *greedy)
    from_export = _sample_json(capsys, tmp_path / "hf", QUESTION, *greedy)
    assert from_export["prompt"] == from_run["prompt"] and from_export["texts"] == from_run["texts"]


def test_sample_errors_are_one_line(trained, tmp_path, capsys):
    _, run = trained
    cases = {
        "no such run directory": [str(tmp_path / "missing"), QUESTION],
        "neither a run directory": [str(tmp_path), QUESTION],
        "--n must be >= 1": [str(run), QUESTION, "--n", "0"],
    }
    bare = tmp_path / "bare"  # a run directory whose checkpoint is gone (a sweep deletes finished ones)
    bare.mkdir()
    shutil.copy(run / "config.yaml", bare / "config.yaml")
    cases["has no checkpoint"] = [str(bare), QUESTION]
    longer = tmp_path / "longer"  # a run that has not reached its last round
    shutil.copytree(run, longer)
    cfg = yaml.safe_load((longer / "config.yaml").read_text())
    cfg["train"]["rounds"] = 5
    (longer / "config.yaml").write_text(yaml.safe_dump(cfg))
    cases["no final checkpoint: the newest is at round 2 of 5"] = [str(longer), QUESTION, "--checkpoint", "final"]
    for message, argv in cases.items():
        assert main(["sample", *argv]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["sample", str(longer), QUESTION, "--temperature", "0", "--max-new-tokens", "4"]) == 0
    assert "checkpoint at round 2 of 5" in capsys.readouterr().out  # --checkpoint latest (the default) takes it


def test_prompt_style_override_changes_suffix_and_answer_format(trained, capsys):
    _, run = trained
    argv = [run, QUESTION, "--temperature", "0", "--max-new-tokens", 8, "--device", "cpu"]
    got = _sample_json(capsys, *argv, "--prompt-style", "math")
    assert got["prompt_style"] == "math" and "\\boxed{}" in got["prompt"] and "####" not in got["prompt"]
    assert main(["sample", *map(str, argv), "--prompt-style", "math"]) == 0
    assert "answer format boxed" in capsys.readouterr().out
