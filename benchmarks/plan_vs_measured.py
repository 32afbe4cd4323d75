"""The memory plan against measured peak memory on CPU: short `rftlab run` processes, one at a time.

For each case, `rftlab run ... train.rounds=2` runs under `/usr/bin/time -v` (peak resident set
size of the process) and `rftlab plan` is computed for exactly the same config and overrides; the
table gives both and the relative error (plan - measured) / measured.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/plan_vs_measured.py --record /tmp/pvm.jsonl --out /tmp/pvm.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/plan_vs_measured.py --replan /tmp/pvm.jsonl
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/plan_vs_measured.py --baseline-only

`--record` appends every measurement (case, overrides, peak RSS, load) to a JSON-lines file, and
`--replan` recomputes the plans for recorded measurements without running anything, so a change to
the plan is checked against the same runs. Cases: the built-in `tiny`; `smollm2-135m` (converted once
into $RFTLAB_CACHE/models/ by a separate process first, so the conversion's own memory is not in the
measurement) and a random-init Qwen2 of ~113M parameters built from a transformers config with
SmolLM2's tokenizer (vocabulary 49,152), each in float32, bf16 compute over float32 master weights,
LoRA r = 8 with bf16 compute, gradient checkpointing with log-prob chunks of 64 (float32), and KL on
(a bf16 reference copy). The training example is pinned (`data.train_example_ids`, the first
candidate of the pool), so the plan sees the prompt the run actually trains on; its default (the
longest candidate) is conservative. Random weights generate until max_new_tokens, so every sequence
is full length. Each case stays near 3 GiB (the largest, KL on smollm2-135m, 3.3 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RFTLAB = [sys.executable, "-m", "rftlab.cli"]
COMMON = ["run.threads=1", "run.progress=false", "run.log_rollouts=false", "train.rounds=2", "eval.every=0"]

SMOLLM2 = [
    "data.test_size=8",
    "eval.train_samples=4",
    "rollout.rollouts_per_round=1",
    "rollout.max_new_tokens=128",
]
QWEN2 = [
    "data.test_size=8",
    "eval.train_samples=4",
    "rollout.rollouts_per_round=2",
    "rollout.max_new_tokens=128",
]
BF16 = ["model.dtype=bfloat16"]  # compute; model.master_dtype stays float32
LORA = ["model.dtype=bfloat16", "model.lora_rank=8"]
CHECKPOINTED = ["model.gradient_checkpointing=true", "train.logprob_chunk_tokens=64"]  # float32
KL = ["model.dtype=bfloat16", "objective.kl_coef=0.001"]  # the reference copy in bfloat16

CASES = {
    # name: (config, overrides); "qwen2-random" cases get model.name= the random-init Qwen2 directory
    "tiny": ("tiny", ["data.test_size=16", "eval.train_samples=4", "rollout.rollouts_per_round=4"]),
    "smollm2-135m": ("smollm2-135m", SMOLLM2),
    "qwen2-random-113m": ("smollm2-135m", QWEN2),
    # the merged precision / LoRA / memory options, one case each
    "smollm2-135m-bf16": ("smollm2-135m", SMOLLM2 + BF16),
    "smollm2-135m-lora8-bf16": ("smollm2-135m", SMOLLM2 + LORA),
    "smollm2-135m-ckpt-chunk64": ("smollm2-135m", SMOLLM2 + CHECKPOINTED),
    "smollm2-135m-kl-bf16": ("smollm2-135m", SMOLLM2 + KL),
    "qwen2-random-113m-bf16": ("smollm2-135m", QWEN2 + BF16),
    "qwen2-random-113m-lora8-bf16": ("smollm2-135m", QWEN2 + LORA),
    "qwen2-random-113m-ckpt-chunk64": ("smollm2-135m", QWEN2 + CHECKPOINTED),
    "qwen2-random-113m-kl-bf16": ("smollm2-135m", QWEN2 + KL),
}


def rss_of(cmd: list[str], env: dict) -> tuple[int, float, str]:
    """(peak RSS bytes, seconds, tail of output) of a command run under /usr/bin/time -v."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return kib * 1024, seconds, proc.stdout[-500:]


def random_qwen2(directory: Path) -> Path:
    """A random-init Qwen2 (~113M parameters) with SmolLM2's tokenizer, saved to `directory`."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from rftlab.policy import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def first_candidate(config: str, overrides: list[str]) -> str:
    """The id `data.difficulty=any` would train on; pinned so the plan sees the actual training prompt."""
    from rftlab.config import load_config
    from rftlab.selection import candidate_pool
    from rftlab.trainer import load_task

    cfg = load_config(config, overrides)
    return candidate_pool(load_task(cfg)[0], cfg.data.difficulty_pool, cfg.data.selection_seed)[0].id


BASELINE = """
import resource
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
import rftlab.trainer, rftlab.cli
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot
from rftlab.rewards import score
score("#### 3", "3", "gsm8k_strict"); score("\\\\boxed{3}", "3", "boxed")
from rftlab.config import load_config
from rftlab.trainer import load_task
load_task(load_config("smollm2-135m"))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def plan_row(name: str, config: str, overrides: list[str], measured: int, seconds: float) -> dict:
    """The plan of exactly the measured config, next to the measured peak RSS."""
    from rftlab.config import load_config
    from rftlab.plan import plan_for_config

    text, plan = plan_for_config(load_config(config, overrides), device="cpu")
    err = (plan.peak_bytes - measured) / measured
    print(text, flush=True)
    print(
        f"== {name}: plan {plan.peak_bytes / 2**20:.0f} MiB ({plan.peak_phase}), measured "
        f"{measured / 2**20:.0f} MiB, error {err:+.1%}, {seconds:.0f} s",
        flush=True,
    )
    return {
        "name": name,
        "params": plan.params_total,
        "phase": plan.peak_phase,
        "plan": plan.peak_bytes,
        "measured": measured,
        "error": err,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--baseline-only", action="store_true", help="only the idle-process RSS the plan assumes")
    ap.add_argument("--out", help="write the markdown table here too")
    ap.add_argument("--record", help="append each measurement (case, overrides, peak RSS) to this JSON-lines file")
    ap.add_argument("--replan", help="no runs: recompute the plans for the measurements recorded in this file")
    ap.add_argument("--work", help="folder for the run directories and the random Qwen2 (default: a temp dir)")
    args = ap.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.replan:
            for line in Path(args.replan).read_text().splitlines():
                r = json.loads(line)
                overrides = r["overrides"]
                if r["name"].startswith("qwen2-random"):  # the architecture is all the plan reads
                    qwen = Path(next(o for o in overrides if o.startswith("model.name=")).split("=", 1)[1])
                    if not (qwen / "config.json").is_file():
                        random_qwen2(qwen)
                rows.append(plan_row(r["name"], r["config"], overrides, r["measured"], r["seconds"]))
        else:
            baseline, _, _ = rss_of([sys.executable, "-c", BASELINE], env)
            print(f"idle process (imports + GSM8K loaded): {baseline / 2**20:.0f} MiB")
            with_peft, _, _ = rss_of([sys.executable, "-c", "import peft.tuners.lora\n" + BASELINE], env)
            print(f"the same with peft imported (LoRA): + {(with_peft - baseline) / 2**20:.0f} MiB")
            if args.baseline_only:
                return 0
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from rftlab.policy import resolve_model_path as r; r('smollm2-135m')",
                ],
                env=env,
                check=True,
            )  # convert once, outside the measurement
            for name in args.cases:
                config, overrides = CASES[name]
                overrides = [*COMMON, *overrides]
                if name.startswith("qwen2-random"):
                    qwen = work / "qwen2-random-113m"
                    if not (qwen / "config.json").is_file():
                        random_qwen2(qwen)
                    overrides.append(f"model.name={qwen}")
                overrides.append(f"data.train_example_ids=[{first_candidate(config, overrides)}]")
                run_dir = work / "runs" / name
                shutil.rmtree(run_dir, ignore_errors=True)
                print(f"load before {name}: {os.getloadavg()[0]:.1f}", flush=True)
                measured, seconds, _ = rss_of([*RFTLAB, "run", config, *overrides, "--out", str(run_dir)], env)
                if args.record:
                    with open(args.record, "a") as f:
                        f.write(
                            json.dumps(
                                {
                                    "name": name,
                                    "config": config,
                                    "overrides": overrides,
                                    "measured": measured,
                                    "seconds": seconds,
                                    "load": os.getloadavg()[0],
                                }
                            )
                            + "\n"
                        )
                rows.append(plan_row(name, config, overrides, measured, seconds))
    table = [
        "| case | parameters | plan peak (phase) | measured peak RSS | error |",
        "|---|---|---|---|---|",
    ] + [
        f"| {r['name']} | {r['params']:,} | {r['plan'] / 2**20:.0f} MiB ({r['phase']}) | "
        f"{r['measured'] / 2**20:.0f} MiB | {r['error']:+.1%} |"
        for r in rows
    ]
    print("\n".join(table))
    if args.out:
        Path(args.out).write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
