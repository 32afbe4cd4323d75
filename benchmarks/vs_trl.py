"""rftlab vs TRL's GRPOTrainer: rounds per second on one matched configuration, in interleaved A/B pairs.

    OMP_NUM_THREADS=1 python benchmarks/vs_trl.py --model tiny --pairs 3            # G = 8, KL off
    OMP_NUM_THREADS=1 python benchmarks/vs_trl.py --model tiny --kl --pairs 3       # G = 8, KL on
    OMP_NUM_THREADS=1 python benchmarks/vs_trl.py --model smollm2-135m --pairs 3    # G = 4, 128 tokens
    OMP_NUM_THREADS=1 python benchmarks/vs_trl.py --model tiny --engine hf --no-shared-prompt  # generate, per-row update
    python benchmarks/vs_trl.py --model tiny --check    # the matched settings and the prompt check only

TRL is not an rftlab dependency: `pip install -e ".[bench]"` brings the version this was written for.

One round is the same work on both sides: G samples of one training prompt (the first problem of the
candidate pool, `data.difficulty=any`), the 0/1 reward of each (`rftlab.rewards.score`, TRL calls it as
its reward function), group-normalized advantages, one clipped-surrogate loss, token-mean over the
batch (TRL's `loss_type="dapo"`), one AdamW step. Matched: model and tokenizer (rftlab's loader, float32,
the prompt through the same chat template, checked token for token), G, response length, sampling
(temperature 1, top-p 1, no top-k), lr (constant), weight decay, gradient clipping, clip eps, the KL
coefficient (k3 estimator, a frozen reference copy on both sides), 1 thread each, no evaluation,
checkpointing or progress bars; TRL logs every step (`logging_steps=1`) as rftlab does. Each measurement
is a fresh process (`--worker`): it loads the model, runs `--warmup` rounds untimed, then times
`--rounds` rounds. A pair runs both sides back to back, alternating which goes first; the ratio of a pair
is rftlab rounds/s over TRL rounds/s. Responses are sampled, so their lengths differ between the two
sides and between pairs: the mean response length per side is printed beside the rates. G = 1 is
measured for rftlab alone (TRL's GRPOTrainer refuses num_generations = 1). The machine is shared:
`uptime` is printed before and after, and only the ratios of interleaved pairs are meaningful. The
ratio of rounds per CPU second of each process (its own CPU time, all its threads) is printed too: on
a heavily loaded machine the wall clock mostly measures waiting for a core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# TRL, accelerate and datasets look for the hub and report usage unless told not to; everything is local here.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "WANDB_DISABLED": "true",
    "TOKENIZERS_PARALLELISM": "false",
}

KL_COEF = 0.04  # "KL on": DeepSeekMath's and TRL's earlier default beta
LAST_LINE = "ratio rftlab/TRL rounds per second: {ratio:.2f}"


@dataclass(frozen=True)
class Matched:
    """One configuration, in the terms both trainers are configured in."""

    model: str
    rollouts_per_round: int  # G
    max_new_tokens: int
    lr: float
    kl_coef: float
    engine: str = "lean"  # rftlab's rollout.engine, its default (TRL always uses transformers' generate)
    shared_prompt: bool = True  # rftlab's train.shared_prompt, its default (TRL runs the prompt once per sample)
    temperature: float = 1.0
    top_p: float = 1.0
    clip_eps: float = 0.2
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.999
    seed: int = 0


# The configurations of issue 11: tiny at G = 8 (its main job's lr and response budget), SmolLM2 at G = 4
# with 128 response tokens (rftlab's default lr).
MODELS = {
    "tiny": dict(rollouts_per_round=8, max_new_tokens=160, lr=3e-5, rounds=10, warmup=2),
    "smollm2-135m": dict(rollouts_per_round=4, max_new_tokens=128, lr=1e-5, rounds=3, warmup=1),
}


def matched(
    model: str, *, kl: bool, rollouts_per_round: int | None = None, engine: str = "lean", shared_prompt: bool = True
) -> Matched:
    spec = MODELS[model]
    return Matched(
        model=model,
        rollouts_per_round=rollouts_per_round or spec["rollouts_per_round"],
        max_new_tokens=spec["max_new_tokens"],
        lr=spec["lr"],
        kl_coef=KL_COEF if kl else 0.0,
        engine=engine,
        shared_prompt=shared_prompt,
    )


def base_config_name(model: str) -> str:
    return "smollm2-135m" if model == "smollm2-135m" else "tiny"


def rftlab_overrides(m: Matched) -> list[str]:
    """Dotted overrides on the model's built-in config that make rftlab run the matched round."""
    return [
        f"model.name={m.model}",
        f"seed={m.seed}",
        "data.difficulty=any",
        "data.train_examples=1",
        "train.examples_per_round=1",
        f"rollout.rollouts_per_round={m.rollouts_per_round}",
        f"rollout.max_new_tokens={m.max_new_tokens}",
        f"rollout.temperature={m.temperature}",
        f"rollout.top_p={m.top_p}",
        f"rollout.engine={m.engine}",
        f"train.shared_prompt={str(m.shared_prompt).lower()}",
        "objective.advantage=grpo",
        "objective.reward_design=binary",
        "objective.aggregation=token_mean",
        f"objective.clip_eps_low={m.clip_eps}",
        f"objective.clip_eps_high={m.clip_eps}",
        "objective.updates_per_batch=1",
        f"objective.kl_coef={m.kl_coef}",
        "objective.kl_estimator=k3",
        "optim.optimizer=adamw",
        f"optim.lr={m.lr}",
        f"optim.weight_decay={m.weight_decay}",
        f"optim.beta1={m.beta1}",
        f"optim.beta2={m.beta2}",
        f"optim.grad_clip={m.grad_clip}",
        "model.dtype=float32",
        "model.master_dtype=float32",
        "model.device=cpu",
        "run.threads=1",
        "run.progress=false",
    ]


def trl_config_kwargs(m: Matched, output_dir: str, steps: int) -> dict:
    """GRPOConfig arguments for the matched round (plain values: checked without TRL installed)."""
    return dict(
        output_dir=output_dir,
        seed=m.seed,
        max_steps=steps,
        per_device_train_batch_size=m.rollouts_per_round,  # completions per step: one prompt's G
        num_generations=m.rollouts_per_round,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        max_completion_length=m.max_new_tokens,
        temperature=m.temperature,
        top_p=m.top_p,
        top_k=0,
        repetition_penalty=1.0,
        learning_rate=m.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=m.weight_decay,
        adam_beta1=m.beta1,
        adam_beta2=m.beta2,
        max_grad_norm=m.grad_clip,
        beta=m.kl_coef,
        epsilon=m.clip_eps,
        loss_type="dapo",
        scale_rewards="group",
        mask_truncated_completions=False,
        shuffle_dataset=False,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        log_completions=False,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def training_problem(cfg):
    """The one training problem: the first of the candidate pool (what `data.difficulty=any` picks)."""
    from rftlab.selection import candidate_pool
    from rftlab.trainer import load_task

    train_split, _ = load_task(cfg)
    return candidate_pool(train_split, cfg.data.difficulty_pool, cfg.data.selection_seed)[0]


def prompt_ids_match(policy, problem, style: str | None) -> bool:
    """Does TRL's tokenization of the conversational prompt give rftlab's rollout prompt ids?

    rftlab renders the chat template to text and tokenizes it without special tokens (rollout/hf.py);
    TRL applies the same template with tokenize=True.
    """
    ours = policy.tokenizer(policy.prompt_text(problem, style), add_special_tokens=False)["input_ids"]
    theirs = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": problem.user_message(style)}], add_generation_prompt=True, tokenize=True
    )
    theirs = theirs["input_ids"] if isinstance(theirs, dict) or hasattr(theirs, "keys") else theirs
    return list(ours) == list(theirs)


# ----------------------------------------------------------------------------- the two workers


def time_rftlab(m: Matched, rounds: int, warmup: int) -> dict:
    """rftlab's round (the trainer's own roll_out, reward_and_advantage, policy_update), timed."""
    import torch

    from rftlab import trainer
    from rftlab.config import load_config

    cfg = load_config(base_config_name(m.model), rftlab_overrides(m))
    task = trainer.set_up(cfg)
    policy = task.policy
    reference = trainer.build_reference(cfg, policy)
    optimizer = trainer.build_optimizer(cfg, policy.trainable_parameters())
    examples = [training_problem(cfg)]
    state = trainer.RunState([examples[0].id], {}, torch.zeros(1), torch.zeros(1))
    lengths, stamps, cpu = [], [time.perf_counter()], [time.process_time()]
    for round_ in range(1, warmup + rounds + 1):
        pick, chosen, batch = trainer.roll_out(cfg, task, examples, round_)
        _, _, adv = trainer.reward_and_advantage(cfg, state, task, chosen, pick, batch)
        update = trainer.policy_update(cfg, policy, reference, optimizer, batch, adv.reshape(-1))
        trainer.check_finite(round_, update, policy.model, None)
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())
        if round_ > warmup:
            lengths.append(float(batch.response_lengths.float().mean()))
    return {
        "rounds_per_s": rounds / (stamps[-1] - stamps[warmup]),
        "rounds_per_cpu_s": rounds / (cpu[-1] - cpu[warmup]),
        "response_tokens": statistics.mean(lengths),
    }


def time_trl(m: Matched, rounds: int, warmup: int) -> dict:
    """TRL's GRPOTrainer on the same model object, prompt and reward, timed between step ends."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rftlab.config import load_config
    from rftlab.policy import load_policy
    from rftlab.rewards import score

    torch.set_num_threads(1)
    torch.manual_seed(m.seed)
    cfg = load_config(base_config_name(m.model), rftlab_overrides(m))
    problem = training_problem(cfg)
    style = None if cfg.data.prompt_style == "auto" else cfg.data.prompt_style
    answer_format = cfg.resolved_answer_format(style or problem.prompt_style)
    policy = load_policy(m.model, device="cpu")
    lengths: list[float] = []

    def reward(completions, answer, completion_ids=None, **_):
        if completion_ids is not None:
            lengths.append(statistics.mean(len(ids) for ids in completion_ids))
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [float(score(t, a, answer_format)) for t, a in zip(texts, answer, strict=True)]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.stamps, self.cpu = [time.perf_counter()], [time.process_time()]

        def on_step_end(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())
            self.cpu.append(time.process_time())

    data = Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": problem.user_message(style)}]], "answer": [problem.answer]}
    )
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        trl = GRPOTrainer(
            model=policy.model,
            reward_funcs=reward,
            args=GRPOConfig(**trl_config_kwargs(m, out, warmup + rounds)),
            train_dataset=data,
            processing_class=policy.tokenizer,
            callbacks=[clock],
        )
        trl.train()
    stamps, cpu = clock.stamps, clock.cpu
    return {
        "rounds_per_s": rounds / (stamps[warmup + rounds] - stamps[warmup]),
        "rounds_per_cpu_s": rounds / (cpu[warmup + rounds] - cpu[warmup]),
        "response_tokens": statistics.mean(lengths[warmup:]) if lengths else float("nan"),
    }


# ----------------------------------------------------------------------------- the driver


def measure(which: str, m: Matched, rounds: int, warmup: int) -> dict:
    """One measurement in a fresh process with one thread (and the offline environment)."""
    cmd = [sys.executable, __file__, "--worker", which, "--model", m.model, "--rounds", str(rounds)]
    cmd += ["--warmup", str(warmup), "--g", str(m.rollouts_per_round), "--engine", m.engine]
    cmd += ["--kl"] if m.kl_coef else []
    cmd += ["--shared-prompt" if m.shared_prompt else "--no-shared-prompt"]
    env = {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"vs_trl: the {which} worker failed (exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}, {fmt.format(max(values))}]"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", choices=sorted(MODELS), help="the matched configuration")
    parser.add_argument("--kl", action="store_true", help=f"KL to a frozen reference on (coefficient {KL_COEF})")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved rftlab/TRL pairs (>= 3)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per measurement (default per model)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default per model)")
    parser.add_argument(
        "--engine",
        default="lean",
        choices=("hf", "lean"),
        help="rftlab's rollout.engine (default lean, rftlab's default; hf: generate, as TRL)",
    )
    parser.add_argument(
        "--shared-prompt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rftlab's train.shared_prompt (default on, rftlab's default): each distinct prompt through the "
        "model once per update; --no-shared-prompt runs every row's prompt, as TRL does",
    )
    parser.add_argument("--no-g1", action="store_true", help="skip rftlab's G = 1 measurement")
    parser.add_argument("--check", action="store_true", help="print the matched settings and prompt check, no timing")
    parser.add_argument("--worker", choices=("rftlab", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--g", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pairs < 3 and not args.worker:
        parser.error(f"--pairs {args.pairs}: at least 3 interleaved pairs give a median and a range")
    args.rounds = args.rounds or MODELS[args.model]["rounds"]
    args.warmup = MODELS[args.model]["warmup"] if args.warmup is None else args.warmup
    if args.rounds < 1 or args.warmup < 1:
        parser.error("--rounds and --warmup must be >= 1 (the first round pays one-off costs)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        os.environ.update(OFFLINE_ENV)
        m = matched(
            args.model, kl=args.kl, rollouts_per_round=args.g, engine=args.engine, shared_prompt=args.shared_prompt
        )
        timed = (time_rftlab if args.worker == "rftlab" else time_trl)(m, args.rounds, args.warmup)
        print(json.dumps(timed))
        return
    m = matched(args.model, kl=args.kl, engine=args.engine, shared_prompt=args.shared_prompt)
    print("command:", f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}", " ".join(sys.argv))
    print("matched:", json.dumps(dataclasses.asdict(m)))
    from rftlab.config import load_config
    from rftlab.policy import load_policy

    cfg = load_config(base_config_name(m.model), rftlab_overrides(m))
    problem = training_problem(cfg)
    style = None if cfg.data.prompt_style == "auto" else cfg.data.prompt_style
    same = prompt_ids_match(load_policy(m.model, device="cpu"), problem, style)
    print(f"training problem {problem.id}; prompt token ids identical in rftlab and TRL: {same}")
    if not same:
        raise SystemExit("vs_trl: the two sides would see different prompt tokens; not a matched comparison")
    if args.check:
        return
    print(
        f"{args.pairs} pairs x ({args.warmup} warm-up + {args.rounds} timed rounds) per side; load before: {uptime()}"
    )
    print(
        f"{'pair':>4s} {'first':>6s} {'rftlab r/s':>10s} {'TRL r/s':>8s} {'ratio':>6s} {'cpu ratio':>9s} "
        f"{'tok rftlab':>10s} {'tok TRL':>8s}"
    )
    ours, theirs, ratios, cpu_ratios = [], [], [], []
    for pair in range(args.pairs):
        order = ("rftlab", "trl") if pair % 2 == 0 else ("trl", "rftlab")
        timed = {which: measure(which, m, args.rounds, args.warmup) for which in order}
        a, b = timed["rftlab"], timed["trl"]
        ours.append(a["rounds_per_s"])
        theirs.append(b["rounds_per_s"])
        ratios.append(a["rounds_per_s"] / b["rounds_per_s"])
        cpu_ratios.append(a["rounds_per_cpu_s"] / b["rounds_per_cpu_s"])
        print(
            f"{pair + 1:4d} {order[0]:>6s} {a['rounds_per_s']:10.3f} {b['rounds_per_s']:8.3f} {ratios[-1]:6.2f} "
            f"{cpu_ratios[-1]:9.2f} {a['response_tokens']:10.1f} {b['response_tokens']:8.1f}",
            flush=True,
        )
    label = f"{m.model}, G = {m.rollouts_per_round}, {m.max_new_tokens} tokens, KL {'on' if m.kl_coef else 'off'}"
    label += f", rftlab rollout.engine={m.engine}, train.shared_prompt={str(m.shared_prompt).lower()}"
    print(f"\n{label}: median [range] over {args.pairs} pairs")
    print(f"  rftlab rounds/s {spread(ours, '{:.3f}')}")
    print(f"  TRL    rounds/s {spread(theirs, '{:.3f}')}")
    print(f"  ratio  rftlab/TRL {spread(ratios)}")
    print(f"  ratio of rounds per CPU second (each process's own CPU time) {spread(cpu_ratios)}")
    if not args.no_g1:
        g1 = matched(args.model, kl=args.kl, rollouts_per_round=1, engine=args.engine, shared_prompt=args.shared_prompt)
        rates = [measure("rftlab", g1, args.rounds, args.warmup)["rounds_per_s"] for _ in range(args.pairs)]
        print(f"  rftlab at G = 1 (TRL refuses G = 1): rounds/s {spread(rates, '{:.3f}')}")
    print(f"load after: {uptime()}")
    print(LAST_LINE.format(ratio=statistics.median(ratios)))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))  # a checkout without an install
    main()
