"""The loss's log-prob forward + backward: every position's logits vs `logits_to_keep`, the shared log-softmax,
and the prompt run once per distinct prompt with the responses packed (`train.shared_prompt`).

    OMP_NUM_THREADS=1 python benchmarks/logprob_update.py --model smollm2-135m --pairs 5
    OMP_NUM_THREADS=1 python benchmarks/logprob_update.py --model tiny --g 8 --max-new-tokens 160 \
        --baseline keep+shared --candidates prompt-once

One real rollout batch (G samples of a training prompt, up to --max-new-tokens tokens) is made once; each
timing is the update's forward and backward of sum(logp * mask) with the entropy (as the first update of
a round computes it), in float32 on one thread. Variants:
* full:        the computation before this change: logits at every prompt and response position, the
               response ones kept, log p = z_token - logsumexp(z), the entropy from a second log_softmax
* keep:        the head on the response positions only (`logits_to_keep`), the same math as `full`
* keep+shared: `rftlab.policy.response_logp` per row (`shared_prompt=False`): `logits_to_keep` and one
               log_softmax for log p and the entropy
* prompt-once: `rftlab.policy.response_logp(shared_prompt=True)` (the default since): each distinct prompt
               once, its rows' responses packed on its KV cache without padding
Each pair times the baseline (`--baseline`, default `full`) and a candidate back to back, alternating which
goes first; the ratio is the baseline's seconds over the candidate's. Both wall-clock and CPU seconds of this (single) thread are taken: on a
loaded machine the wall clock mostly measures waiting for a core, while the thread's CPU time counts
only its own work (cache and memory-bandwidth contention still reach it), so the CPU ratio is the one
to read when the load is high. The load is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from rftlab.config import load_config
from rftlab.objectives import entropy_from_logits
from rftlab.policy import load_policy, response_logp
from rftlab.rollout import generate
from rftlab.trainer import load_task


def full_positions(policy, prompt_ids, prompt_mask, response_ids, response_mask, *, keep: bool):
    """The earlier math (token - logsumexp, a separate entropy log_softmax), over all or response-only logits."""
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention = torch.cat([prompt_mask, response_mask], dim=1)
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    t = response_ids.shape[1]
    extra = {"logits_to_keep": t + 1} if keep else {}
    logits = policy.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, **extra).logits
    logits = logits[:, -t - 1 : -1]
    z = logits.float()
    logp = z.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)
    with torch.no_grad():
        entropy = entropy_from_logits(logits)
    return logp, entropy


VARIANTS = {
    "full": lambda policy, *a: full_positions(policy, *a, keep=False),
    "keep": lambda policy, *a: full_positions(policy, *a, keep=True),
    "keep+shared": lambda policy, *a: response_logp(policy, *a, with_entropy=True, shared_prompt=False),
    "prompt-once": lambda policy, *a: response_logp(policy, *a, with_entropy=True, shared_prompt=True),
}


def time_update(policy, args, variant: str) -> tuple[float, float]:
    """(wall seconds, this thread's CPU seconds) of one forward + backward."""
    policy.model.zero_grad(set_to_none=True)
    t0, c0 = time.perf_counter(), time.thread_time()
    logp, _ = VARIANTS[variant](policy, *args)
    (logp * args[3]).sum().backward()
    return time.perf_counter() - t0, time.thread_time() - c0


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} [{min(values):.2f}, {max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="tiny, tiny-narrow or smollm2-135m")
    parser.add_argument("--pairs", type=int, default=5, help="A/B pairs per candidate (>= 3)")
    parser.add_argument("--g", type=int, default=4, help="samples of the prompt (rows of the update)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="response budget")
    parser.add_argument("--baseline", default="full", choices=sorted(VARIANTS), help="the A of each pair")
    parser.add_argument(
        "--candidates", default="keep,keep+shared", help=f"comma-separated B's of the pairs, of {', '.join(VARIANTS)}"
    )
    args = parser.parse_args()
    candidates = [c for c in args.candidates.split(",") if c]
    if unknown := [c for c in candidates if c not in VARIANTS or c == args.baseline]:
        parser.error(f"--candidates: {unknown[0]!r} is not a variant other than the baseline ({', '.join(VARIANTS)})")
    torch.set_num_threads(1)
    print("command:", f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}", " ".join(sys.argv))
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    cfg = load_config("smollm2-135m" if args.model == "smollm2-135m" else "tiny", [f"model.name={args.model}"])
    train, _ = load_task(cfg)
    policy = load_policy(args.model, device="cpu")
    batch = generate(
        policy, [policy.prompt_text(train[0])], samples_per_prompt=args.g, max_new_tokens=args.max_new_tokens, seed=0
    )
    rows = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    n, p = batch.prompt_ids.shape
    print(
        f"{args.model}: {n} rows, prompt {p} tokens, response {batch.response_ids.shape[1]} tokens "
        f"({int(batch.response_mask.sum())} real), vocabulary {policy.model.config.vocab_size}"
    )
    policy.model.train()
    for variant in VARIANTS:
        time_update(policy, rows, variant)  # warm-up
    base_name = args.baseline
    print(f"{'candidate':12s} {'clock':5s} {base_name + ' s':>20s} {'candidate s':>20s} {'speed-up':>20s}")
    for candidate in candidates:
        timed = {base_name: [], candidate: []}
        for pair in range(args.pairs):
            for variant in (base_name, candidate) if pair % 2 == 0 else (candidate, base_name):
                timed[variant].append(time_update(policy, rows, variant))
        for clock, i in (("wall", 0), ("cpu", 1)):
            base, cand = [t[i] for t in timed[base_name]], [t[i] for t in timed[candidate]]
            ratios = [b / c for b, c in zip(base, cand, strict=True)]
            print(
                f"{candidate:12s} {clock:5s} {spread(base):>20s} {spread(cand):>20s} {spread(ratios):>20s}", flush=True
            )
    print("load after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
