"""benchmarks/vs_trl.py: its arguments, and that both sides are configured for the same round.

Runs without TRL (the `bench` extra); the check that GRPOConfig accepts and keeps the matched values
is skipped when trl is not installed. Nothing here times anything.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rftlab.config import load_config
from rftlab.policy import load_policy

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "vs_trl.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vs_trl"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("vs_trl", None)


def test_the_script_imports_no_trl_at_module_level():
    text = SCRIPT.read_text()
    head = text[: text.index("# ----------------------------------------------------------------------------- the two")]
    assert "import trl" not in head and "from trl" not in head and "import datasets" not in head


@pytest.mark.parametrize(
    ("argv", "model", "g", "tokens", "kl"),
    [
        (["--model", "tiny"], "tiny", 8, 160, 0.0),
        (["--model", "tiny", "--kl"], "tiny", 8, 160, 0.04),
        (["--model", "smollm2-135m"], "smollm2-135m", 4, 128, 0.0),
        (["--model", "smollm2-135m", "--kl", "--pairs", "5"], "smollm2-135m", 4, 128, 0.04),
    ],
)
def test_arguments_choose_the_issue_configurations(bench, argv, model, g, tokens, kl):
    args = bench.parse_args(argv)
    m = bench.matched(args.model, kl=args.kl)
    assert (m.model, m.rollouts_per_round, m.max_new_tokens, m.kl_coef) == (model, g, tokens, kl)
    assert args.pairs >= 3 and args.rounds >= 1 and args.warmup >= 1


@pytest.mark.parametrize("argv", [["--pairs", "2"], ["--model", "gpt2"], ["--rounds", "0", "--warmup", "0"]])
def test_bad_arguments_are_refused(bench, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_the_engine_and_shared_prompt_options_reach_rftlab_only(bench):
    args = bench.parse_args(["--engine", "hf", "--no-shared-prompt"])
    m = bench.matched(args.model, kl=args.kl, engine=args.engine, shared_prompt=args.shared_prompt)
    cfg = load_config("tiny", bench.rftlab_overrides(m))
    assert cfg.rollout.engine == "hf" and not cfg.train.shared_prompt
    trl = bench.trl_config_kwargs(m, "/tmp/unused", 3)
    assert not any("engine" in k or "shared" in k for k in trl)
    default = bench.parse_args([])  # rftlab as a user runs it: its own defaults
    cfg = load_config("tiny", bench.rftlab_overrides(bench.matched("tiny", kl=False)))
    assert (default.engine, default.shared_prompt) == ("lean", True)
    assert (cfg.rollout.engine, cfg.train.shared_prompt) == (load_config("tiny").rollout.engine, True)


def test_the_last_line_is_the_ratio(bench):
    assert bench.LAST_LINE.format(ratio=1.234) == "ratio rftlab/TRL rounds per second: 1.23"


@pytest.mark.parametrize("model", ["tiny", "smollm2-135m"])
@pytest.mark.parametrize("kl", [False, True])
def test_rftlab_config_and_trl_arguments_describe_the_same_round(bench, model, kl):
    m = bench.matched(model, kl=kl)
    cfg = load_config(bench.base_config_name(model), bench.rftlab_overrides(m))
    trl = bench.trl_config_kwargs(m, "/tmp/unused", 12)
    g = cfg.rollout.rollouts_per_round
    assert g == m.rollouts_per_round == trl["num_generations"] == trl["per_device_train_batch_size"]
    assert cfg.train.examples_per_round == 1 and trl["gradient_accumulation_steps"] == trl["steps_per_generation"] == 1
    assert cfg.rollout.max_new_tokens == trl["max_completion_length"] == m.max_new_tokens
    assert cfg.rollout.temperature == trl["temperature"] and cfg.rollout.top_p == trl["top_p"] == 1.0
    assert trl["top_k"] == 0 and trl["repetition_penalty"] == 1.0  # rftlab samples from the full softmax
    assert cfg.optim.lr == trl["learning_rate"] and trl["lr_scheduler_type"] == "constant" and trl["warmup_steps"] == 0
    assert cfg.optim.weight_decay == trl["weight_decay"] and cfg.optim.grad_clip == trl["max_grad_norm"]
    assert (cfg.optim.beta1, cfg.optim.beta2) == (trl["adam_beta1"], trl["adam_beta2"])
    assert cfg.objective.kl_coef == trl["beta"] == (0.04 if kl else 0.0) and cfg.objective.kl_estimator == "k3"
    assert cfg.objective.clip_eps_low == cfg.objective.clip_eps_high == trl["epsilon"]
    assert cfg.objective.updates_per_batch == trl["num_iterations"] == 1
    assert cfg.objective.advantage == "grpo" and trl["scale_rewards"] == "group"
    assert cfg.objective.aggregation == "token_mean" and trl["loss_type"] == "dapo"
    assert cfg.model.dtype == cfg.model.master_dtype == "float32" and not trl["bf16"] and not trl["fp16"]
    assert not trl["gradient_checkpointing"] and not cfg.model.gradient_checkpointing
    assert cfg.run.threads == 1 and trl["report_to"] == "none" and trl["use_cpu"]
    assert cfg.rollout.engine == "lean" and cfg.train.shared_prompt  # rftlab's defaults (TRL: generate, per row)


def test_the_prompt_tokens_match_and_a_different_prompt_is_caught(bench):
    m = bench.matched("tiny", kl=False)
    cfg = load_config("tiny", bench.rftlab_overrides(m))
    problem = bench.training_problem(cfg)
    policy = load_policy("tiny", device="cpu")
    assert bench.prompt_ids_match(policy, problem, None)
    policy.use_chat_template = False  # rftlab would send the bare message: the check must see it
    assert not bench.prompt_ids_match(policy, problem, None)


def test_grpo_config_keeps_the_matched_values(bench, tmp_path):
    trl = pytest.importorskip("trl", reason="the bench extra (pip install -e '.[bench]') is not installed")
    m = bench.matched("tiny", kl=True)
    kwargs = bench.trl_config_kwargs(m, str(tmp_path), 12)
    config = trl.GRPOConfig(**kwargs)
    for key in ("num_generations", "max_completion_length", "learning_rate", "beta", "epsilon", "temperature", "top_k"):
        assert getattr(config, key) == kwargs[key], key
    assert config.loss_type == "dapo" and config.bf16 is False and config.max_steps == 12
