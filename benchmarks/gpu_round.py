"""Seconds per minimalist round, rollout tokens/s and peak memory per paper architecture, next to the plan.

For each of the paper's architectures (Qwen2.5-1.5B-Instruct, Llama-3.2-1B-Instruct,
OLMo-2-0425-1B-Instruct) a random-init model is built from the architecture config shipped in
`rftlab/builtin/arch/` (no hub needed) at its real size, saved with the `tiny` tokenizer (random
weights emit ids beyond it; decoding skips them, and they rarely hit eos, so every response runs to
the full budget), and trained for a few rounds of the GPU recipe (`configs/gpu/<model>-gsm8k.yaml`)
through `rftlab.trainer.train`: the same code path as a real run. Reported per model: seconds per
round, rollout tokens/s (generated tokens / rollout seconds), update seconds, peak memory
(torch.cuda.max_memory_allocated on CUDA; the process's peak RSS on CPU) and the plan's peak.

    python benchmarks/gpu_round.py --device cuda --out gpu_round.md          # real sizes, 1024 tokens
    python benchmarks/gpu_round.py --device cpu --tiny --out /tmp/gpu_round.md   # same code, tiny models

`--tiny` shrinks every architecture to 2 layers of width 64 (vocabulary kept) and the responses to
16 tokens, so a CPU test keeps this script from rotting.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHS = {
    "qwen2.5-1.5b-instruct": "configs/gpu/qwen2.5-1.5b-instruct-gsm8k.yaml",
    "llama-3.2-1b-instruct": "configs/gpu/llama-3.2-1b-instruct-gsm8k.yaml",
    "olmo-2-0425-1b-instruct": "configs/gpu/olmo-2-0425-1b-instruct-gsm8k.yaml",
}


def arch_config(name: str, tiny: bool):
    """The transformers config of a shipped architecture; `tiny` keeps its family and vocabulary only."""
    from transformers import AutoConfig

    from rftlab.plan import ARCH_DIR

    data = json.loads((ARCH_DIR / f"{name}.json").read_text())
    data.pop("_name_or_path", None)
    if tiny:
        ratio = data["num_attention_heads"] // data.get("num_key_value_heads", data["num_attention_heads"])
        data.update(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=max(1, 4 // ratio),
            head_dim=16,
            max_position_embeddings=4096,
        )
        data.pop("rope_scaling", None)
    tokenizer_eos = 0  # the tiny tokenizer's eos
    data.update(eos_token_id=tokenizer_eos, pad_token_id=1, bos_token_id=None)
    return AutoConfig.for_model(data.pop("model_type"), **data)


def build_random_model(name: str, directory: Path, *, tiny: bool, device: str) -> Path:
    """A random-init model of the architecture with the tiny tokenizer, saved to `directory` (bf16 on disk)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rftlab.policy import BUILTIN_DIR

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(arch_config(name, tiny))
    model.to(torch.bfloat16).save_pretrained(directory)
    del model
    AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny").save_pretrained(directory)
    return directory


def peak_memory(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_one(name: str, args, tmp: Path) -> dict:
    import torch

    from rftlab.config import load_config
    from rftlab.plan import plan_for_config
    from rftlab.trainer import train

    t0 = time.perf_counter()
    model_dir = build_random_model(name, tmp / name, tiny=args.tiny, device=args.device)
    build_s = time.perf_counter() - t0
    overrides = [
        f"model.name={model_dir}",
        f"model.device={args.device}",
        f"train.rounds={args.rounds}",
        f"rollout.max_new_tokens={args.response_tokens}",
        "data.difficulty=any",
        "data.test_size=4",
        "eval.train_samples=2",
        "eval.every=0",
        "eval.batch_size=4",
        "run.progress=false",
        "run.log_rollouts=false",
        "run.checkpoint_every=0",
    ]
    if args.device == "cpu":
        overrides.append("run.threads=1")
    cfg = load_config(str(REPO / ARCHS[name]), overrides)
    _, plan = plan_for_config(cfg, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    out = tmp / f"{name}-run"
    summary = train(cfg, out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in rows if r.get("split") == "train_round"]
    peak = peak_memory(args.device)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    rollout_s = sum(r["time/rollout_s"] for r in rounds)
    return {
        "model": name,
        "params": plan.params_total,
        "seconds_per_round": sum(r["time/round_s"] for r in rounds) / len(rounds),
        "rollout_tokens_per_s": sum(r["tokens/round"] for r in rounds) / max(rollout_s, 1e-9),
        "update_s": sum(r["time/update_s"] for r in rounds) / len(rounds),
        "response_tokens": sum(r["tokens/round"] for r in rounds) / len(rounds),
        "peak_bytes": peak,
        "plan_bytes": plan.peak_bytes,
        "plan_phase": plan.peak_phase,
        "build_s": build_s,
        "wall_s": summary["wall_seconds"],
    }


def markdown(results: list[dict], args) -> str:
    import torch

    where = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    measure = (
        "torch.cuda.max_memory_allocated"
        if args.device.startswith("cuda")
        else "peak RSS of the process so far (all models run in one process)"
    )
    lines = [
        f"Device: {where}; {args.rounds} rounds of the GSM8K recipe per model, responses up to "
        f"{args.response_tokens} tokens{' (tiny models)' if args.tiny else ''}; peak = {measure}.",
        "",
        "| model | parameters | s/round | rollout tokens/s | update s | response tokens | peak memory | plan peak (phase) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['seconds_per_round']:.2f} | {r['rollout_tokens_per_s']:.1f} | "
            f"{r['update_s']:.2f} | {r['response_tokens']:.0f} | {r['peak_bytes'] / 2**30:.2f} GiB | "
            f"{r['plan_bytes'] / 2**30:.2f} GiB ({r['plan_phase']}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda or cpu")
    ap.add_argument("--tiny", action="store_true", help="2-layer width-64 models and 16-token responses")
    ap.add_argument("--models", nargs="*", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--response-tokens", type=int, default=None, help="default 1024 (16 with --tiny)")
    ap.add_argument("--out", help="write the markdown table here")
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args(argv)
    args.response_tokens = args.response_tokens or (16 if args.tiny else 1024)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_round: no CUDA device; use --device cpu --tiny", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            results.append(bench_one(name, args, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    table = markdown(results, args)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
