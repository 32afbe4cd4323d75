"""Faults provoked on real `rftlab run` processes: SIGKILL at random points and inside checkpoint writes,
two processes racing on one run, a full and a read-only disk (small tmpfs mounts), bad --out paths,
damaged files. Each must recover exactly or stop with one line (exit 2, no traceback).

The kill points inside a write use the test-only hook RFTLAB_TEST_FAULT=<point>@<round> (rftlab.runs):
the process kills itself with SIGKILL there, exactly as `kill -9` would.
The long campaign is marked slow: `bash scripts/fault_campaign.sh` runs it (see RELIABILITY.md).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rftlab.runs import read_jsonl

ARGS = [
    "tiny",
    "eval.every=2",
    "eval.train_samples=4",
    "data.test_size=6",
    "data.difficulty=any",
    "run.checkpoint_every=1",
    "run.progress=false",
    "rollout.max_new_tokens=96",
    "run.threads=1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def start(out, *extra, resume=False, fault=None) -> subprocess.Popen:
    env = {k: v for k, v in ENV.items() if k != "RFTLAB_TEST_FAULT"}
    if fault:
        env["RFTLAB_TEST_FAULT"] = fault
    cmd = [sys.executable, "-m", "rftlab.cli", "run", *ARGS, *extra, "--out", str(out)]
    return subprocess.Popen(
        cmd + (["--resume"] if resume else []), env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def rftlab(out, *extra, resume=False, fault=None) -> subprocess.CompletedProcess:
    proc = start(out, *extra, resume=resume, fault=fault)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def one_line_error(done: subprocess.CompletedProcess, *pieces: str) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rftlab: error: "), done.stderr
    for piece in pieces:
        assert piece in last, last
    return last


def train_round(out) -> int:
    rows = read_jsonl(Path(out) / "metrics.jsonl")
    return max([r["round"] for r in rows if r.get("split") == "train_round"], default=0)


def wait_for(condition, proc, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None or condition(), "the process ended first"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def assert_same_run(a: Path, b: Path) -> None:
    """Metrics (minus timings), summary (minus wall times), rollouts, weights and optimizer state."""

    def metrics(p):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_jsonl(p / "metrics.jsonl")]

    def summary(p):
        data = json.loads((p / "summary.json").read_text())
        return {k: v for k, v in data.items() if not k.startswith(("time/", "wall_seconds", "seconds_per_round"))}

    assert metrics(a) == metrics(b)
    assert summary(a) == summary(b)
    with gzip.open(a / "rollouts.jsonl.gz", "rt") as fa, gzip.open(b / "rollouts.jsonl.gz", "rt") as fb:
        assert fa.read() == fb.read()
    ca, cb = (torch.load(p / "checkpoint" / "trainer.pt", weights_only=False) for p in (a, b))
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- the campaign


@pytest.mark.slow
def test_kill_campaign_resumes_to_the_uninterrupted_result(tmp_path):
    rounds = "train.rounds=8"
    reference = tmp_path / "reference"
    assert rftlab(reference, rounds).returncode == 0

    out = tmp_path / "killed"
    # inside checkpoint writes and a rollout append, by the hook: each run dies with SIGKILL there
    for i, fault in enumerate(["checkpoint.data@2", "checkpoint.swap@3", "rollouts.append@5", "checkpoint.manifest@6"]):
        done = rftlab(out, rounds, resume=i > 0, fault=fault)
        assert done.returncode == -signal.SIGKILL, (fault, done.stderr)
    # at random moments, from outside
    rng = random.Random(20261130)
    for _ in range(3):
        proc = start(out, rounds, resume=True)
        target = min(8, train_round(out) + rng.randint(0, 2))
        try:
            wait_for(lambda t=target: train_round(out) >= t, proc)
            time.sleep(rng.uniform(0.0, 0.4))
        except AssertionError:
            pass  # it finished (or reached the target) before the kill: resuming it is still a test
        proc.kill()
        proc.communicate()
    done = rftlab(out, rounds, resume=True)
    assert done.returncode == 0, done.stderr
    assert_same_run(reference, out)


# ----------------------------------------------------------------------------- 2. two processes, one run


def test_a_second_process_on_a_running_run_is_refused(tmp_path):
    out = tmp_path / "r"
    first = start(out, "train.rounds=300", "eval.every=0")
    try:
        wait_for(lambda: train_round(out) >= 1, first)
        for resume in (True, False):
            one_line_error(rftlab(out, "train.rounds=300", "eval.every=0", resume=resume), "in use by another process")
        from rftlab.pipeline.executors import RunTask, run_one

        assert run_one(RunTask("r", str(out), {}), lambda *a: None).status == "busy"  # a sweep is refused too
        assert first.poll() is None
    finally:
        first.kill()
        first.communicate()
    rows = read_jsonl(out / "metrics.jsonl")
    rounds = [r["round"] for r in rows if r["split"] == "train_round"]
    assert rounds == sorted(set(rounds))  # no duplicated rows from a second writer


# ----------------------------------------------------------------------------- 8. one line, not a traceback


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file", "is a file, not a folder"),
        ("under-file", "which is a file, not a folder"),
        ("proc", "cannot hold a run directory: No such file or directory"),
    ],
)
def test_bad_out_fails_first_in_one_line(tmp_path, where, message):
    (tmp_path / "f").write_text("x")
    out = {
        "file": tmp_path / "f",
        "under-file": tmp_path / "f" / "run",
        "proc": Path("/proc/rftlab-test/run"),
    }[where]
    done = rftlab(out, "train.rounds=1")
    one_line_error(done, message)
    assert "rftlab run:" not in done.stderr  # refused before the run starts loading data and a model


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounted at tmp_path/mnt (needs root); unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def mount(options: str) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        return mnt

    yield mount
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_read_only_out_fails_first_in_one_line(tmpfs):
    mnt = tmpfs("ro,size=1m")
    done = rftlab(mnt / "run", "train.rounds=1")
    one_line_error(done, "cannot hold a run directory: Read-only file system")
    assert "rftlab run:" not in done.stderr


@pytest.mark.slow
def test_full_disk_stops_in_one_line_and_resumes_after_space_is_freed(tmp_path, tmpfs):
    reference = tmp_path / "reference"
    assert rftlab(reference, "train.rounds=3").returncode == 0
    size = (reference / "checkpoint" / "trainer.pt").stat().st_size
    mnt = tmpfs(f"size={int(size * 1.8)}")  # room for one checkpoint, not for the next one beside it
    out = mnt / "run"
    one_line_error(rftlab(out, "train.rounds=3"), "could not write checkpoint", "No space left on device")
    assert json.loads((out / "checkpoint" / "manifest.json").read_text())["round"] == 1
    assert not (out / "checkpoint.tmp").exists()  # the failed write's space is given back
    subprocess.run(["mount", "-o", f"remount,size={size * 4}", str(mnt)], check=True)
    done = rftlab(out, "train.rounds=3", resume=True)
    assert done.returncode == 0, done.stderr
    assert_same_run(reference, out)


def test_damaged_files_give_one_line(tmp_path):
    out = tmp_path / "r"
    assert rftlab(out, "train.rounds=1").returncode == 0
    (out / "checkpoint" / "trainer.pt").write_bytes(b"")
    one_line_error(rftlab(out, "train.rounds=1", resume=True), "trainer.pt is damaged", "no earlier intact")

    model = tmp_path / "model"
    model.mkdir()
    from rftlab.policy import BUILTIN_DIR

    for f in (BUILTIN_DIR / "tiny").iterdir():
        data = f.read_bytes()
        (model / f.name).write_bytes(data[: len(data) // 2] if f.name == "model.safetensors" else data)
    one_line_error(rftlab(tmp_path / "m", f"model.name={model}"), "is damaged")
    assert not (tmp_path / "m").exists()  # a refused run leaves no directory
    one_line_error(
        rftlab(tmp_path / "n", "model.name=/no/such/dir"), "model.name=/no/such/dir: there is no such folder"
    )
    one_line_error(rftlab(tmp_path / "i", "data.train_example_ids=[nope]"), "no example with id 'nope'")
    assert not (tmp_path / "i").exists()


@pytest.mark.slow
def test_killed_during_the_first_checkpoint_then_started_without_resume(tmp_path):
    """A run killed before any complete checkpoint, metrics or not, can be resumed; a kill inside the
    very first checkpoint write leaves checkpoint.tmp, which is never read."""
    out = tmp_path / "r"
    assert rftlab(out, "train.rounds=2", fault="checkpoint.data@1").returncode == -signal.SIGKILL
    assert (out / "checkpoint.tmp" / "trainer.pt").exists() and not (out / "checkpoint").exists()
    done = rftlab(out, "train.rounds=2", resume=True)
    assert done.returncode == 0, done.stderr
    assert train_round(out) == 2
