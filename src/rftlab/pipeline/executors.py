"""Running a sweep's runs: inline, in a local process pool, or as Ray tasks. All resumable.

Each run is a `RunTask` (its resolved config as plain data and its run directory). `run_one`
decides what a task needs: a run whose `summary.json` exists is finished and skipped; a run with
a `config.yaml` resumes from its checkpoint (`train(..., resume=True)`); otherwise it starts. A
lock file (`flock`, `rftlab.runs.run_lock`) keeps two processes from writing the same run directory
at once, and is released by the OS when its holder dies; `rftlab run` takes the same lock. A run
held by another process is reported as `busy` (held by another sweep), not as failed. A failed run is
recorded (`<run>/error.txt`), not fatal: the sweep goes on. In worker processes a run's output goes
to `<run>/log.txt`, not over the progress bar.

- `local` (default): a process pool of `workers` processes (default: the machine's cores, or
  `RFTLAB_CPUS`), each with torch threads = cores / workers; workers die with the parent.
- `ray`: each task is a Ray task asking for its CPUs and, when its config's device is cuda, one
  GPU; results are written by the task into the run directory (shared storage on a cluster).
  Connects to `address` (or `RAY_ADDRESS`) or reuses an initialized Ray; else starts a local one.
- `inline`: one after another in this process (debugging, tests).

Runs with the same `group` (e.g. the same difficulty estimate to compute and cache) start only after
the group's first run has finished, so two workers never compute the same cached estimate at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from rftlab.runs import CHECKPOINT, CHECKPOINT_OLD
from rftlab.runs import run_lock as _run_lock  # the same per-run lock `rftlab run` takes
from rftlab.threads import set_wait_policy

EXECUTORS = ("local", "ray", "inline")
HELD = "held by another sweep (or rftlab run): its lock is taken"


@dataclass(frozen=True)
class RunTask:
    name: str  # run directory name
    out: str  # run directory path
    config: dict  # resolved configuration (plain data)
    num_cpus: int = 1
    num_gpus: float = 0.0
    group: str = ""  # runs sharing a group wait for its first run (which fills a shared cache) to finish


@dataclass(frozen=True)
class RunResult:
    name: str
    status: str  # done | skipped (finished before) | failed | busy (another sweep or `rftlab run` holds it)
    seconds: float = 0.0
    resumed: bool = False
    error: str = ""


def machine_cpus() -> int:
    """Cores this process may use (RFTLAB_CPUS overrides, e.g. on a shared machine)."""
    if os.environ.get("RFTLAB_CPUS"):
        return max(1, int(os.environ["RFTLAB_CPUS"]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def is_finished(out: str | Path) -> bool:
    return (Path(out) / "summary.json").is_file()


def wants_gpu(config: dict) -> bool:
    return str(config.get("model", {}).get("device", "cpu")).startswith("cuda")


def default_train(config: dict, out: str, resume: bool) -> dict:
    """The real run function: build the Config and call the trainer."""
    from rftlab.config import config_from_dict
    from rftlab.trainer import train

    return train(config_from_dict(config), out, resume=resume)


def run_one(
    task: RunTask, train_fn: Callable[[dict, str, bool], object] | None = None, keep_checkpoint: bool = True
) -> RunResult:
    """Skip a finished run, resume an unfinished one, or start it; never raises for a failed run."""
    out = Path(task.out)
    if is_finished(out):
        return RunResult(task.name, "skipped")
    train_fn = train_fn or default_train
    t0 = time.perf_counter()
    with _run_lock(out) as got:
        if not got:
            return RunResult(task.name, "busy", error=HELD)
        if is_finished(out):  # finished while we waited for the lock
            return RunResult(task.name, "skipped")
        resume = (out / "config.yaml").is_file()
        try:
            train_fn(task.config, str(out), resume)
        except Exception as err:  # a run's failure is data for the report, not the end of the sweep
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            (out / "error.txt").write_text(traceback.format_exc())
            return RunResult(task.name, "failed", time.perf_counter() - t0, resume, f"{type(err).__name__}: {first}")
        (out / "error.txt").unlink(missing_ok=True)
        if not keep_checkpoint:
            import shutil

            shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
            shutil.rmtree(out / CHECKPOINT_OLD, ignore_errors=True)
    return RunResult(task.name, "done", time.perf_counter() - t0, resume)


# ----------------------------------------------------------------------------- local pool


def _init_worker(threads: int) -> None:
    """Per worker: its share of the cores, and death with the parent (Linux)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    set_wait_policy()  # idle OpenMP threads sleep (rftlab.threads); a no-op when inherited from the CLI
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (file descriptors 1 and 2) to a file: a worker's run log."""
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _worker_run(task: RunTask, train_fn, keep_checkpoint: bool) -> RunResult:
    """In a worker process: the run's output goes to <run>/log.txt, not over the sweep's progress bar."""
    if is_finished(task.out):
        return RunResult(task.name, "skipped")
    with _output_to(Path(task.out) / "log.txt"):
        return run_one(task, train_fn, keep_checkpoint)


class Progress:
    """A tqdm bar over runs (done / total, rate, ETA) with failure counts in the postfix; off a terminal
    (a log file, a pipe, CI) one plain line per finished run instead, without carriage returns."""

    def __init__(self, total: int, already: int, enabled: bool = True, desc: str = "runs"):
        self.plain = enabled and not sys.stderr.isatty()
        self.bar = tqdm(
            total=total,
            initial=already,
            desc=desc,
            unit="run",
            disable=not enabled or self.plain,
            dynamic_ncols=True,
            smoothing=0.0,
        )
        self.total, self.done, self.desc, self.started = total, already, desc, time.monotonic()
        self.failed = 0
        self.held = 0

    def update(self, result: RunResult) -> None:
        if result.status == "failed":
            self.failed += 1
        if result.status == "busy":  # another sweep is running it: not a failure
            self.held += 1
        self.done += 1
        self.bar.update(1)
        self.bar.set_postfix(last=result.name[-40:], failed=self.failed, held=self.held)
        if self.plain:
            minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
            print(
                f"{self.desc} [{minutes}:{seconds:02d}] {self.done}/{self.total} {result.status}: {result.name}"
                f" (failed {self.failed}, held {self.held})",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()


def execute(
    tasks: list[RunTask],
    *,
    executor: str = "local",
    workers: int | None = None,
    train_fn: Callable | None = None,
    progress: bool = True,
    keep_checkpoint: bool = True,
    ray_address: str | None = None,
) -> list[RunResult]:
    """Run every task (skipping finished ones); results in task order."""
    if executor not in EXECUTORS:
        from rftlab.errors import RftlabError

        raise RftlabError(f"--executor {executor!r} is not known; choose one of: {', '.join(EXECUTORS)}")
    finished = {t.name for t in tasks if is_finished(t.out)}
    todo = [t for t in tasks if t.name not in finished]
    results: dict[str, RunResult] = {name: RunResult(name, "skipped") for name in finished}
    bar = Progress(len(tasks), len(finished), progress)
    try:
        if executor == "inline":
            for t in todo:
                results[t.name] = run_one(t, train_fn, keep_checkpoint)
                bar.update(results[t.name])
        elif executor == "local":
            results.update(_execute_local(todo, workers, train_fn, keep_checkpoint, bar))
        else:
            results.update(_execute_ray(todo, train_fn, keep_checkpoint, bar, ray_address))
    finally:
        bar.close()
    return [results[t.name] for t in tasks]


def split_groups(todo: list[RunTask]) -> tuple[list[RunTask], dict[str, list[RunTask]]]:
    """(runs that may start now, runs waiting for their group's first run): order is kept."""
    ready, waiting, leaders = [], {}, set()
    for t in todo:
        if t.group and t.group in leaders:
            waiting.setdefault(t.group, []).append(t)
        else:
            ready.append(t)
            if t.group:
                leaders.add(t.group)
    return ready, waiting


def _execute_local(todo, workers, train_fn, keep_checkpoint, bar) -> dict[str, RunResult]:
    """A spawn process pool; if a worker process dies (OOM kill, segfault) the pool breaks, and the
    runs it took down are tried once more in a fresh pool (they resume from their checkpoints)."""
    from concurrent.futures.process import BrokenProcessPool

    cpus = machine_cpus()
    results: dict[str, RunResult] = {}
    tries: dict[str, int] = {}
    while todo:
        workers_now = max(1, min(workers or cpus, len(todo)))
        threads = max(1, cpus // workers_now)
        retry = []
        ctx = mp.get_context("spawn")  # fork after torch has started threads is unsafe
        with ProcessPoolExecutor(
            max_workers=workers_now, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
        ) as pool:
            ready, waiting = split_groups(todo)
            pending = {pool.submit(_worker_run, t, train_fn, keep_checkpoint): t for t in ready}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        task = pending.pop(fut)
                        for follower in waiting.pop(task.group, []) if task.group else []:
                            pending[pool.submit(_worker_run, follower, train_fn, keep_checkpoint)] = follower
                        try:
                            res = fut.result()
                        except BrokenProcessPool:
                            tries[task.name] = tries.get(task.name, 0) + 1
                            if tries[task.name] < 2:
                                retry.append(task)
                                continue
                            res = RunResult(task.name, "failed", error="its worker process died twice")
                        except Exception as err:
                            res = RunResult(task.name, "failed", error=f"{type(err).__name__}: {err}")
                        results[task.name] = res
                        bar.update(res)
            except KeyboardInterrupt:
                for fut in pending:
                    fut.cancel()
                raise
        todo = retry
    return results


# ----------------------------------------------------------------------------- ray


def _ray_entry(task: RunTask, train_fn, keep_checkpoint: bool) -> RunResult:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(max(1, task.num_cpus))  # run.threads=0 follows it (rftlab.threads)
    torch.set_num_threads(max(1, task.num_cpus))
    return _worker_run(task, train_fn, keep_checkpoint)


def _execute_ray(todo, train_fn, keep_checkpoint, bar, address) -> dict[str, RunResult]:
    if not todo:
        return {}
    try:
        import ray
    except ImportError:
        from rftlab.errors import RftlabError

        raise RftlabError("--executor ray needs Ray: pip install 'ray[default]' (or rftlab[ray])") from None
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False, log_to_driver=False) if address else ray.init(
            include_dashboard=False, log_to_driver=False
        )
    remote = ray.remote(_ray_entry)

    def submit(t: RunTask):
        return remote.options(num_cpus=t.num_cpus, num_gpus=t.num_gpus, max_retries=0).remote(
            t, train_fn, keep_checkpoint
        )

    first, waiting = split_groups(todo)
    refs = {submit(t): t for t in first}
    results = {}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                task = refs.pop(ref)
                for follower in waiting.pop(task.group, []) if task.group else []:
                    refs[submit(follower)] = follower
                try:
                    res = ray.get(ref)
                except Exception as err:  # the task's worker died
                    res = RunResult(task.name, "failed", error=f"ray task died: {type(err).__name__}: {str(err)[:200]}")
                results[task.name] = res
                bar.update(res)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    return results
