"""The math-verify worker pool: CPU-time bounds, load independence, the verdict cache, worker lifetime."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import OrderedDict
from pathlib import Path

import pytest

from rftlab import rewards, trainer, verifier_pool
from rftlab.config import load_config
from rftlab.runs import read_jsonl

PATHOLOGICAL = "10^{10^{10}}"  # sympy computes this power in C, holding the GIL, for minutes


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> verifier_pool.WorkerPool:
    """A pool of one worker and an empty verdict cache for this test only."""
    pool = verifier_pool.WorkerPool(size=1)
    monkeypatch.setattr(verifier_pool, "_pool", pool)
    monkeypatch.setattr(verifier_pool, "_cache", OrderedDict())
    yield pool
    pool.close()


def _in_thread(fn, *args, limit_s: float = 300.0):
    """fn(*args) in a thread; a hang guard (not a speed assertion): fails if it never returns."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    thread.start()
    thread.join(limit_s)
    assert result, f"{fn.__name__} did not return within {limit_s} s"
    return result[0]


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


# ------------------------------------------------------------------------------------------ CPU-time bound


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="CPU-time bound needs setitimer")
def test_a_pathological_answer_is_stopped_by_the_workers_cpu_budget(fresh) -> None:
    worker = verifier_pool.Worker(verifier_pool._Spawner())
    try:
        assert _in_thread(worker.ask, "5", PATHOLOGICAL, 0.5) == "timeout"
        assert worker.proc.returncode == -signal.SIGPROF  # ended by its own CPU timer, not by us
    finally:
        worker.kill()


def test_a_timeout_scores_false_is_counted_and_a_fresh_worker_follows(fresh) -> None:
    before = rewards.verifier_timeouts()
    bounded = lambda: rewards.score(f"\\boxed{{{PATHOLOGICAL}}}", "5", timeout_s=0.5)  # noqa: E731
    assert _in_thread(bounded) is False
    assert rewards.verifier_timeouts() == before + 1
    # asked again: the cached verdict, counted again, no second CPU budget spent
    assert rewards.score(f"\\boxed{{{PATHOLOGICAL}}}", "5", timeout_s=0.5) is False
    assert rewards.verifier_timeouts() == before + 2
    assert rewards.score("\\boxed{2\\sqrt{3}}", "\\sqrt{12}")  # a fresh worker replaced the killed one
    assert rewards.verifier_timeouts() == before + 2


def test_a_starved_worker_still_gives_its_verdict(fresh) -> None:
    """Load, made extreme: the worker gets no CPU at all for 3 s (SIGSTOP). Under the old 2 s
    wall-clock bound the pair scored False; counted in CPU time it is True, and no timeout."""
    assert verifier_pool.verify("\\sqrt{12}", "2\\sqrt{3}", 5.0)  # start the worker
    (pid,) = fresh.worker_pids()
    before = verifier_pool.timeouts()
    os.kill(pid, signal.SIGSTOP)
    try:
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(rewards.score("\\boxed{x^2+2x+1}", "(x+1)^2")))
        thread.start()
        time.sleep(3.0)
        assert not result  # it waits for the stopped worker instead of giving up
    finally:
        os.kill(pid, signal.SIGCONT)
    thread.join(300)
    assert result == [True]
    assert verifier_pool.timeouts() == before
    assert fresh.worker_pids() == [pid]  # the same warm worker, not a replacement


# ------------------------------------------------------------------------------------------ cache


def test_verdicts_are_cached_per_pair_and_budget(fresh, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple] = []

    def ask(gold: str, pred: str, budget: float) -> str:
        asked.append((gold, pred, budget))
        return "1"

    monkeypatch.setattr(verifier_pool, "_ask_pool", ask)
    for _ in range(3):
        assert rewards.score("\\boxed{2\\sqrt{3}}", "\\sqrt{12}")
    assert asked == [("\\sqrt{12}", "2\\sqrt{3}", rewards.MATH_VERIFY_CPU_S)]
    assert verifier_pool.verify("\\sqrt{12}", "2\\sqrt{3}", 1.0)  # another budget is another question
    assert len(asked) == 2


# ------------------------------------------------------------------------------------------ worker lifetime

_PARENT = """
import sys, threading, time
from rftlab import verifier_pool as vp
vp._pool = vp.WorkerPool(size=2)
threading.Thread(target=vp.verify, args=("5", {pathological!r}, 600.0), daemon=True).start()
while len(vp.get_pool().worker_pids()) < 1:
    time.sleep(0.05)
assert vp.verify("\\\\sqrt{{12}}", "2\\\\sqrt{{3}}", 5.0)  # a second, idle worker
time.sleep(1.0)  # the first one is now busy with the pathological power
print(" ".join(map(str, vp.get_pool().worker_pids())), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_workers_die_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(_PARENT.format(pathological=PATHOLOGICAL)))
    src = str(Path(verifier_pool.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = parent.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2, line
        assert all(_alive(p) for p in pids)
    finally:
        parent.kill()  # SIGKILL: no atexit, no cleanup of any kind
        parent.wait()
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [p for p in pids if _alive(p)]
    for p in survivors:  # do not leave a busy orphan behind if the test fails
        os.kill(p, signal.SIGKILL)
    assert not survivors, f"workers {survivors} outlived their killed parent"


def test_a_worker_started_from_a_short_lived_thread_outlives_that_thread(fresh) -> None:
    """PDEATHSIG follows the thread that started a worker; the spawner thread keeps it alive."""
    assert _in_thread(verifier_pool.verify, "\\sqrt{12}", "2\\sqrt{3}", 5.0)
    (pid,) = fresh.worker_pids()
    time.sleep(0.5)
    assert _alive(pid)
    assert verifier_pool.verify("1+x^2", "x^2+1", 5.0)
    assert fresh.worker_pids() == [pid]


# ------------------------------------------------------------------------------------------ fallbacks


def test_math_verify_runs_in_a_thread_without_signals() -> None:
    """The in-process path (the fallback) calls math-verify with its signal timeouts off."""
    assert _in_thread(verifier_pool.mv_equal, "\\sqrt{12}", "2\\sqrt{3}", limit_s=60) is True


def test_thread_fallback_when_workers_cannot_start(fresh) -> None:
    fresh.broken = True
    assert rewards.is_equivalent("2\\sqrt{3}", "\\sqrt{12}")
    assert not rewards.is_equivalent("2\\sqrt{2}", "\\sqrt{12}")


def test_pool_is_rebuilt_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked child must not reuse the parent's worker pipes."""
    monkeypatch.setattr(verifier_pool, "_pool", None)  # restored after the test; these pools start no worker
    pool = verifier_pool.get_pool()
    assert verifier_pool.get_pool() is pool
    monkeypatch.setattr(pool, "pid", -1)  # as if this process were a fork of the pool's owner
    fresh = verifier_pool.get_pool()
    assert fresh is not pool and fresh.pid > 0


# ------------------------------------------------------------------------------------------ the trainer's metric


def test_trainer_logs_verifier_timeouts_per_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reward of a round decided by a timeout shows in that round's `reward/verifier_timeouts`."""

    def timed_out(response: str, reference: str, answer_format: str = "auto") -> bool:
        monkeypatch.setattr(verifier_pool, "_timeouts", verifier_pool._timeouts + 1)
        return False

    monkeypatch.setattr(trainer, "score", timed_out)
    cfg = load_config(
        "tiny",
        [
            "train.rounds=2",
            "rollout.rollouts_per_round=3",
            "eval.every=0",
            "eval.train_samples=1",
            "data.test_size=1",
            "data.difficulty=any",
            "run.progress=false",
            "rollout.max_new_tokens=8",
            "run.threads=1",
        ],
    )
    trainer.train(cfg, tmp_path / "run")
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train_round"]
    assert [r["reward/verifier_timeouts"] for r in rows] == [3, 3]
