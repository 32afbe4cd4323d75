"""`rftlab sample RUN "question"`: a trained run's (or an exported model's) responses to one question.

The policy comes back through the code `rftlab export` uses (`rftlab.export.load_run_policy`: the
run's config.yaml, its model loaded as the run loaded it, full fine-tune or LoRA, and the checkpoint's
weights, in the run's precision). The question goes through the run's prompt builder
(`Policy.prompt_text`: the chat template and the paper's suffix for the run's prompt style) and each
response's answer is extracted as the run's reward extracted it (`rftlab.rewards`, the run's answer
format); with `--answer` the 0/1 reward of each response is printed too. An exported folder carries
the prompt style and answer format in its rftlab.json (written by `rftlab export`).

Sampling uses the run's temperature, top-p, response length and generation engine unless the options
say otherwise; `--temperature 0` is greedy decoding (one response).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rftlab.config import Config
from rftlab.errors import RftlabError
from rftlab.export import CHECKPOINT_CHOICES, EXPORT_INFO, load_run_policy, run_prompt_format
from rftlab.policy import Policy, load_policy
from rftlab.rewards import extract_answer, score
from rftlab.rollout import generate
from rftlab.tasks.problem import PROMPT_SUFFIXES, Problem


@dataclass
class Target:
    """A loaded policy and how its run prompted, scored and sampled."""

    policy: Policy
    description: str  # for the header line
    prompt_style: str
    answer_format: str
    temperature: float
    top_p: float
    max_new_tokens: int
    engine: str
    config: Config | None = None  # the run's (None for an export)

    def use_prompt_style(self, style: str) -> None:
        """Prompt with another suffix; the answer format follows it as the run's config would resolve it."""
        self.prompt_style = style
        self.answer_format = (
            self.config.resolved_answer_format(style)
            if self.config is not None
            else ("boxed" if style == "math" else "gsm8k_strict")
        )


@dataclass
class Samples:
    """One question's responses: text, extracted answer, and (with a reference answer) the 0/1 reward."""

    prompt: str
    texts: list[str]
    answers: list[str | None]
    rewards: list[int] | None
    greedy: bool


def load_target(path: str | Path, *, checkpoint: str = "latest", device: str = "auto") -> Target:
    """A run directory (config.yaml + checkpoint) or an exported model folder (config.json), loaded."""
    path = Path(path)
    if not path.exists():
        raise RftlabError(f"no such run directory or exported model: {path}")
    if not (path / "config.yaml").is_file() and not (path / "config.json").is_file():
        raise RftlabError(f"{path} is neither a run directory (no config.yaml) nor an exported model (no config.json)")
    if (path / "config.yaml").is_file():
        loaded = load_run_policy(path, checkpoint=checkpoint, device=device)
        cfg = loaded.config
        style, answer_format = run_prompt_format(cfg)
        return Target(
            loaded.policy,
            f"{path} ({cfg.model.name}, checkpoint at round {loaded.round} of {cfg.train.rounds})",
            style,
            answer_format,
            cfg.rollout.temperature,
            cfg.rollout.top_p,
            cfg.rollout.max_new_tokens,
            cfg.rollout.engine,
            cfg,
        )
    info_file = path / EXPORT_INFO  # an export: how its run prompted and scored
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    policy = load_policy(str(path), device=device, use_chat_template=info.get("use_chat_template", True))
    style = info.get("prompt_style", "gsm8k")
    source = f"exported from {info['source_run']}" if "source_run" in info else "no rftlab.json: gsm8k prompts assumed"
    return Target(
        policy,
        f"{path} ({source})",
        style,
        info.get("answer_format", "gsm8k_strict"),
        info.get("temperature", 1.0),
        info.get("top_p", 1.0),
        info.get("max_new_tokens", 256),
        "hf",
    )


def sample_question(
    target: Target, question: str, *, n: int, temperature: float, max_new_tokens: int, seed: int, answer: str | None
) -> Samples:
    """`n` responses (one when `temperature` is 0: greedy) to `question`, prompted and scored as the run did."""
    problem = Problem(id="sample", question=question, answer=answer or "", source="rftlab sample")
    prompt = target.policy.prompt_text(problem, target.prompt_style)
    greedy = temperature == 0
    batch = generate(
        target.policy,
        [prompt],
        samples_per_prompt=1 if greedy else n,
        temperature=1.0 if greedy else temperature,
        top_p=target.top_p,
        max_new_tokens=max_new_tokens,
        greedy=greedy,
        seed=seed,
        engine=target.engine,
    )
    answers = [extract_answer(t, target.answer_format) for t in batch.texts]
    rewards = None if answer is None else [int(score(t, answer, target.answer_format)) for t in batch.texts]
    return Samples(prompt, list(batch.texts), answers, rewards, greedy)


def format_samples(target: Target, samples: Samples, *, temperature: float, max_new_tokens: int, seed: int) -> str:
    n = len(samples.texts)
    how = "greedy" if samples.greedy else f"temperature {temperature:g}, top-p {target.top_p:g}, seed {seed}"
    lines = [
        f"rftlab sample: {target.description}",
        f"prompt style {target.prompt_style}, answer format {target.answer_format}; {n} response(s), {how}, "
        f"up to {max_new_tokens} new tokens",
    ]
    for i, (text, got) in enumerate(zip(samples.texts, samples.answers, strict=True)):
        reward = "" if samples.rewards is None else f"  reward {samples.rewards[i]}"
        shown = got if got is not None else f"none (no {target.answer_format} answer)"
        lines += [f"--- response {i + 1}/{n}  answer: {shown}{reward}", text.rstrip()]
    if samples.rewards is not None:
        lines.append(f"=== {sum(samples.rewards)} of {n} correct")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise RftlabError(f"--n must be >= 1 (got {args.n})")
    if args.temperature is not None and args.temperature < 0:
        raise RftlabError(f"--temperature must be >= 0 (got {args.temperature})")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise RftlabError(f"--max-new-tokens must be >= 1 (got {args.max_new_tokens})")
    if not args.question.strip():
        raise RftlabError("the question is empty")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar: the output is the responses
    target = load_target(args.run, checkpoint=args.checkpoint, device=args.device)
    if args.prompt_style:
        target.use_prompt_style(args.prompt_style)
    temperature = target.temperature if args.temperature is None else args.temperature
    max_new_tokens = args.max_new_tokens or target.max_new_tokens
    samples = sample_question(
        target,
        args.question,
        n=args.n,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        seed=args.seed,
        answer=args.answer,
    )
    if args.json:
        print(json.dumps({"source": target.description, "prompt_style": target.prompt_style, **asdict(samples)}))
    else:
        if args.show_prompt:
            print(f"prompt:\n{samples.prompt}")
        print(format_samples(target, samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=args.seed))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="sample a trained run's (or an exported model's) responses to a question",
        description="Load a run's trained policy (its newest checkpoint; full or LoRA) or a folder made by "
        "`rftlab export`, prompt it with the question as the run prompted its problems, and print each "
        "response with its extracted answer (and its 0/1 reward with --answer).",
    )
    p.add_argument("run", help="run directory (config.yaml + checkpoint/) or exported model folder")
    p.add_argument("question", help='the question, e.g. "Tom has 3 apples and buys 4 more. How many?"')
    p.add_argument("--n", type=int, default=4, help="responses to sample (default 4; one when greedy)")
    p.add_argument("--temperature", type=float, help="sampling temperature, 0 = greedy (default: the run's)")
    p.add_argument("--max-new-tokens", type=int, help="response length limit (default: the run's)")
    p.add_argument("--answer", help="the reference answer: print each response's 0/1 reward")
    p.add_argument(
        "--checkpoint",
        choices=CHECKPOINT_CHOICES,
        default="latest",
        help="latest: the newest checkpoint (default); final: only one written at the run's last round",
    )
    p.add_argument(
        "--prompt-style",
        choices=sorted(PROMPT_SUFFIXES),
        help="prompt suffix (default: the run's prompt style); the answer format follows it",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--show-prompt", action="store_true", help="print the full prompt (chat template applied) first")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)
