"""Whole-run progress: time buckets, an ETA from measured phase costs, clean lines off a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from rftlab.progress import BUCKETS, RunProgress, clock_text, eval_rounds


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_phases(progress: RunProgress, clock: FakeClock, *, rounds_done: int) -> None:
    """start-up 5 s, select 20 s, base eval 4 s, then `rounds_done` rounds of 2 s (evaluations of 4 s)."""
    clock.tick(5)
    progress.switch("select")
    clock.tick(20)
    progress.switch("base eval")
    clock.tick(4)
    progress.eval_done(0, {"train/pass_at_1": 0.1, "test/pass_at_1": 0.2})
    progress.switch("rounds")
    for r in range(1, rounds_done + 1):
        clock.tick(2)
        progress.round_done(r, reward="0.50")
        if r in progress.evals:
            progress.switch("eval", f"round {r}")
            clock.tick(4)
            progress.eval_done(r, {"train/pass_at_1": 0.5, "test/pass_at_1": 0.3})
            progress.switch("rounds")


def test_eval_rounds_are_every_nth_and_the_last():
    assert eval_rounds(10, 4) == [4, 8, 10]
    assert eval_rounds(10, 0) == [10]
    assert eval_rounds(0, 5) == []


def test_eta_is_rounds_left_times_s_per_round_plus_evals_left_times_s_per_eval():
    clock = FakeClock()
    progress = RunProgress(rounds=10, eval_every=5, show=False, clock=clock)
    assert progress.eta() is None  # nothing measured yet
    run_phases(progress, clock, rounds_done=3)
    # 7 rounds x 2 s + 2 evaluations (rounds 5 and 10) x 4 s
    assert progress.eta() == pytest.approx(7 * 2 + 2 * 4)
    clock.tick(2)
    progress.round_done(4)
    assert progress.eta() == pytest.approx(6 * 2 + 2 * 4)
    clock.tick(2)
    progress.round_done(5)
    progress.switch("eval", "round 5")
    clock.tick(1)  # a quarter of the evaluation done
    assert progress.eta() == pytest.approx(5 * 2 + 2 * 4 - 1)


def test_buckets_split_the_whole_run_and_add_up_to_it():
    clock = FakeClock()
    progress = RunProgress(rounds=10, eval_every=5, show=False, clock=clock)
    run_phases(progress, clock, rounds_done=10)
    progress.switch("summary")
    clock.tick(1)
    seconds = progress.close()
    assert seconds == {"startup": 5, "selection": 20, "training": 20, "evaluation": 4 * 3, "summary": 1}
    assert set(seconds) == set(BUCKETS)
    assert sum(seconds.values()) == pytest.approx(clock.now - 100.0)


def test_resume_carries_the_checkpointed_buckets_and_counts_only_evaluations_left():
    clock = FakeClock()
    progress = RunProgress(rounds=10, eval_every=5, show=False, clock=clock)
    progress.carry({"startup": 5.0, "selection": 20.0, "training": 10.0, "evaluation": 8.0}, 5)
    clock.tick(3)
    progress.switch("rounds")
    clock.tick(2)
    progress.round_done(6)
    assert progress.eta() is None  # no evaluation measured by this process yet, one (round 10) left
    assert progress.snapshot()["startup"] == 8.0 and progress.snapshot()["training"] == 12.0


def test_off_prints_nothing():
    stream, clock = Terminal(), FakeClock()
    progress = RunProgress(rounds=10, eval_every=5, show=False, stream=stream, clock=clock)
    run_phases(progress, clock, rounds_done=10)
    progress.close()
    assert stream.getvalue() == ""


def test_off_a_terminal_lines_have_phases_and_eta_and_no_control_characters():
    stream, clock = io.StringIO(), FakeClock()
    progress = RunProgress(rounds=10, eval_every=5, show=True, stream=stream, clock=clock, every_s=3)
    run_phases(progress, clock, rounds_done=10)
    progress.switch("summary")
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert [line.split("] ", 1)[1] for line in lines[:3]] == ["start-up", "select", "base eval"]
    assert any("eval round 5: train Pass@1 0.500, test Pass@1 0.300 (4.0 s)" in line for line in lines)
    # the round-4 line comes 3 s after the last one: 6 rounds x 2 s + 2 evaluations x 4 s left
    assert any("round 4/10, 2.00 s per training round, 4.0 s per evaluation, ETA 0:20" in line for line in lines)
    assert lines[-1].endswith("] summary")


def test_on_a_terminal_one_bar_shows_phase_and_our_eta():
    stream, clock = Terminal(), FakeClock()
    progress = RunProgress(rounds=10, eval_every=5, show=True, stream=stream, clock=clock)
    run_phases(progress, clock, rounds_done=3)
    progress.close()
    text = stream.getvalue()
    assert "3/10 rounds" in text and "ETA 0:22" in text and "select" in text and "reward 0.50" in text


def test_clock_text():
    assert (clock_text(59.6), clock_text(61), clock_text(3600 + 62)) == ("1:00", "1:01", "1:01:02")


def test_rftlab_run_into_a_pipe_prints_clean_lines_and_splits_the_time(tmp_path):
    """The CLI with stdout and stderr to pipes (a log file, CI): no carriage returns or escape codes;
    summary.json splits the wall time into start-up, selection, training, evaluation and summary."""
    out = tmp_path / "run"
    args = [
        "train.rounds=3",
        "eval.every=2",
        "eval.train_samples=2",
        "data.test_size=4",
        "data.difficulty=any",
        "rollout.max_new_tokens=48",
        "run.threads=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rftlab.cli", "run", "tiny", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for stream in (done.stdout, done.stderr):
        assert "\r" not in stream and "\x1b" not in stream
    phases = [line.split("] ", 1)[1] for line in done.stderr.splitlines() if line.startswith("rftlab [")]
    assert phases[0] == "start-up" and phases[-1] == "summary"
    assert any(p.startswith("select") for p in phases) and any(p.startswith("base eval") for p in phases)
    summary = json.loads((out / "summary.json").read_text())
    split = [summary[f"time/{b}_s"] for b in ("startup", "selection", "training", "evaluation", "summary")]
    assert all(s >= 0 for s in split) and split[2] > 0 and split[3] > 0
    assert sum(split) <= summary["wall_seconds"] + 0.05
    assert summary["seconds_per_round_with_evals"] > summary["seconds_per_round"] > 0
    assert "time (s): start-up" in done.stdout and "s training (rollout + update" in done.stdout


def test_a_run_stopped_by_an_error_has_its_bar_closed():
    from rftlab.progress import _OPEN_BARS, close_open_bars

    stream, clock = Terminal(), FakeClock()
    progress = RunProgress(rounds=4, eval_every=2, show=True, stream=stream, clock=clock)
    assert progress.bar in _OPEN_BARS
    close_open_bars()
    assert not _OPEN_BARS and stream.getvalue().endswith("\n")
