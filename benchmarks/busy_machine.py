"""A run on a busy machine: the old thread default against the new policy, alone and beside other work.

    OMP_NUM_THREADS= python benchmarks/busy_machine.py --repeats 2
    python benchmarks/busy_machine.py --quick          # 2 rounds, idle only: a smoke run

Workload (a short proxy of the README's main job, `rftlab run tiny`): the `tiny` main-job config with
`--rounds` rounds (default 20, G = 1), an evaluation at round 0 and at the end on `--test-size` test
problems x 2 samples and 16 samples of the training example, no checkpoints or rollout log. Each
measurement is a fresh child process (`--child VARIANT`) that sets its environment before it imports
torch, exactly as `rftlab.cli` does, and reports the wall seconds of `trainer.train`.

Variants (the machine has 2 cores, so "all cores" = 2):
* old:      run.threads=2 and libgomp's default wait (threads spin): what run.threads=0 meant before.
* 1thread:  run.threads=1, default wait: the manual fix (`run.threads=1`).
* passive1: run.threads=1 with OMP_WAIT_POLICY=PASSIVE (the policy's first draft picked 1 thread on a
            busy machine: measured slower than passive2, so dropped).
* passive2: run.threads=2 with OMP_WAIT_POLICY=PASSIVE, set explicitly.
* new:      run.threads=0 with the new policy (rftlab.threads): PASSIVE wait, every available core
            (on 2 cores the same settings as passive2, reached through the default path).
Loads, started before the measurement and stopped after it:
* idle:  nothing added (the machine is shared: `uptime` is printed before and after).
* spin2: two `python -c 'while True: pass'`.
* torch2: two torch processes with torch's defaults (a thread per core, spinning waits), each a loop of
          128x128 matmuls and small element-wise ops: other torch programs on the same laptop.
Variants are interleaved within each repeat of each load, so slow drift of the shared machine's load
hits all of them alike; the table gives the median seconds, and each load's median over its idle median.
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

VARIANTS = {
    # name: (run.threads, environment variables to set, remove the wait-policy variables?)
    "old": (2, {}, True),
    "1thread": (1, {}, True),
    "passive1": (1, {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}, True),
    "passive2": (2, {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}, True),
    "new": (0, {}, False),
}
LOADS = ("idle", "spin2", "torch2")
SPIN = "while True: pass"
TORCH_LOOP = (
    "import torch\na = torch.randn(128, 128)\nwhile True:\n    b = a @ a\n    c = torch.softmax(b, -1) * 0.5 + a\n"
)
WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def child(variant: str, rounds: int, test_size: int) -> None:
    """One measurement in this (fresh) process: environment first, then torch, then the run."""
    threads, env, _ = VARIANTS[variant]
    if variant == "new":
        from rftlab.threads import set_wait_policy

        set_wait_policy()
    else:
        os.environ.update(env)
    from rftlab.config import load_config
    from rftlab.trainer import train

    overrides = [
        f"run.threads={threads}",
        f"train.rounds={rounds}",
        "eval.every=0",
        f"data.test_size={test_size}",
        "run.checkpoint_every=0",
        "run.log_rollouts=false",
        "run.progress=false",
    ]
    cfg = load_config("tiny", overrides)
    import torch

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = train(cfg, out)
        seconds = time.perf_counter() - t0
    result = {
        "variant": variant,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "wait": os.environ.get("OMP_WAIT_POLICY", "default"),
        "final_train_pass_at_1": summary["final"]["train_pass_at_1"],
    }
    print("RESULT " + json.dumps(result), flush=True)


def measure(variant: str, rounds: int, test_size: int, timeout: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS" and k != "MKL_NUM_THREADS"}
    if VARIANTS[variant][2]:
        env = {k: v for k, v in env.items() if k not in WAIT_KEYS}
    cmd = [sys.executable, __file__, "--child", variant, "--rounds", str(rounds), "--test-size", str(test_size)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "seconds": float("inf"), "threads": None, "timed_out": True}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise SystemExit(f"child {variant} failed:\n{proc.stderr[-3000:]}")


def start_load(load: str) -> list[subprocess.Popen]:
    if load == "idle":
        return []
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", *WAIT_KEYS)}
    code = SPIN if load == "spin2" else TORCH_LOOP
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    time.sleep(3.0)  # let them get going (torch import)
    return procs


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def fmt(x: float) -> str:
    return "timeout" if x == float("inf") else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="training rounds per measurement")
    parser.add_argument("--test-size", type=int, default=40, help="test problems in each evaluation")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats per load")
    parser.add_argument(
        "--variants", default="old,1thread,passive2,new", help="comma-separated, from " + ",".join(VARIANTS)
    )
    parser.add_argument("--loads", default=",".join(LOADS), help="comma-separated, from " + ",".join(LOADS))
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a measurement is cut off")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 4 test problems, idle, 1 repeat")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.test_size, args.repeats, args.loads = 2, 4, 1, "idle"
    if args.child:
        child(args.child, args.rounds, args.test_size)
        return 0
    variants = [v for v in args.variants.split(",") if v]
    loads = [x for x in args.loads.split(",") if x]
    unknown = [v for v in variants if v not in VARIANTS] + [x for x in loads if x not in LOADS]
    if unknown:
        parser.error(f"unknown variant or load: {', '.join(unknown)}")
    print(f"before: {uptime()}", flush=True)
    rows: list[dict] = []
    for load in loads:
        for rep in range(args.repeats):
            order = variants if rep % 2 == 0 else variants[::-1]
            for variant in order:
                procs = start_load(load)
                try:
                    r = measure(variant, args.rounds, args.test_size, args.timeout)
                finally:
                    stop_load(procs)
                r.update(load=load, repeat=rep)
                rows.append(r)
                print(
                    f"{load:7s} {variant:9s} {fmt(r['seconds']):>8s} s  threads={r.get('threads')} "
                    f"wait={r.get('wait')}",
                    flush=True,
                )
    print(f"after:  {uptime()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    med = {
        (load, v): statistics.median(r["seconds"] for r in rows if r["load"] == load and r["variant"] == v)
        for load in loads
        for v in variants
    }
    print()
    print(
        "| variant | "
        + " | ".join(f"{x} (s)" for x in loads)
        + " | "
        + " | ".join(f"{x} / idle" for x in loads if x != "idle")
        + " |"
    )
    print("|---" * (1 + len(loads) + len([x for x in loads if x != "idle"])) + "|")
    for v in variants:
        cells = [fmt(med[(x, v)]) for x in loads]
        if "idle" in loads:
            cells += [f"{med[(x, v)] / med[('idle', v)]:.2f}" for x in loads if x != "idle"]
        print(f"| {v} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
