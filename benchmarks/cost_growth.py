"""How the cost of a round grows: seconds per round vs G, response budget, examples per round and model
size; rollout and evaluation tokens/s and model-FLOPs utilisation (MFU) against a measured matmul peak.

    OMP_NUM_THREADS=1 python benchmarks/cost_growth.py                       # every sweep (~30 min shared)
    OMP_NUM_THREADS=1 python benchmarks/cost_growth.py --sweeps g,eval --models tiny
    OMP_NUM_THREADS=1 python benchmarks/cost_growth.py --quick               # smoke run: 1 round, G = 1

Everything runs at 1 thread (`run.threads=1`) in this process, one setting after another.

Peak: the best of `--peak-reps` fp32 matmuls of two `--peak-n` x `--peak-n` matrices at 1 thread,
2 n^3 FLOPs each, measured before and after the sweeps (the better counts: on a shared machine a
matmul that lost its core reads low): what this core reaches, the denominator of every MFU here.

Rounds: `rftlab.trainer.train` on the `tiny` main-job config (advantage none, lr 3e-5, 1 thread) with one
setting changed, `data.difficulty=any` (no Pass@1 estimate of candidates), evaluations shrunk to 1 test
problem and 1 training sample (they are not timed: seconds per round are the trainer's own
`time/round_s`, `time/rollout_s`, `time/update_s` from metrics.jsonl). The first round is a warm-up: the
table gives the median of rounds 2..`--rounds`. Sweeps (one variable each, the rest at the default
G = 8, 160 new tokens, 1 example per round, `tiny`):
  g:        G = 1, 2, 4, 8, 16
  length:   max_new_tokens = 8, 16, 32, 64, 128 (tiny, context 256, stops at its eos after ~24 tokens:
            the table shows the tokens it made)
  examples: examples per round B = 1, 2, 4, 8 (G = 4)
  model:    tiny, tiny-narrow, smollm2-135m (G = 4)

FLOPs are counted as 2 x parameters per token for a forward pass and 3x that (6 x parameters) for
forward + backward, over prompt + response tokens (prefill included, padding not counted), with the
parameters counted once (the tied output head is the input embedding: counted once, as a matmul) and
attention's sequence-length terms left out (small at these lengths). A round's rollout is one forward
per token; its update is one forward + backward over each prompt + response (the minimalist
configuration: no KL reference pass, mu = 1, old log-probs are the first update's detached).

Evaluation (`--sweeps eval`): greedy generation over `--eval-problems` test problems in one batch of
up to `--eval-batch` rows, as the trainer's evaluation does, timed end to end, with its MFU; the
"executed" column counts every position the batch computed (finished and padded rows included),
and prefill is timed on its own (one forward over the prompts) so the decode steps' share is known.

The machine is shared: `uptime` is printed before and after; wall seconds move with the load. So
MFU divides FLOPs by CPU seconds, not wall seconds: the peak is the best matmul's thread CPU time,
an evaluation's time is its process CPU time, and a round's wall seconds are multiplied by the run's
CPU share (process CPU seconds / wall seconds over the whole `train` call, "CPU share" below); time
a preempted process spends waiting for its core is thus left out (cache contention is not).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BASE = [
    "run.threads=1",
    "data.difficulty=any",
    "data.test_size=1",
    "eval.train_samples=1",
    "eval.test_mode=greedy",
    "eval.pass_k=[1]",
    "eval.every=0",
    "run.checkpoint_every=0",
    "run.log_rollouts=false",
    "run.progress=false",
    "rollout.rollouts_per_round=8",
]
SWEEPS = {
    "g": [(f"G={g}", [f"rollout.rollouts_per_round={g}"]) for g in (1, 2, 4, 8, 16)],
    "length": [(f"max_new_tokens={n}", [f"rollout.max_new_tokens={n}"]) for n in (8, 16, 32, 64, 128)],
    "examples": [
        (f"B={b}", [f"train.examples_per_round={b}", f"data.train_examples={b}", "rollout.rollouts_per_round=4"])
        for b in (1, 2, 4, 8)
    ],
    "model": [
        (m, [f"model.name={m}", "rollout.rollouts_per_round=4"]) for m in ("tiny", "tiny-narrow", "smollm2-135m")
    ],
}


def matmul_peak(n: int = 1024, reps: int = 5) -> float:
    """GFLOP/s of the best of `reps` fp32 n x n matmuls at 1 thread (2 n^3 FLOPs each), in CPU time."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        best = min(_cpu_timed(lambda: a @ b) for _ in range(reps))
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / best / 1e9


def _cpu_timed(fn) -> float:
    """CPU seconds of this thread (at 1 thread torch computes here): time spent preempted is left out."""
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied head is one Parameter: counted once


def round_cost(overrides: list[str], rounds: int) -> dict:
    """Run `rounds` training rounds of the tiny main-job config with `overrides`; per-round medians."""
    from rftlab.config import load_config
    from rftlab.policy import load_policy
    from rftlab.trainer import load_task, train

    cfg = load_config("tiny", [*BASE, f"train.rounds={rounds}", *overrides])
    with tempfile.TemporaryDirectory() as out:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        train(cfg, out)
        cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("split") == "train_round"]
    timed = rows[1:] or rows  # round 1 is a warm-up
    # prompt tokens: the example(s) of each round through the policy's tokenizer and chat template
    policy = load_policy(cfg.model.name)
    train_split, _ = load_task(cfg)
    by_id = {p.id: p for p in train_split}
    style = None if cfg.data.prompt_style == "auto" else cfg.data.prompt_style
    params = n_params(policy.model)
    g = cfg.rollout.rollouts_per_round
    flops_rollout, flops_update = [], []
    for r in timed:
        prompt = sum(len(policy.tokenizer(policy.prompt_text(by_id[i], style))["input_ids"]) for i in r["example_ids"])
        tokens = g * prompt + r["tokens/round"]  # every row's prompt + its response
        flops_rollout.append(2 * params * tokens)
        flops_update.append(6 * params * tokens)
    med = statistics.median
    round_s, rollout_s, update_s = (
        med(r[k] for r in timed) for k in ("time/round_s", "time/rollout_s", "time/update_s")
    )
    flops = med(a + b for a, b in zip(flops_rollout, flops_update, strict=True))
    return {
        "params": params,
        "rounds_timed": len(timed),
        "cpu_share": cpu_share,  # CPU seconds per wall second over the run: < 1 when others share the core
        "round_s": round_s,
        "rollout_s": rollout_s,
        "update_s": update_s,
        "response_tokens": med(r["tokens/round"] for r in timed),
        "rollout_tok_s": med(r["tokens/round"] / r["time/rollout_s"] for r in timed),
        # achieved GFLOP/s per CPU second (wall seconds x the run's CPU share); MFU = these over the peak
        "gflops_rollout": med(f / r["time/rollout_s"] for f, r in zip(flops_rollout, timed, strict=True))
        / cpu_share
        / 1e9,
        "gflops_update": med(f / r["time/update_s"] for f, r in zip(flops_update, timed, strict=True))
        / cpu_share
        / 1e9,
        "gflops_round": flops / round_s / cpu_share / 1e9,
    }


def eval_cost(model: str, problems: int, batch: int, max_new_tokens: int) -> dict:
    """Greedy evaluation throughput on `problems` test problems, and its MFU (useful and executed)."""
    from rftlab.config import load_config
    from rftlab.policy import load_policy
    from rftlab.rollout import generate
    from rftlab.trainer import load_task

    torch.set_num_threads(1)
    name = "smollm2-135m" if model == "smollm2-135m" else "tiny"
    cfg = load_config(name, [f"model.name={model}", f"data.test_size={problems}", "data.difficulty=any"])
    _, test = load_task(cfg)
    policy = load_policy(model)
    style = None if cfg.data.prompt_style == "auto" else cfg.data.prompt_style
    prompts = [policy.prompt_text(p, style) for p in test[:problems]]
    params = n_params(policy.model)

    def run():
        return generate(
            policy, prompts, samples_per_prompt=1, temperature=1.0, greedy=True,
            max_new_tokens=max_new_tokens, seed=0, batch_size=batch,
        )  # fmt: skip

    generate(policy, prompts[:1], samples_per_prompt=1, temperature=1.0, greedy=True, max_new_tokens=4, seed=0)
    t0, cpu0 = time.perf_counter(), time.process_time()
    out = run()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    prompt_tokens = int(out.prompt_mask.sum())
    response_tokens = int(out.response_mask.sum())
    useful = 2 * params * (prompt_tokens + response_tokens)
    # executed: every row of every batch runs every step until the batch's longest row ends
    executed = 2 * params * (out.prompt_mask.numel() + _executed_decode_positions(out, batch))
    # prefill alone: one forward over the left-padded prompts, batch by batch
    cpu1 = time.process_time()
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            ids, mask = out.prompt_ids[i : i + batch], out.prompt_mask[i : i + batch]
            policy.model(input_ids=ids, attention_mask=mask, use_cache=True)
    prefill_s = time.process_time() - cpu1  # CPU seconds, as `cpu`
    steps = int(out.response_ids.shape[1])
    return {
        "params": params,
        "rows": len(prompts),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "prompt_tokens": prompt_tokens,
        "response_tokens": response_tokens,
        "tok_s": response_tokens / cpu,  # per CPU second
        "gflops": useful / cpu / 1e9,  # per CPU second: preemption by other processes left out
        "gflops_executed": executed / cpu / 1e9,
        "prefill_s": prefill_s,
        "decode_s": cpu - prefill_s,
        "decode_steps": steps,
        "ms_per_step": 1000 * (cpu - prefill_s) / max(1, steps),
        "gflops_prefill": 2 * params * out.prompt_mask.numel() / prefill_s / 1e9,
    }


def _executed_decode_positions(out, batch: int) -> int:
    lengths = out.response_mask.sum(-1)
    total = 0
    for i in range(0, len(lengths), batch):
        chunk = lengths[i : i + batch]
        total += int(chunk.max()) * len(chunk)
    return total


def add_mfu(row: dict, peak: float) -> None:
    """MFU = achieved GFLOP/s over the peak, for every gflops* entry of a result row."""
    for key in [k for k in row if k.startswith("gflops")]:
        row["mfu" + key[len("gflops") :]] = row[key] / peak


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [s for s in ("g", "length", "examples", "model") if results.get(s)]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4 * len(sweeps), 3.4), squeeze=False)
    xlabels = {"g": "G (rollouts per round)", "length": "response tokens per round", "examples": "B (examples per round)",
               "model": "model (parameters)"}  # fmt: skip
    for ax, s in zip(axes[0], sweeps, strict=True):
        rows = results[s]
        if s == "length":
            x = [r["response_tokens"] for r in rows]
        elif s == "model":
            x = list(range(len(rows)))
            ax.set_xticks(x, [f"{r['setting']}\n{r['params'] / 1e6:.2f}M" for r in rows], fontsize=8)
            ax.set_yscale("log")
        else:
            x = [int(r["setting"].split("=")[1]) for r in rows]
            ax.set_xscale("log", base=2)
        for key, label in (("round_s", "round"), ("rollout_s", "rollout"), ("update_s", "update")):
            ax.plot(x, [r[key] for r in rows], marker="o", label=label)
        ax.set_xlabel(xlabels[s])
        ax.set_ylabel("seconds")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle("seconds per round, 1 thread (medians; shared 2-core machine)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def table(rows: list[dict], first: str) -> str:
    head = f"| {first} | s/round | rollout s | update s | response tokens | rollout tok/s | MFU rollout | MFU update | MFU round |"
    lines = [head, "|---" * 9 + "|"]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['round_s']:.3f} | {r['rollout_s']:.3f} | {r['update_s']:.3f} | "
            f"{r['response_tokens']:.0f} | {r['rollout_tok_s']:.0f} | {100 * r['mfu_rollout']:.1f}% | "
            f"{100 * r['mfu_update']:.1f}% | {100 * r['mfu_round']:.1f}% |"
        )
    return "\n".join(lines)


def eval_table(rows: list[dict]) -> str:
    lines = [
        "| model | params | rows | prompt + response tokens | wall s | CPU s | tok/CPU s | MFU | MFU executed | "
        "prefill CPU s (MFU) | decode CPU ms/step |",
        "|---" * 11 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['params'] / 1e6:.2f}M | {r['rows']} | {r['prompt_tokens']} + {r['response_tokens']} | "
            f"{r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['tok_s']:.0f} | {100 * r['mfu']:.1f}% | {100 * r['mfu_executed']:.1f}% | "
            f"{r['prefill_s']:.2f} ({100 * r['mfu_prefill']:.0f}%) | {r['ms_per_step']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sweeps", default="g,length,examples,model,eval", help="comma-separated: " + ",".join([*SWEEPS, "eval"])
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting (the first is a warm-up)")
    parser.add_argument("--models", default="tiny,tiny-narrow,smollm2-135m", help="models of the model and eval sweeps")
    parser.add_argument("--eval-problems", type=int, default=32, help="test problems in the evaluation measurement")
    parser.add_argument("--eval-problems-large", type=int, default=16, help="the same for smollm2-135m")
    parser.add_argument(
        "--eval-batch", type=int, default=64, help="rows per evaluation batch (the eval.batch_size default)"
    )
    parser.add_argument("--eval-max-new-tokens", type=int, default=160, help="response budget of the evaluation")
    parser.add_argument("--peak-n", type=int, default=1024, help="matrix size of the peak measurement")
    parser.add_argument("--peak-reps", type=int, default=30, help="matmuls of the peak measurement (the best counts)")
    parser.add_argument("--json", help="write every result to this file")
    parser.add_argument("--plot", help="write the seconds-per-round plot (png) here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny, G = 1, 1 round, small peak and eval")
    args = parser.parse_args(argv)
    sweeps = [s for s in args.sweeps.split(",") if s]
    unknown = [s for s in sweeps if s not in SWEEPS and s != "eval"]
    if unknown:
        parser.error(f"unknown sweep(s): {', '.join(unknown)} (choose from {', '.join([*SWEEPS, 'eval'])})")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    models = [m for m in args.models.split(",") if m]
    settings = {s: list(SWEEPS[s]) for s in sweeps if s != "eval"}
    if "model" in settings:
        settings["model"] = [(m, o) for m, o in settings["model"] if m in models]
    if args.quick:
        args.rounds, args.peak_n, args.peak_reps, args.eval_problems, args.eval_max_new_tokens = 1, 256, 2, 2, 8
        models = ["tiny"]
        settings = (
            {"g": [("G=1", ["rollout.rollouts_per_round=1", "rollout.max_new_tokens=8"])]} if "g" in sweeps else {}
        )

    print(f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python benchmarks/cost_growth.py "
          + " ".join(sys.argv[1:] if argv is None else argv))  # fmt: skip
    print(f"load before: {uptime()}", flush=True)
    peak = matmul_peak(args.peak_n, args.peak_reps)
    print(
        f"peak before: {peak:.1f} GFLOP/s (fp32 {args.peak_n}x{args.peak_n} matmul, 1 thread, best of {args.peak_reps})"
    )
    results: dict = {}
    for sweep, items in settings.items():
        results[sweep] = []
        for label, overrides in items:
            r = {"setting": label, **round_cost(overrides, args.rounds)}
            results[sweep].append(r)
            if args.json:  # as it goes: a long run cut short keeps what it measured
                Path(args.json).write_text(json.dumps(results, indent=1))
            print(f"  {sweep:8s} {label:18s} {r['round_s']:.3f} s/round  (rollout {r['rollout_s']:.3f}, update "
                  f"{r['update_s']:.3f}, {r['response_tokens']:.0f} tokens, {r['gflops_round']:.2f} GFLOP/s)", flush=True)  # fmt: skip
    if "eval" in sweeps:
        results["eval"] = []
        for m in models:
            problems = args.eval_problems_large if m == "smollm2-135m" and not args.quick else args.eval_problems
            r = {"setting": m, **eval_cost(m, problems, args.eval_batch, args.eval_max_new_tokens)}
            results["eval"].append(r)
            print(f"  eval     {m:18s} {r['tok_s']:.0f} tok/s, {r['gflops']:.2f} GFLOP/s "
                  f"(executed {r['gflops_executed']:.2f})", flush=True)  # fmt: skip
    # the peak again, and the better of the two: on a shared machine a single measurement reads low
    peak_after = matmul_peak(args.peak_n, args.peak_reps)
    peak = max(peak, peak_after)
    print(f"peak after: {peak_after:.1f} GFLOP/s; MFU below is against {peak:.1f} GFLOP/s")
    results["peak_gflops"] = peak
    for rows in results.values():
        for row in rows if isinstance(rows, list) else []:
            add_mfu(row, peak)
    print(f"load after: {uptime()}")
    names = {"g": "G", "length": "max_new_tokens", "examples": "B", "model": "model"}
    for sweep in settings:
        print(f"\n### {names[sweep]}\n\n" + table(results[sweep], names[sweep]))
    if results.get("eval"):
        print("\n### evaluation (greedy)\n\n" + eval_table(results["eval"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.plot and any(results.get(s) for s in SWEEPS):
        plot(results, Path(args.plot))
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
