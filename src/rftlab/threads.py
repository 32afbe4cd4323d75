"""How many torch threads a run uses, and how idle OpenMP threads wait: no collapse on a busy machine.

torch's CPU wheels run their intra-op pool on GNU OpenMP (libgomp, `torch.__config__.parallel_info()`).
By default an idle libgomp thread spins (busy-waits) before it sleeps. When other work shares the
cores, every parallel region waits for its slowest thread, and a thread that lost its core holds the
region for a scheduler slice while the others burn their own slices spinning: on 2 shared cores a
G = 8 round went from ~1 s at 1 thread to 20.8 s at 2 (issue 11). The policy here:

* waiting: `OMP_WAIT_POLICY=PASSIVE` (libgomp: idle threads sleep at once) and `KMP_BLOCKTIME=0`
  (the same for Intel OpenMP builds), unless the environment already says how to wait. libgomp reads
  these once, when torch loads it, so they are set before `import torch` (`rftlab.cli` does it first).
* threads: `run.threads` when set; else `OMP_NUM_THREADS` when the environment sets it (a sweep
  worker's share of the cores, or the user's choice); else every core this process may run on
  (`os.sched_getaffinity`, as torch's own default).

Why not fewer threads when the machine is busy: measured (BENCHMARKS.md, "On a busy machine"), with
sleeping waits 2 threads beat 1 thread on 2 cores shared with other processes (the scheduler shares a
core per thread, and a sleeping thread gives its share back), and spinning waits at 2 threads were
> 10x slower than either: the wait policy, not the thread count, is what collapsed.

On `tiny` the thread count does not change the float results (checked: `rftlab run tiny
train.rounds=25` at 1 and 2 threads writes identical metrics and rollouts); a larger model's matmuls
may split their sums differently by thread count: set run.threads (or OMP_NUM_THREADS) where
bit-for-bit reruns across machines matter.
This module imports nothing heavy: it must run before torch is imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# how idle OpenMP threads wait: sleep at once instead of spinning (GNU and Intel OpenMP)
WAIT_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
# any of these in the environment means the user chose how threads wait: leave it alone
WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


@dataclass(frozen=True)
class ThreadPolicy:
    threads: int  # torch intra-op threads
    env: dict[str, str] = field(default_factory=dict)  # variables to set before torch is imported
    reason: str = ""  # where the thread count came from, for the log


def wait_env(env: Mapping[str, str]) -> dict[str, str]:
    """The wait-policy variables to add to `env` (none when it already sets one of WAIT_KEYS)."""
    if any(env.get(k) for k in WAIT_KEYS):
        return {}
    return dict(WAIT_ENV)


def choose_threads(cores: int, requested: int, env: Mapping[str, str]) -> ThreadPolicy:
    """Threads and environment for a run, from the machine and the config (a pure function).

    cores: cores this process may run on; requested: `run.threads` (0 = choose); env: the environment.
    """
    added = wait_env(env)
    if requested > 0:
        threads, reason = requested, "run.threads"
    elif _positive_int(env.get("OMP_NUM_THREADS")):
        threads, reason = int(env["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        threads, reason = max(1, int(cores)), "the available cores"
    added["OMP_NUM_THREADS"] = str(threads)
    return ThreadPolicy(threads, {k: v for k, v in added.items() if env.get(k) != v}, reason)


def _positive_int(value: str | None) -> bool:
    return value is not None and value.strip().isdigit() and int(value) > 0


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def set_wait_policy(env: dict | None = None) -> dict[str, str]:
    """Before torch is imported: make idle OpenMP threads sleep, unless the user said how they wait."""
    env = os.environ if env is None else env
    added = wait_env(env)
    env.update(added)
    return added


def policy_for(requested: int) -> ThreadPolicy:
    """The policy for this process now."""
    return choose_threads(available_cores(), requested, os.environ)
