"""Generation throughput: rollout and evaluation tokens/s, the HF baseline vs each candidate, in A/B pairs.

    OMP_NUM_THREADS=1 python benchmarks/generation.py --model tiny --pairs 3
    OMP_NUM_THREADS=1 python benchmarks/generation.py --model smollm2-135m --pairs 3 \\
        --rollout-g 4 --max-new-tokens 48 --eval-problems 8 --eval-batch 4

Workloads (both through `rftlab.rollout.generate`, the engine interface the trainer uses):
* rollout: `--rollout-examples` training candidates x `--rollout-g` samples, temperature 1, one batch.
* eval:    `--eval-problems` test problems, greedy, `--eval-batch` rows per generation batch.
Tokens/s counts generated response tokens (up to and including eos; prompt tokens are not counted,
the prefill's time is). Candidates:
* static:  `cache_implementation="static"` passed to `model.generate`.
* compile: static cache + `compile_config` (torch.compile of the forward as transformers offers it,
           forced on CPU with `_compile_all_devices`); its compile time is in the warm-up, not timed.
* bucket:  rows sorted by prompt length (`sort_by_length=True`); for rollouts also split in two
           batches, so each holds prompts of similar length (prompt-length bucketing).
* lean:    `engine="lean"` (rftlab.rollout.lean: own decoding loop, finished rows leave the batch).
* lean+bucket: both.
Each pair times the baseline and a candidate back to back on the same inputs and seed, alternating
which goes first; the ratio is baseline seconds / candidate seconds of that pair. The machine is shared
with other jobs, so absolute tokens/s move with its load (printed by `uptime` before and after): only
the ratios of interleaved pairs are meaningful. "same" says whether the candidate produced the same
tokens as the baseline in every pair.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

from rftlab.config import load_config
from rftlab.policy import load_policy
from rftlab.rollout import generate
from rftlab.trainer import load_task

CANDIDATES = {
    "static": dict(generate_kwargs={"cache_implementation": "static"}),
    "compile": dict(generate_kwargs={"cache_implementation": "static"}, compile=True),
    "bucket": dict(sort_by_length=True, buckets=2),
    "lean": dict(engine="lean"),
    "lean+bucket": dict(engine="lean", sort_by_length=True, buckets=2),
}


def with_generate_kwargs(model: torch.nn.Module, extra: dict) -> None:
    """Make `model.generate` add `extra` to every call (the static-cache and compile candidates)."""
    original = type(model).generate

    def patched(self, *args, **kwargs):
        return original(self, *args, **{**kwargs, **extra})

    model.generate = patched.__get__(model)


def run_once(policy, workload: dict, candidate: dict | None) -> tuple[float, int, torch.Tensor]:
    """Seconds, generated tokens and response ids of one call of `generate` on the workload."""
    candidate = candidate or {}
    rows = len(workload["prompts"]) * workload["samples_per_prompt"]
    batch_size = workload["batch_size"]
    if candidate.get("buckets") and batch_size is None:
        batch_size = -(-rows // candidate["buckets"])
    if "generate_kwargs" in candidate:
        extra = dict(candidate["generate_kwargs"])
        if candidate.get("compile"):
            from transformers import CompileConfig

            config = CompileConfig(dynamic=None)
            config._compile_all_devices = True
            extra["compile_config"] = config
        with_generate_kwargs(policy.model, extra)
    try:
        t0 = time.perf_counter()
        batch = generate(
            policy,
            workload["prompts"],
            samples_per_prompt=workload["samples_per_prompt"],
            temperature=1.0,
            greedy=workload["greedy"],
            max_new_tokens=workload["max_new_tokens"],
            seed=workload["seed"],
            batch_size=batch_size,
            engine=candidate.get("engine", "hf"),
            sort_by_length=candidate.get("sort_by_length", False),
        )
        seconds = time.perf_counter() - t0
    finally:
        policy.model.__dict__.pop("generate", None)
    return seconds, int(batch.response_mask.sum()), batch.response_ids


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} [{min(values):.1f}, {max(values):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, tiny-narrow or smollm2-135m")
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs per candidate (>= 3)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated subset")
    parser.add_argument("--workloads", default="rollout,eval", help="rollout, eval or both")
    parser.add_argument("--rollout-examples", type=int, default=1, help="B: training examples per rollout")
    parser.add_argument("--rollout-g", type=int, default=8, help="G: samples per example")
    parser.add_argument("--eval-problems", type=int, default=64, help="test problems (greedy)")
    parser.add_argument("--eval-batch", type=int, default=16, help="rows per evaluation generation batch")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="response budget")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("command:", f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}", " ".join(sys.argv))
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())

    cfg = load_config("smollm2-135m" if args.model == "smollm2-135m" else "tiny", [f"model.name={args.model}"])
    train, test = load_task(cfg)
    policy = load_policy(args.model)
    style = None if cfg.data.prompt_style == "auto" else cfg.data.prompt_style
    workloads = {
        "rollout": dict(
            prompts=[policy.prompt_text(p, style) for p in train[: args.rollout_examples]],
            samples_per_prompt=args.rollout_g,
            greedy=False,
            batch_size=None,
        ),
        "eval": dict(
            prompts=[policy.prompt_text(p, style) for p in test[: args.eval_problems]],
            samples_per_prompt=1,
            greedy=True,
            batch_size=args.eval_batch,
        ),
    }
    for name in args.workloads.split(","):
        workload = {**workloads[name], "max_new_tokens": args.max_new_tokens, "seed": 1234}
        rows = len(workload["prompts"]) * workload["samples_per_prompt"]
        print(
            f"\n== {name}: {args.model}, {rows} rows, max_new_tokens {args.max_new_tokens}, "
            f"{'greedy' if workload['greedy'] else 'sampled at temperature 1'}"
        )
        print(f"{'candidate':12s} {'baseline tok/s':>24s} {'candidate tok/s':>24s} {'ratio':>22s}  same  warm-up s")
        warm = run_once(policy, workload, None)[0]
        for cname in args.candidates.split(","):
            candidate = CANDIDATES[cname]
            t0 = time.perf_counter()
            run_once(policy, workload, candidate)  # warm-up (compile happens here)
            warm_up = time.perf_counter() - t0
            base_tps, cand_tps, ratios, same = [], [], [], True
            for pair in range(args.pairs):
                timed = {}
                for which in ("base", "cand") if pair % 2 == 0 else ("cand", "base"):
                    timed[which] = run_once(policy, workload, candidate if which == "cand" else None)
                (tb, nb, ib), (tc, nc, ic) = timed["base"], timed["cand"]
                base_tps.append(nb / tb)
                cand_tps.append(nc / tc)
                ratios.append(tb / tc)
                same &= ib.shape == ic.shape and bool(torch.equal(ib, ic))
            print(
                f"{cname:12s} {spread(base_tps):>24s} {spread(cand_tps):>24s} "
                f"{statistics.median(ratios):6.2f} [{min(ratios):.2f}, {max(ratios):.2f}]  "
                f"{'yes' if same else 'no ':4s}  {warm_up:.1f} (baseline {warm:.1f})"
            )
            sys.stdout.flush()
    print("\nload after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print("only the ratios of interleaved pairs are meaningful here: the machine is shared, absolute tok/s move")


if __name__ == "__main__":
    main()
