"""Where a decode step's time goes, against what this core can stream: is generation bandwidth-bound?

    OMP_NUM_THREADS=1 python benchmarks/decode_profile.py --model smollm2-135m --rows 4

Prints (1 thread): this core's streaming bandwidth (the best of 5 `x.sum()` and `y.copy_(x)` over
256 MiB), the median time of a decode step of `--rows` rows after a `--prompt`-token prefill (the
lean loop's call: one token per row on the KV cache, `logits_to_keep=1`, inference mode), the rate
at which that step reads the model's weights, and `torch.profiler`'s table of the step's ops by self
CPU time. A step whose weight rate is far below the streaming rate is not bound by memory bandwidth.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch


def stream_bandwidth() -> tuple[float, float]:
    """(read GB/s of x.sum(), read + write GB/s of y.copy_(x)) over 256 MiB, best of 5."""
    x = torch.ones(256 * 1024 * 1024 // 4)
    y = torch.empty_like(x)
    read = copy = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        x.sum()
        read = min(read, time.perf_counter() - t0)
        t0 = time.perf_counter()
        y.copy_(x)
        copy = min(copy, time.perf_counter() - t0)
    nbytes = x.numel() * 4
    return nbytes / read / 1e9, 2 * nbytes / copy / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a model name rftlab loads (tiny, smollm2-135m, ...)")
    parser.add_argument("--rows", type=int, default=4, help="rows decoding together (G of a rollout)")
    parser.add_argument("--prompt", type=int, default=84, help="prompt tokens prefilled first")
    parser.add_argument("--steps", type=int, default=32, help="timed decode steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    read, copy = stream_bandwidth()
    print(f"stream: read {read:.1f} GB/s (x.sum), read + write {copy:.1f} GB/s (copy_), 256 MiB, 1 thread")

    from transformers import DynamicCache

    from rftlab.policy import load_policy

    model = load_policy(args.model, device="cpu").model.eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    ids = torch.randint(10, 400, (args.rows, args.prompt))
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        token, times = ids[:, -1:], []

        def step(t: int) -> None:
            position = torch.full((args.rows, 1), args.prompt + t)
            model(input_ids=token, position_ids=position, cache=cache, use_cache=True, logits_to_keep=1)

        for t in range(args.steps):
            t0 = time.perf_counter()
            step(t)
            times.append(time.perf_counter() - t0)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for t in range(args.steps, args.steps + 8):
                step(t)
    median = sorted(times)[len(times) // 2]
    print(
        f"{args.model}: decode step of {args.rows} rows, median of {args.steps}: {median * 1e3:.1f} ms; "
        f"weights {weight_bytes / 1e6:.0f} MB -> read at {weight_bytes / median / 1e9:.1f} GB/s "
        f"({weight_bytes / median / 1e9 / read:.0%} of the streaming read rate)"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    print("load after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
