"""How many torch threads a run uses, and how idle OpenMP threads wait: no collapse on a busy machine.

torch's CPU wheels run their intra-op pool on GNU OpenMP (libgomp, `torch.__config__.parallel_info()`).
Two defaults make a run collapse when other work shares the cores: torch starts one thread per core,
and an idle libgomp thread spins (busy-waits) before it sleeps. Every parallel region then waits for
the slowest of its threads, and a thread that lost its core to another process holds the region for a
whole scheduler slice while the others burn their slices spinning: on 2 shared cores a G = 8 round
went from ~1 s at 1 thread to 20.8 s at 2 (issue 11). The policy here:

* threads: `run.threads` when set; else `OMP_NUM_THREADS` when the environment sets it (a sweep
  worker's share of the cores, or the user's choice); else the cores this process may run on
  (`os.sched_getaffinity`) minus the cores other processes keep busy right now, at least 1.
* waiting: `OMP_WAIT_POLICY=PASSIVE` (libgomp: idle threads sleep at once) and `KMP_BLOCKTIME=0`
  (the same for Intel OpenMP builds), unless the environment already says how to wait. libgomp reads
  these once, when torch loads it, so they are set before `import torch` (`rftlab.cli` does it first).

The thread count does not change the float results of our sizes (checked: `rftlab run tiny` at 1 and
2 threads writes identical metrics), so choosing it from the load keeps runs reproducible.
This module imports nothing heavy: it must run before torch is imported.
"""

from __future__ import annotations

import os
import time
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


def choose_threads(cores: int, busy: float, requested: int, env: Mapping[str, str]) -> ThreadPolicy:
    """Threads and environment for a run, from the machine and the config (a pure function).

    cores: cores this process may run on; busy: cores other processes keep busy now (0..cores);
    requested: `run.threads` (0 = choose); env: the current environment.
    """
    cores = max(1, int(cores))
    added = wait_env(env)
    if requested > 0:
        threads, reason = requested, "run.threads"
    elif _positive_int(env.get("OMP_NUM_THREADS")):
        threads, reason = int(env["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        free = cores - max(0.0, float(busy))
        threads = max(1, min(cores, int(free + 0.5)))
        reason = f"{cores} cores, {max(0.0, float(busy)):.1f} busy"
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


def busy_cores(seconds: float = 0.25) -> float:
    """Cores (of those this process may use) that other processes keep busy now: their non-idle time in
    /proc/stat over `seconds` while this process sleeps. The 1-minute load average, which lags a minute
    behind a change, is the fallback off Linux."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        first = _cpu_times()
        time.sleep(seconds)
        second = _cpu_times()
    except (OSError, ValueError, IndexError, AttributeError):
        try:
            return min(float(os.getloadavg()[0]), float(available_cores()))
        except (OSError, AttributeError):
            return 0.0
    busy = 0.0
    for cpu in cpus:
        if cpu not in first or cpu not in second:
            continue
        a, b = first[cpu], second[cpu]
        total = sum(b) - sum(a)
        idle = (b[3] + b[4]) - (a[3] + a[4])  # idle + iowait
        if total > 0:
            busy += (total - idle) / total
    return busy


def _cpu_times() -> dict[int, list[int]]:
    """Per CPU: its jiffies (user, nice, system, idle, iowait, ...) from /proc/stat."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                times[int(name[3:])] = [int(v) for v in values]
    return times


def set_wait_policy(env: dict | None = None) -> dict[str, str]:
    """Before torch is imported: make idle OpenMP threads sleep, unless the user said how they wait."""
    env = os.environ if env is None else env
    added = wait_env(env)
    env.update(added)
    return added


def policy_for(requested: int) -> ThreadPolicy:
    """The policy for this process now (measures the load only when it has to choose)."""
    env = os.environ
    busy = 0.0 if requested > 0 or _positive_int(env.get("OMP_NUM_THREADS")) else busy_cores()
    return choose_threads(available_cores(), busy, requested, env)
