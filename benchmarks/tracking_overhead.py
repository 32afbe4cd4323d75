"""What run.report_to costs: a whole `rftlab run` process with each backend against report_to=none.

    python benchmarks/tracking_overhead.py [--pairs 3 --rounds 20]

Each pair runs the same short `tiny` configuration once per backend (none, tensorboard, wandb, mlflow) in a
fresh process, the order rotated from pair to pair, and times the process from start to exit (imports,
backend start-up, every row, closing). Printed per backend: the median and range of wall seconds, of the
ratio to `none` in the same pair, and of the difference (the backend's added seconds). One thread each;
an untimed 1-round run of each backend first (its first import after installing compiles bytecode).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = ["none", "tensorboard", "wandb", "mlflow"]


def run_once(backend: str, rounds: int, folder: Path) -> float:
    out = folder / f"{backend}-{time.monotonic_ns()}"
    command = [
        sys.executable,
        "-m",
        "rftlab.cli",
        "run",
        "tiny",
        f"train.rounds={rounds}",
        "eval.every=10",
        "eval.train_samples=4",
        "data.test_size=10",
        "data.difficulty=any",
        "run.progress=false",
        "run.threads=1",
        f"run.report_to={backend}",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}, {format(max(values), fmt)}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first run of each backend")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {b: [] for b in BACKENDS}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_warmup:  # a first import compiles the packages' bytecode: a one-time cost, not per run
            for backend in BACKENDS:
                run_once(backend, 1, Path(tmp))
        for i in range(args.pairs):
            order = BACKENDS[i % len(BACKENDS) :] + BACKENDS[: i % len(BACKENDS)]
            for backend in order:
                seconds[backend].append(run_once(backend, args.rounds, Path(tmp)))
            print(f"pair {i + 1}: " + ", ".join(f"{b} {seconds[b][-1]:.1f} s" for b in BACKENDS), flush=True)
    print(f"\n{args.rounds} rounds of tiny, {args.pairs} pairs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'backend':<12} {'wall s':<22} {'ratio to none':<22} added s")
    for b in BACKENDS:
        ratios = [x / y for x, y in zip(seconds[b], seconds["none"], strict=True)]
        added = [x - y for x, y in zip(seconds[b], seconds["none"], strict=True)]
        print(f"{b:<12} {spread(seconds[b], '.1f'):<22} {spread(ratios, '.2f'):<22} {spread(added, '+.1f')}")


if __name__ == "__main__":
    main()
