"""The paper's architectures through the same trainer: small random-init Qwen2, Llama, OLMo2 and Gemma3
models built from `transformers` configs (no hub), each saved with a tokenizer that carries its
family's chat template, then trained with bf16 compute, LoRA, KL on and mu > 1.

The chat templates below are minimal faithful versions of each family's instruct template (one
user turn plus the generation prompt, the default system turn where the family adds one). Their
tokenizers are tiny's byte-level BPE with the family's special tokens added; the real SmolLM2 and
Qwen2.5 tokenizers are checked too where they are installed.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from rftlab import trainer
from rftlab.config import load_config
from rftlab.policy import BUILTIN_DIR, cache_dir, load_policy, response_logp
from rftlab.rollout import generate
from rftlab.runs import read_jsonl
from rftlab.tasks.problem import PROMPT_SUFFIXES, Problem

CHATML_QWEN = (
    "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3 = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
OLMO2 = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\\n' + "
    "message['content'] + '\\n' }}{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + "
    "'\\n' }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + eos_token + "
    "'\\n' }}{% endif %}{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{%- for message in messages -%}{%- set role = 'model' if message['role'] == 'assistant' "
    "else message['role'] -%}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
    "'<end_of_turn>\\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)

SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=512,
)

# family: (config class, extra config, chat template, bos, eos, special tokens, generation-prompt tail)
FAMILIES = {
    "qwen2": (
        transformers.Qwen2Config,
        {"tie_word_embeddings": True},
        CHATML_QWEN,
        None,
        "<|im_end|>",
        ["<|im_start|>", "<|im_end|>"],
        "<|im_start|>assistant\n",
    ),
    "llama": (
        transformers.LlamaConfig,
        {},
        LLAMA3,
        "<|begin_of_text|>",
        "<|eot_id|>",
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "olmo2": (transformers.Olmo2Config, {}, OLMO2, "<|endoftext|>", "<|endoftext|>", [], "<|assistant|>\n"),
    "gemma3": (
        transformers.Gemma3TextConfig,
        {"final_logit_softcapping": 30.0, "sliding_window": 8, "query_pre_attn_scalar": 16},
        GEMMA,
        "<bos>",
        "<end_of_turn>",
        ["<bos>", "<start_of_turn>", "<end_of_turn>"],
        "<start_of_turn>model\n",
    ),
}


def build_family(name: str, directory) -> None:
    """A random-init model of the family with tiny's BPE plus the family's special tokens and template."""
    config_cls, extra, template, bos, eos, specials, _ = FAMILIES[name]
    tokenizer = AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny")
    tokenizer.add_tokens(specials, special_tokens=True)
    tokenizer.bos_token, tokenizer.eos_token = bos, eos
    tokenizer.chat_template = template
    ids = tokenizer.convert_tokens_to_ids
    config = config_cls(
        vocab_size=len(tokenizer),
        bos_token_id=ids(bos) if bos else None,
        eos_token_id=ids(eos),
        pad_token_id=tokenizer.pad_token_id,
        **SMALL,
        **extra,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    for name in FAMILIES:
        build_family(name, root / name)
    return {name: root / name for name in FAMILIES}


PROBLEM = Problem(
    id="p",
    question="Tom has 3 apples and buys 4 more. How many apples does he have?",
    answer="7",
    source="gsm8k",
    prompt_style="gsm8k",
)


def check_prompt(tokenizer_policy, tail: str, bos: str | None) -> None:
    """The template is applied, the paper's suffix is in the user turn, and there is exactly one BOS."""
    text = tokenizer_policy.prompt_text(PROBLEM)
    tok = tokenizer_policy.tokenizer
    assert PROMPT_SUFFIXES["gsm8k"] in text and PROBLEM.question in text
    assert text.endswith(tail) and text != PROBLEM.user_message() + "\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]  # as rollout/hf.py tokenizes
    if bos is None:
        assert tok.bos_token is None or tok.bos_token_id not in ids[:1] or ids[:2].count(tok.bos_token_id) == 1
    else:
        bos_id = tok.convert_tokens_to_ids(bos)
        assert ids[0] == bos_id and ids.count(bos_id) == 1


@pytest.mark.parametrize("name", list(FAMILIES))
def test_chat_template_suffix_and_one_bos(family_dirs, name):
    _, _, _, bos, _, _, tail = FAMILIES[name]
    check_prompt(load_policy(str(family_dirs[name])), tail, bos)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_chunked_logp_equals_whole_batch(family_dirs, name):
    """Values, entropy and gradients, 1e-5; Gemma3 with final_logit_softcapping set."""
    policy = load_policy(str(family_dirs[name]))
    if name == "gemma3":
        assert policy.model.config.final_logit_softcapping == 30.0
    batch = generate(policy, [policy.prompt_text(PROBLEM)], samples_per_prompt=2, max_new_tokens=12, seed=0)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    results = []
    for chunk_tokens in (0, 5):
        policy.model.zero_grad(set_to_none=True)
        logp, entropy = response_logp(policy, *args, with_entropy=True, chunk_tokens=chunk_tokens)
        (logp * batch.response_mask).sum().backward()
        results.append((logp.detach(), entropy, {n: p.grad.clone() for n, p in policy.model.named_parameters()}))
    (la, ea, ga), (lb, eb, gb) = results
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ea, eb, atol=1e-5, rtol=1e-5)
    for n in ga:
        assert float((ga[n] - gb[n]).abs().max()) <= 1e-5 * (float(ga[n].abs().max()) + 1e-12), n


@pytest.mark.parametrize("name", list(FAMILIES))
def test_logits_to_keep_and_shared_log_softmax_equal_the_earlier_logp(family_dirs, name):
    """Response-only logits (logits_to_keep) vs every position's, float32: values, entropy and gradients to
    1e-6 through the same log-softmax; to the earlier token - logsumexp form within its own rounding."""
    from logp_reference import (
        earlier_logp,
        full_position_logp,
        logp_entropy_grads,
        worst_gradient_difference,
    )

    policy = load_policy(str(family_dirs[name]))
    batch = generate(policy, [policy.prompt_text(PROBLEM)], samples_per_prompt=2, max_new_tokens=12, seed=0)
    new = logp_entropy_grads(policy, batch, lambda p, *a: response_logp(p, *a, with_entropy=True))
    full = logp_entropy_grads(policy, batch, full_position_logp)
    old = logp_entropy_grads(policy, batch, earlier_logp)
    torch.testing.assert_close(new[0], full[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(new[1], full[1], atol=1e-6, rtol=0)
    assert worst_gradient_difference(full[2], new[2]) <= 1e-6
    torch.testing.assert_close(new[0], old[0], atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(new[1], old[1], atol=1e-6, rtol=0)
    assert worst_gradient_difference(old[2], new[2]) <= 1e-5


TRAIN = [
    "train.rounds=2",
    "eval.every=0",
    "eval.train_samples=2",
    "data.test_size=2",
    "data.difficulty=any",
    "run.progress=false",
    "rollout.max_new_tokens=12",
    "rollout.rollouts_per_round=2",
    "objective.reward_design=pm1",
    "objective.kl_coef=0.05",  # reward +-1: never a zero signal
    "objective.updates_per_batch=2",
    "optim.lr=1e-3",
    "model.dtype=bfloat16",
]
MODES = {
    "full_bf16": [],
    "lora_bf16": [
        "model.lora_rank=4",
        "model.lora_alpha=32",
        "optim.lr=2e-2",
        "train.logprob_chunk_tokens=8",
    ],
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_trainer_runs_the_family(family_dirs, tmp_path, name, mode):
    cfg = load_config("tiny", TRAIN + MODES[mode] + [f"model.name={family_dirs[name]}"])
    summary = trainer.train(cfg, tmp_path / "run")
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train_round"]
    assert [r["round"] for r in rows] == [1, 2] and summary["rounds"] == 2
    for r in rows:
        assert all(isinstance(r[k], float) and r[k] == r[k] for k in ("loss/policy", "loss/kl", "optim/grad_norm"))
        assert r["ratio/max"] != 1.0 or r["ratio/min"] != 1.0  # mu = 2: the second update sees moved weights
    assert rows[-1]["loss/kl"] > 0
    saved = torch.load(tmp_path / "run" / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    initial = AutoModelForCausalLM.from_pretrained(family_dirs[name]).state_dict()
    if mode.startswith("lora"):
        assert saved and all("lora_" in k for k in saved)
    else:
        assert all(v.dtype == torch.float32 for v in saved.values())  # master weights stay float32
        assert any(not torch.equal(initial[k], saved[k]) for k in initial)


# ----------------------------------------------------------------------------- real tokenizers


def smollm2_tokenizer():
    converted = cache_dir() / "models" / "smollm2-135m"
    if (converted / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(converted)
    try:
        from rftlab.policy import smollm2_gguf_path

        gguf = smollm2_gguf_path()
    except Exception as err:  # noqa: BLE001 - not installed: nothing to check
        pytest.skip(f"SmolLM2 not installed ({err})")
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def qwen_tokenizer():
    found = sorted(p for p in (cache_dir() / "models").glob("qwen*") if (p / "tokenizer_config.json").is_file())
    if not found:
        pytest.skip("no Qwen built-in in the rftlab cache (developer C's opt-in qwen2.5-coder-0.5b)")
    return AutoTokenizer.from_pretrained(found[0])


def policy_with(tokenizer, config_cls) -> trainer.Policy:
    """A random-init model of the tokenizer's vocabulary, wrapped as the loader wraps it."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    config = config_cls(
        vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **SMALL
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    return trainer.Policy("real", model, tokenizer, torch.device("cpu"))


SMOLLM2_CONVERTED = (cache_dir() / "models" / "smollm2-135m" / "tokenizer_config.json").is_file()


@pytest.mark.parametrize(
    "which", [pytest.param("smollm2", marks=[] if SMOLLM2_CONVERTED else pytest.mark.slow), "qwen"]
)  # reading SmolLM2's tokenizer from its GGUF takes ~20 s; from the converted copy < 1 s
def test_real_tokenizers_prompt_and_update(which):
    tokenizer = smollm2_tokenizer() if which == "smollm2" else qwen_tokenizer()
    policy = policy_with(tokenizer, transformers.LlamaConfig if which == "smollm2" else transformers.Qwen2Config)
    check_prompt(policy, "<|im_start|>assistant\n", None)
    text = policy.prompt_text(PROBLEM)
    assert text.count("<|im_start|>user\n") == 1 and not text.startswith("<|im_start|><|im_start|>")
    cfg = load_config("tiny", TRAIN)
    optimizer = trainer.build_optimizer(cfg, policy.trainable_parameters())
    batch = generate(policy, [text], samples_per_prompt=2, max_new_tokens=8, seed=0)
    metrics = trainer.policy_update(cfg, policy, None, optimizer, batch, torch.tensor([1.0, -1.0]))
    assert metrics["optim/grad_norm"] > 0
