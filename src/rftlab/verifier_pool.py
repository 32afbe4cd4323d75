"""math-verify in worker processes, bounded by the worker's CPU time so that a verdict does not depend on load.

Why processes: math-verify's own timeouts use `signal.alarm`, which fails off the main thread, so it
is called here with `parsing_timeout=None, timeout_seconds=None` and time is bounded by us. A thread
cannot do that: model output such as `10^{10^{10}}` makes sympy compute a huge integer power in C
while holding the GIL, which no thread can interrupt. A worker process can be stopped.

Why CPU time, not the wall clock: a wall-clock bound makes the reward depend on how busy the machine
is (`x^2+2x+1` vs `(x+1)^2` costs ~0.2 s of CPU as a worker's first polynomial comparison: under a
2 s wall-clock bound it scored True alone and sometimes False with three CPU burners running). Here each request arms
`ITIMER_PROF` in the worker with `cpu_budget_s` seconds of the worker's own CPU time; the signal's
default action ends the worker even inside C code, the pair scores False and counts as a timeout,
and a fresh worker replaces it. A request that costs less CPU than the budget gets its verdict
however long the machine makes it wait (a very generous wall-clock backstop, `WALL_BACKSTOP_S`,
only catches a worker that stopped running at all). On top of that:
- workers are warm: they import math-verify and run a few symbolic comparisons before taking work,
  so one-time import costs are never charged to a request;
- verdicts are cached per process, keyed by (gold, pred, budget), so a pair is scored once;
- `timeouts()` counts verdicts that came from a timeout (cached ones included), which the trainer
  logs per round as `reward/verifier_timeouts`.

Workers die with their parent: on Linux each one asks for SIGKILL on its parent's death
(`prctl(PR_SET_PDEATHSIG)`), which works even while it computes in C; elsewhere a watchdog thread
polls the parent pid. PDEATHSIG fires when the *thread* that started a worker ends, so every worker
is started from one long-lived spawner thread. If no worker can start at all, verification falls
back to a daemon thread with a wall-clock join timeout (best effort) and logs one warning.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path

log = logging.getLogger(__name__)

# A request that has not answered after this many wall seconds is given up on (counted as a timeout).
# It is far above any CPU budget times any plausible slowdown; it exists for a worker that was stopped.
WALL_BACKSTOP_S = 600.0
STARTUP_TIMEOUT_S = 300.0
CACHE_SIZE = 65_536
_WARM_UP = [
    ("1", "1"),
    ("(x+1)^2", "x^2+2x+1"),
    ("\\sqrt{12}", "2\\sqrt{3}"),
    ("[1,2)", "[1, 2)"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("\\frac{\\pi}{2}", "\\pi/2"),
]
_EOF = object()


# ---------------------------------------------------------------------------------------------
# math-verify itself


def _import_math_verify():
    """Import math-verify and silence its one-time "timeout disabled" warning: we bound time here."""
    import math_verify
    import math_verify.grader
    import math_verify.parser

    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    return math_verify


def mv_equal(gold: str, pred: str) -> bool:
    """math-verify's verdict with its signal-based timeouts off (so it runs in any thread)."""
    mv = _import_math_verify()
    g = mv.parse("\\boxed{" + gold + "}", parsing_timeout=None)
    p = mv.parse("\\boxed{" + pred + "}", parsing_timeout=None)
    if not g or not p:
        return False
    return bool(mv.verify(g, p, timeout_seconds=None))


# ---------------------------------------------------------------------------------------------
# the worker process


def _die_with_parent(parent_pid: int) -> None:
    """Make this process end when `parent_pid` does, even while it is busy in C code (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except Exception:  # noqa: BLE001 - the watchdog thread below still covers the idle case
            pass
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="rftlab-verify-watchdog").start()


def _worker_main(parent_pid: int) -> None:
    """Worker loop: read `[gold, pred, cpu_budget_s]` JSON lines on stdin, answer `1`/`0` lines.

    Each request arms ITIMER_PROF (this process's CPU time); its default action, SIGPROF, ends the
    process when the budget is spent, which the parent reads as a timeout.
    """
    _die_with_parent(parent_pid)
    logging.disable(logging.CRITICAL)
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    out = sys.stdout
    try:
        for gold, pred in _WARM_UP:  # imports and sympy's lazy set-up, before saying ready
            mv_equal(gold, pred)
    except Exception:  # noqa: BLE001
        return
    out.write("ready\n")
    out.flush()
    can_limit = hasattr(signal, "setitimer")
    for line in sys.stdin:
        try:
            gold, pred, budget = json.loads(line)
            if can_limit:
                signal.setitimer(signal.ITIMER_PROF, max(float(budget), 0.001))
            try:
                ok = mv_equal(gold, pred)
            finally:
                if can_limit:
                    signal.setitimer(signal.ITIMER_PROF, 0)
        except Exception:  # noqa: BLE001 - any failure is a wrong answer, and the worker lives on
            ok = False
        out.write("1\n" if ok else "0\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# the parent side


class _Spawner:
    """One long-lived thread that starts every worker (PDEATHSIG follows the starting thread)."""

    def __init__(self) -> None:
        self.requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="rftlab-verify-spawner").start()

    def _loop(self) -> None:
        while True:
            args, kwargs, future = self.requests.get()
            try:
                future.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                future.set_exception(err)

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        future: Future = Future()
        self.requests.put((args, kwargs, future))
        return future.result()


class Worker:
    """One math-verify subprocess and the thread that reads its answers into a queue."""

    def __init__(self, spawner: _Spawner) -> None:
        src = str(Path(__file__).resolve().parent.parent)
        boot = (
            f"import sys; sys.path.insert(0, {src!r}); "
            f"from rftlab.verifier_pool import _worker_main; _worker_main({os.getpid()})"
        )
        self.proc = spawner.popen(
            [sys.executable, "-c", boot],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="rftlab-verify-reader").start()
        if self._next(STARTUP_TIMEOUT_S) != "ready":
            self.kill()
            raise RuntimeError("math-verify worker did not start")

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self.answers.put(line.strip())
        except Exception:  # noqa: BLE001
            pass
        self.answers.put(_EOF)

    def _next(self, timeout_s: float):
        """The next answer line, skipping anything else a library printed; None on timeout."""
        while True:
            try:
                item = self.answers.get(timeout=timeout_s)
            except queue.Empty:
                return None
            if item is _EOF or item in ("0", "1", "ready"):
                return item

    def ask(self, gold: str, pred: str, cpu_budget_s: float) -> str:
        """`"1"`/`"0"`; `"timeout"` (CPU budget spent, or the wall backstop); `"dead"` (it had exited
        before this request, or died of something else while answering: worth one retry)."""
        try:
            self.proc.stdin.write(json.dumps([gold, pred, cpu_budget_s]) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self.kill()
            return "dead"
        answer = self._next(max(WALL_BACKSTOP_S, 30 * cpu_budget_s))
        if answer in ("0", "1"):
            return answer
        if answer is None:
            self.kill()
            return "timeout"
        try:  # it exited: by its CPU budget (SIGPROF), or killed/crashed for another reason
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        return "timeout" if code == -signal.SIGPROF else "dead"

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            pass


class WorkerPool:
    """Idle workers shared by all threads; at most `size` alive, extra callers wait for one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.idle: list[Worker] = []
        self.alive: set[object] = set()  # workers, and placeholders for ones starting
        self.broken = False
        self._spawner: _Spawner | None = None

    def acquire(self) -> Worker | None:
        with self.cond:
            while not self.idle and len(self.alive) >= self.size and not self.broken:
                self.cond.wait()
            if self.broken:
                return None
            if self.idle:
                return self.idle.pop()
            placeholder = object()
            self.alive.add(placeholder)  # reserve the slot while the worker starts
            if self._spawner is None:
                self._spawner = _Spawner()
            spawner = self._spawner
        try:
            worker = Worker(spawner)
        except Exception:  # noqa: BLE001 - no subprocesses here: fall back to threads
            log.warning("math-verify worker process could not start; using a thread, time bound is best effort")
            with self.cond:
                self.alive.discard(placeholder)
                self.broken = True
                self.cond.notify_all()
            return None
        with self.cond:
            self.alive.discard(placeholder)
            self.alive.add(worker)
        return worker

    def release(self, worker: Worker, healthy: bool) -> None:
        with self.cond:
            if healthy:
                self.idle.append(worker)
            else:
                self.alive.discard(worker)
            self.cond.notify()

    def worker_pids(self) -> list[int]:
        with self.cond:
            return [w.proc.pid for w in self.alive if isinstance(w, Worker)]

    def close(self) -> None:
        with self.cond:
            workers = [w for w in self.alive if isinstance(w, Worker)]
            self.idle.clear()
            self.alive.clear()
        for w in workers:
            w.kill()


_pool_lock = threading.Lock()
_pool: WorkerPool | None = None


def get_pool() -> WorkerPool:
    """The process's pool; a forked child gets its own (the parent's pipes are not its to use)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = WorkerPool(size=max(1, min(4, os.cpu_count() or 1)))
        return _pool


@atexit.register
def _close_pool() -> None:
    if _pool is not None and _pool.pid == os.getpid():
        _pool.close()


# ---------------------------------------------------------------------------------------------
# verdicts: cached, with a count of timeouts

_cache_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str, float], str] = OrderedDict()
_timeouts = 0


def timeouts() -> int:
    """How many verdicts so far (in this process) came from a timeout; the trainer logs differences."""
    return _timeouts


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def verify(gold: str, pred: str, cpu_budget_s: float) -> bool:
    """math-verify's verdict within `cpu_budget_s` seconds of a worker's CPU time, False past it.

    Never raises. The verdict is cached; a timed-out pair stays False (and is counted again) when
    asked again, so a reward is a function of the pair and the budget only.
    """
    global _timeouts
    key = (gold, pred, float(cpu_budget_s))
    with _cache_lock:
        verdict = _cache.get(key)
        if verdict is not None:
            _cache.move_to_end(key)
    if verdict is None:
        verdict = _ask_pool(gold, pred, cpu_budget_s)
        with _cache_lock:
            _cache[key] = verdict
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    if verdict == "timeout":
        with _cache_lock:
            _timeouts += 1
    return verdict == "1"


def _ask_pool(gold: str, pred: str, cpu_budget_s: float) -> str:
    """`"1"`, `"0"` or `"timeout"` from a worker (or the thread fallback); never raises."""
    pool = get_pool()
    for _ in range(2):  # a worker found dead (killed, or crashed on an earlier input) is replaced once
        worker = pool.acquire()
        if worker is None:
            return _mv_equal_in_thread(gold, pred, cpu_budget_s)
        answer = worker.ask(gold, pred, cpu_budget_s)
        pool.release(worker, healthy=answer in ("0", "1"))
        if answer != "dead":
            return answer
    return "timeout"


def _mv_equal_in_thread(gold: str, pred: str, timeout_s: float) -> str:
    """Fallback without subprocesses: a daemon thread and a wall-clock join timeout (best effort)."""
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(mv_equal(gold, pred))
        except Exception:  # noqa: BLE001
            result.append(False)

    thread = threading.Thread(target=run, daemon=True, name="rftlab-verify")
    thread.start()
    thread.join(timeout_s)
    if not result:
        return "timeout"
    return "1" if result[0] else "0"
