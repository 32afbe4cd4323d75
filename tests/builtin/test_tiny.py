import json
from pathlib import Path

import pytest
import torch

import rftlab.builtin.build_tiny as bt
from rftlab.tasks.synthetic import generate_problems

BUILTIN = Path(bt.__file__).resolve().parent
SHIPPED = [name for name in ("tiny", "tiny-narrow") if (BUILTIN / name / "model.safetensors").exists()]


def _load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_tiny_is_shipped():
    assert "tiny" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_offline_as_a_real_architecture(name):
    from transformers import LlamaForCausalLM

    path = BUILTIN / name
    assert (path / "model.safetensors").stat().st_size <= 20 * 2**20
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    model, tok = _load(path)
    assert isinstance(model, LlamaForCausalLM)
    assert next(model.parameters()).dtype == torch.float32
    assert 1_000_000 <= sum(p.numel() for p in model.parameters()) <= 5_000_000
    assert tok.eos_token_id is not None and tok.pad_token_id is not None and tok.eos_token_id != tok.pad_token_id
    assert model.config.vocab_size >= len(tok)
    report = json.loads((path / "build_report.json").read_text())
    assert report["profile"] == name and "in_distribution" in report["eval"]


@pytest.mark.parametrize("name", SHIPPED)
def test_chat_template_and_tokenizer(name):
    _, tok = _load(BUILTIN / name)
    assert tok.chat_template
    p = generate_problems(1, seed=0)[0]
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": p.user_message()}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == f"<|user|>{p.user_message()}\n<|assistant|>"
    text = p.metadata["solution"] + " \\boxed{1,234} Answer: 56"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # lossless (byte-level)
    assert "1" in tok.convert_ids_to_tokens(tok("x 1234", add_special_tokens=False)["input_ids"])  # digits split


@pytest.mark.parametrize("name", SHIPPED)
def test_generation_from_a_real_prompt_terminates_with_eos(name):
    model, tok = _load(BUILTIN / name)
    torch.manual_seed(0)
    problems = generate_problems(4, seed=1)
    for p in problems:
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": p.user_message()}], add_generation_prompt=True, tokenize=False
        )
        enc = tok(prompt, return_tensors="pt")
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            max_new_tokens=128,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        assert tok.eos_token_id in new, tok.decode(new)
    greedy = model.generate(
        **enc,
        do_sample=False,
        max_new_tokens=128,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    assert greedy[0, -1].item() == tok.eos_token_id


def test_strict_and_any_format_checks():
    """The two rewards build_tiny's report counts with: the project's, with these arguments."""
    from rftlab.rewards import score

    def strict(r, a):
        return score(r, a, "gsm8k_strict")

    def any_format(r, a):
        return score(r, a, "auto", allow_last_number=True)

    assert strict("a\n#### 14", "14")
    assert strict("#### 3\n#### 1,400", "1400")
    assert not strict("The answer is 14.", "14")
    assert not strict("#### 15", "14")
    assert any_format("So Tom has 14 apples now.", "14")
    assert any_format("\\boxed{14}", "14")
    assert not any_format("12+2=15", "14")
    # where it is not "the last number": a stated answer wins over numbers after it
    assert any_format("#### 14\nCheck: 10 + 4", "14")
    assert any_format("The answer is 14. That is 2 more than 12", "14")


@pytest.mark.parametrize("name", SHIPPED[:1])
def test_evaluate_reports_every_field_through_the_project_rollout(name):
    model, tok = _load(BUILTIN / name)
    tok.padding_side = "right"
    policy = bt.as_policy(name, model, tok)
    assert tok.padding_side == "left" and policy.prompt_text(generate_problems(1, seed=0)[0]).endswith("<|assistant|>")
    problems = generate_problems(3, seed=10_000, split="test")
    ev = bt.evaluate(policy, problems, samples=2, max_new_tokens=64, seed=1)
    assert ev["problems"] == 3 and ev["samples_per_problem"] == 2
    for key in (
        "strict_pass_at_1_t1",
        "any_format_correct_t1",
        "hash_format_share_t1",
        "strict_pass_at_1_greedy",
        "any_format_correct_greedy",
        "share_problems_pass_at_1_in_0.1_0.6",
    ):
        assert 0.0 <= ev[key] <= 1.0, key
    assert sum(ev["per_problem_pass_at_1_histogram"].values()) == 3
    assert ev["mean_response_chars_t1"] > 0
    assert [e["question"] for e in ev["examples_t1"]] == [problems[0].question] * 2
    assert ev == bt.evaluate(policy, problems, samples=2, max_new_tokens=64, seed=1)  # seeded


@pytest.mark.slow
def test_build_script_runs_end_to_end(tmp_path):
    assert bt.main(["--out", str(tmp_path), "--profile", "smoke", "--seed", "0"]) == 0
    model, tok = _load(tmp_path)
    report = json.loads((tmp_path / "build_report.json").read_text())
    assert report["settings"]["steps"] == 8 and report["architecture"] == "LlamaForCausalLM"
    assert tok.chat_template and (tmp_path / "model.safetensors").exists()
    assert tok.padding_side == "left" and tok.pad_token_id != tok.eos_token_id
    ev = report["eval"]["in_distribution"]
    assert set(ev) == {
        "problems",
        "samples_per_problem",
        "strict_pass_at_1_t1",
        "any_format_correct_t1",
        "hash_format_share_t1",
        "strict_pass_at_1_greedy",
        "any_format_correct_greedy",
        "per_problem_pass_at_1_histogram",
        "share_problems_pass_at_1_in_0.1_0.6",
        "mean_response_chars_t1",
        "examples_t1",
    }
    assert ev["problems"] == 4 and ev["samples_per_problem"] == 2 and len(ev["examples_t1"]) == 2


def test_build_tiny_never_overwrites_the_shipped_model_by_default(tmp_path, monkeypatch, capsys):
    from rftlab.cli import main

    monkeypatch.chdir(tmp_path)
    shipped = bt.BUILTIN_DIR / "tiny"
    assert (shipped / "config.json").is_file()
    assert bt.build_target("tiny", None) == Path("tiny-build") / "tiny"  # the default: a new folder here
    assert bt.build_target("tiny", tmp_path / "x") == tmp_path / "x"
    assert bt.build_target("tiny", None, install=True, force=True) == shipped
    for argv in (["--install"], ["--out", str(shipped)]):
        stamp = (shipped / "model.safetensors").stat().st_mtime_ns
        assert main(["build-tiny", "--profile", "tiny", *argv]) == 2  # refused before any training
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds the shipped 'tiny' model" in err and "--force" in err
        assert (shipped / "model.safetensors").stat().st_mtime_ns == stamp
    assert main(["build-tiny", "--install", "--out", "x"]) == 2
    assert "not both" in capsys.readouterr().err
