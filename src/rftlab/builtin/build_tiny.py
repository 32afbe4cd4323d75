"""Rebuild a built-in tiny model from scratch: `rftlab build-tiny --profile tiny [--out DIR | --install --force]`.

Recipe (one loop, top to bottom):
1. Draw the pretraining corpus: train-split synthetic problems (`rftlab.tasks.synthetic`), each
   answered in one of several formats (`#### N` in ~30%; `The answer is N.`, `Answer: N`,
   `So ... N ...`, `\\boxed{N}` otherwise) and reasoning styles, a minority with a slip or a
   skipped step.
2. Train a byte-level BPE tokenizer on it (digits always split one by one), wrap it as a
   `PreTrainedTokenizerFast` with a chat template `<|user|>{content}\\n<|assistant|>`, eos and pad.
3. Pretrain a `LlamaForCausalLM` (a few million parameters) on
   `apply_chat_template(user turn, add_generation_prompt=True) + response + eos`, loss on the
   response tokens only, AdamW with warmup and cosine decay.
4. Measure on held-out (test-split) problems, with the project's own rollout
   (`rftlab.rollout.generate` on a `rftlab.policy.Policy`) and reward (`rftlab.rewards.score`):
   strict `#### N` Pass@1 at temperature 1 and greedily, the share of answers right in any
   format, the per-problem Pass@1 distribution.
5. Save with `save_pretrained` (fp32 safetensors) plus `build_report.json`.

Deterministic for a seed on a given machine and thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rftlab.errors import RftlabError
from rftlab.policy import Policy
from rftlab.rewards import score
from rftlab.rollout import generate
from rftlab.tasks.problem import Problem
from rftlab.tasks.synthetic import DEFAULT_FORMAT_WEIGHTS, generate_pretraining_samples, generate_problems

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}<|endoftext|>\n"
    "{% else %}<|system|>{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|system|>"]
BUILTIN_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Profile:
    """Everything a build depends on besides the seed."""

    # model (LlamaForCausalLM)
    hidden_size: int = 192  # d_model
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512  # SwiGLU width
    vocab_size: int = 640  # BPE vocabulary incl. 256 bytes and the special tokens
    max_positions: int = 256  # longer than the longest prompt + response
    # optimization
    steps: int = 900
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 60
    weight_decay: float = 0.1
    # data (knobs of rftlab.tasks.synthetic)
    problem_knobs: dict = field(default_factory=dict)
    format_weights: dict = field(default_factory=lambda: dict(DEFAULT_FORMAT_WEIGHTS))
    # evaluation on held-out problems
    eval_problems: int = 64
    eval_samples: int = 16  # samples per problem at temperature 1
    max_new_tokens: int = 128


PROFILES: dict[str, Profile] = {
    "tiny": Profile(),
    # One template, one operation: masters its own narrow world, not the broad test distribution.
    "tiny-narrow": Profile(steps=500, problem_knobs={"templates": ("shop",), "ops": ("+",)}),
    # For tests: runs end to end in well under a minute.
    "smoke": Profile(
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        intermediate_size=128,
        steps=8,
        batch_size=8,
        warmup_steps=2,
        eval_problems=4,
        eval_samples=2,
        max_new_tokens=48,
    ),
}


# ---------------------------------------------------------------------------------------------
# tokenizer and model
# ---------------------------------------------------------------------------------------------


def build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        additional_special_tokens=SPECIAL_TOKENS[2:],
        padding_side="left",
        model_max_length=4096,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(p: Profile, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        num_key_value_heads=p.num_heads,
        max_position_embeddings=p.max_positions,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def as_policy(name: str, model, tokenizer) -> Policy:
    """Wrap a freshly built model as the project's Policy, set up as `rftlab.policy.load_policy` does."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # prompts left-padded so every response starts at one column
    return Policy(name=name, model=model, tokenizer=tokenizer, device=next(model.parameters()).device)


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------

# `rftlab.evaluation.evaluate` computes strict Pass@1 the same way (generate, then score each
# response), but it keeps only per-problem counts, not the responses, and the any-format share,
# the `####` share, the lengths and the examples below need the texts; calling it as well would
# generate every response twice. So this generates once with `rftlab.rollout.generate` and scores
# with `rftlab.rewards.score`, the same two pieces that function is made of.


def evaluate(
    policy: Policy,
    problems: list[Problem],
    *,
    samples: int,
    max_new_tokens: int = 128,
    seed: int = 0,
    batch_size: int = 256,
) -> dict:
    """Held-out measurements: strict and any-format accuracy at T=1 and greedy, per-problem Pass@1.

    Strict is the paper's GSM8K reward (`gsm8k_strict`: the number after the last `#### N`).
    Any format is `auto` extraction with `allow_last_number=True`: a `####` line, else the last
    `\\boxed{}`, else "the answer is"/"Answer:", else the last number in the text. (Until this used
    the project's reward it was the last number only, so e.g. `#### 14` followed by more numbers
    counted as wrong; numbers are now compared by value, `14.0` == `14`.)
    """
    prompts = [policy.prompt_text(p) for p in problems]
    common = dict(max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size)
    sampled = generate(policy, prompts, samples_per_prompt=samples, temperature=1.0, **common)
    greedy = generate(policy, prompts, greedy=True, **common)
    answers = [p.answer for p in problems]

    def strict_ok(batch) -> list[bool]:
        return [score(t, answers[i], "gsm8k_strict") for t, i in zip(batch.texts, batch.prompt_index, strict=True)]

    def any_format_ok(batch) -> list[bool]:
        return [
            score(t, answers[i], "auto", allow_last_number=True)
            for t, i in zip(batch.texts, batch.prompt_index, strict=True)
        ]

    strict_t1 = strict_ok(sampled)
    correct = [0] * len(problems)
    for ok, i in zip(strict_t1, sampled.prompt_index, strict=True):
        correct[i] += ok
    per_problem = [c / samples for c in correct]
    bins = [0.0, 0.1, 0.3, 0.6, 0.9, 1.0001]
    hist = {
        f"[{lo:g},{min(hi, 1):g}{']' if hi > 1 else ')'}": sum(lo <= x < hi for x in per_problem)
        for lo, hi in zip(bins[:-1], bins[1:], strict=True)
    }
    return {
        "problems": len(problems),
        "samples_per_problem": samples,
        "strict_pass_at_1_t1": _mean(strict_t1),
        "any_format_correct_t1": _mean(any_format_ok(sampled)),
        "hash_format_share_t1": _mean("####" in t for t in sampled.texts),
        "strict_pass_at_1_greedy": _mean(strict_ok(greedy)),
        "any_format_correct_greedy": _mean(any_format_ok(greedy)),
        "per_problem_pass_at_1_histogram": hist,
        "share_problems_pass_at_1_in_0.1_0.6": _mean(0.1 <= x <= 0.6 for x in per_problem),
        "mean_response_chars_t1": _mean(len(t) for t in sampled.texts),
        "examples_t1": [  # rows are grouped by prompt: the first `samples` answer problems[0]
            {"question": problems[0].question, "response": sampled.texts[j]} for j in range(min(3, samples))
        ],
    }


def _mean(xs) -> float:
    xs = list(xs)
    return round(sum(xs) / max(len(xs), 1), 4)


# ---------------------------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------------------------


def build(
    out: Path,
    profile: str = "tiny",
    seed: int = 0,
    *,
    steps: int | None = None,
    threads: int = 1,
    progress: bool = True,
) -> dict:
    from tqdm import tqdm

    p = PROFILES[profile]
    if steps is not None:
        p = Profile(**{**asdict(p), "steps": steps})
    t0 = time.time()
    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    random.seed(seed)
    torch.manual_seed(seed)

    # data: a fresh train-split sample per step, drawn once up front
    n = p.steps * p.batch_size
    samples = generate_pretraining_samples(n, seed, format_weights=p.format_weights, **p.problem_knobs)
    tok_texts = generate_pretraining_samples(4000, seed + 10_000, format_weights=p.format_weights, **p.problem_knobs)
    tokenizer = build_tokenizer([s.problem.user_message() + "\n" + s.response for s in tok_texts], p.vocab_size)
    model = build_model(p, tokenizer)  # the first use of torch's RNG: the same init as ever
    policy = as_policy(profile, model, tokenizer)
    prompts = tokenizer([policy.prompt_text(s.problem) for s in samples], add_special_tokens=False)["input_ids"]
    responses = tokenizer([s.response for s in samples], add_special_tokens=False)["input_ids"]
    seqs = [(pr, rs + [tokenizer.eos_token_id]) for pr, rs in zip(prompts, responses, strict=True)]
    max_len = max(len(a) + len(b) for a, b in seqs)
    if max_len > p.max_positions:
        raise ValueError(f"longest sample has {max_len} tokens > max_positions {p.max_positions}")

    n_params = sum(t.numel() for t in model.parameters())
    decay = [t for t in model.parameters() if t.dim() >= 2]
    no_decay = [t for t in model.parameters() if t.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": p.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=p.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < p.warmup_steps:
            return p.lr * (step + 1) / p.warmup_steps
        frac = (step - p.warmup_steps) / max(1, p.steps - p.warmup_steps)
        return p.lr * (p.min_lr_ratio + (1 - p.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    # forward backward update
    model.train()
    losses: list[float] = []
    bar = tqdm(range(p.steps), desc=f"build {profile}", disable=not progress)
    for step in bar:
        batch = seqs[step * p.batch_size : (step + 1) * p.batch_size]
        T = max(len(a) + len(b) for a, b in batch)
        ids = torch.full((len(batch), T), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(batch), T), -100, dtype=torch.long)  # (B, T)
        for i, (a, b) in enumerate(batch):
            ids[i, : len(a) + len(b)] = torch.tensor(a + b)
            labels[i, len(a) : len(a) + len(b)] = torch.tensor(b)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        # right padding under a causal mask never reaches a real token, so no attention mask is
        # needed (and without one SDPA takes its fast causal path)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    train_s = time.time() - t0

    # evaluate on held-out problems of the same distribution (`generate` seeds torch per call)
    held_out = generate_problems(p.eval_problems, seed=10_000 + seed, split="test", **p.problem_knobs)
    metrics = {
        "in_distribution": evaluate(
            policy, held_out, samples=p.eval_samples, max_new_tokens=p.max_new_tokens, seed=seed + 1
        )
    }
    if p.problem_knobs:  # a narrow profile: also measure on the default (broad) distribution
        broad = generate_problems(p.eval_problems, seed=10_000 + seed, split="test")
        metrics["default_distribution"] = evaluate(
            policy, broad, samples=p.eval_samples, max_new_tokens=p.max_new_tokens, seed=seed + 2
        )

    # save
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out)
    report = {
        "profile": profile,
        "seed": seed,
        "architecture": "LlamaForCausalLM",
        "parameters": n_params,
        "settings": asdict(p),
        "longest_sample_tokens": max_len,
        "final_train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "loss_curve": [round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 4) for i in range(0, len(losses), 50)],
        "train_seconds": round(train_s, 1),
        "wall_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "eval": metrics,
    }
    (out / "build_report.json").write_text(json.dumps(report, indent=2, default=list) + "\n")
    return report


def _portable_tokenizer_config(out: Path) -> None:
    """Let transformers 4.x load it too: its class name for the fast tokenizer, the template inline."""
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg.setdefault("additional_special_tokens", SPECIAL_TOKENS[2:])
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def build_target(profile: str, out: Path | None, *, install: bool = False, force: bool = False) -> Path:
    """Where a build goes: --out, the shipped folder with --install, else ./tiny-build/<profile>.

    The shipped model is what `model.name=<profile>` loads and what the README's numbers were measured
    on, so replacing it takes --force.
    """
    shipped = BUILTIN_DIR / profile
    if install and out is not None:
        raise RftlabError("build-tiny: give --out or --install, not both")
    target = shipped if install else out or Path("tiny-build") / profile
    if target.resolve() == shipped.resolve() and (shipped / "config.json").is_file() and not force:
        raise RftlabError(
            f"build-tiny: {shipped} holds the shipped {profile!r} model (the README's numbers were measured on it); "
            f"add --force to replace it, or build elsewhere with --out DIR"
        )
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rftlab build-tiny", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: ./tiny-build/<profile>; use it with model.name=./tiny-build/<profile>)",
    )
    ap.add_argument(
        "--install",
        action="store_true",
        help="write into the shipped folder rftlab/builtin/<profile>/ (the built-in model=<profile>); "
        "replacing a shipped model also needs --force",
    )
    ap.add_argument("--force", action="store_true", help="allow overwriting the shipped built-in model")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="tiny", help="which built-in model to build")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corpus, the initialization and the evaluation")
    ap.add_argument("--steps", type=int, default=None, help="override the profile's number of optimizer steps")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is the robust choice on a shared machine; 2 is faster when idle)",
    )
    args = ap.parse_args(argv)
    out = build_target(args.profile, args.out, install=args.install, force=args.force)
    report = build(out, args.profile, args.seed, steps=args.steps, threads=args.threads)
    ev = report["eval"]["in_distribution"]
    print(f"saved {out}  ({report['parameters']:,} params, {report['wall_seconds']:.0f} s); use it: model.name={out}")
    print(
        f"held-out strict Pass@1 T=1 {ev['strict_pass_at_1_t1']:.3f}  greedy {ev['strict_pass_at_1_greedy']:.3f}  "
        f"any-format T=1 {ev['any_format_correct_t1']:.3f}  '####' share {ev['hash_format_share_t1']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
