"""Whole-run progress and where the time goes.

A run passes through phases: start-up (data, model, run directory) -> select (base Pass@1 of the
training candidates) -> base eval -> rounds, with an evaluation every `eval.every` rounds -> summary
(figure and summary.json). `RunProgress` puts every second of the run into one of five buckets, the
`time/*_s` keys of summary.json (start-up, selection, training, evaluation, summary), and shows one
display of the whole run:

- on a terminal, one tqdm bar over the rounds, labelled with the phase, whose ETA is ours: rounds left
  x measured seconds per training round + evaluations left x measured seconds per evaluation. tqdm's
  own rate counts rounds only, so its ETA jumps at every evaluation (once 8 h 23 min);
- anywhere else (a file, a pipe, CI), plain lines: one per phase and per evaluation, and one every
  `every_s` seconds during the rounds; no carriage returns, no escape codes;
- nothing with `run.progress=false` (the pipelines' worker runs).

The timing is the same with or without a display; it never touches a random draw or a result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

BUCKETS: tuple[str, ...] = ("startup", "selection", "training", "evaluation", "summary")
PHASE_BUCKETS: dict[str, str] = {
    "start-up": "startup",
    "select": "selection",
    "base eval": "evaluation",
    "rounds": "training",
    "eval": "evaluation",
    "summary": "summary",
}
ProgressHook = Callable[[int, int], None]  # told (rows done, rows in all) after each generation batch
_OPEN_BARS: list = []  # bars of runs still going, closed by `close_open_bars` when a run stops on an error
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} rounds [{elapsed}{postfix}]"


def eval_rounds(rounds: int, every: int) -> list[int]:
    """The rounds after which the trainer evaluates: every `every`-th and the last (round 0 is the base eval)."""
    return [r for r in range(1, rounds + 1) if r == rounds or (every and r % every == 0)]


def clock_text(seconds: float) -> str:
    """H:MM:SS, or M:SS under an hour."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class RunProgress:
    """Phase timing into buckets, an ETA from measured phase costs, and one display (bar, lines or none)."""

    def __init__(
        self,
        *,
        rounds: int,
        eval_every: int,
        show: bool,
        stream: TextIO | None = None,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.mode = "off" if not show else ("bar" if _is_terminal(self.stream) else "lines")
        self.rounds, self.every_s, self.clock = rounds, every_s, clock
        self.evals = eval_rounds(rounds, eval_every)
        self.seconds = dict.fromkeys(BUCKETS, 0.0)
        self.started = self.since = self.last_line = clock()
        self.phase, self.detail = "start-up", ""
        self.round = 0  # rounds trained so far
        self.last_eval_round = -1  # evaluations up to this round are done
        self.rounds_here = 0  # rounds trained by this process, for seconds per round
        self.training_here = 0.0
        self.eval_seconds: list[float] = []
        self.postfix = ""
        self.bar = None
        silence_library_bars()
        if self.mode == "bar":
            self.bar = tqdm(total=rounds, desc="start-up", bar_format=BAR_FORMAT, file=self.stream, dynamic_ncols=True)
            _OPEN_BARS.append(self.bar)
        self._line("start-up")

    # ------------------------------------------------------------------ timing
    def switch(self, phase: str, detail: str = "") -> None:
        """Close the current phase (its seconds go to its bucket) and open `phase`."""
        now = self.clock()
        elapsed = now - self.since
        self.seconds[PHASE_BUCKETS[self.phase]] += elapsed
        if self.phase == "rounds":
            self.training_here += elapsed
        if self.phase in ("base eval", "eval"):
            self.eval_seconds.append(elapsed)
        self.since, self.phase, self.detail = now, phase, detail
        self._show_phase()

    def carry(self, seconds: dict[str, float] | None, round_: int) -> None:
        """On resume: the buckets as checkpointed, and the round the run continues after."""
        for key, value in (seconds or {}).items():
            if key in self.seconds:
                self.seconds[key] += float(value)
        self.round = self.last_eval_round = round_
        if self.bar is not None:
            self.bar.n = round_
            self.bar.refresh()

    def snapshot(self) -> dict[str, float]:
        """The buckets so far, the open phase included (what a checkpoint keeps)."""
        out = dict(self.seconds)
        out[PHASE_BUCKETS[self.phase]] += self.clock() - self.since
        return out

    def eval_done(self, round_: int, row: dict) -> None:
        self.last_eval_round = round_
        if self.mode == "lines":
            self._line(
                f"eval round {round_}: train Pass@1 {row['train/pass_at_1']:.3f}, test Pass@1 "
                f"{row['test/pass_at_1']:.3f} ({self.clock() - self.since:.1f} s)"
            )

    def round_done(self, round_: int, **postfix: str) -> None:
        self.round, self.rounds_here = round_, self.rounds_here + 1
        self.postfix = ", ".join(f"{k} {v}" for k, v in postfix.items())
        if self.bar is not None:
            self.bar.n = round_
            self._draw(self._label())
        elif self.mode == "lines" and (self.clock() - self.last_line >= self.every_s or round_ == self.rounds):
            self._line(f"round {round_}/{self.rounds}, {self._rates()}, {self._eta_text()} | {self.postfix}")

    def rows(self, label: str) -> ProgressHook | None:
        """A generation callback (rows done, rows in all) that shows how far the current phase is; None when off."""
        if self.mode == "off":
            return None

        def report(done: int, total: int) -> None:
            if self.bar is not None:
                self._draw(f"{self._label()}: {label} {done}/{total} rows")
            elif self.mode == "lines" and self.clock() - self.last_line >= self.every_s:
                self._line(f"{self._label()}: {label} {done}/{total} rows")

        return report

    def close(self) -> dict[str, float]:
        """End the open phase (its seconds go to its bucket) and the display; the buckets in seconds."""
        now = self.clock()
        self.seconds[PHASE_BUCKETS[self.phase]] += now - self.since
        self.since = now
        if self.bar is not None:
            self.bar.close()
            _OPEN_BARS.remove(self.bar)
            self.bar = None
        return dict(self.seconds)

    # ------------------------------------------------------------------ estimates
    def seconds_per_round(self) -> float | None:
        """Mean seconds of a training round (rollout, update, logging, checkpoint; evaluation excluded)."""
        if self.phase == "rounds" and self.rounds_here:
            return (self.training_here + self.clock() - self.since) / self.rounds_here
        return self.training_here / self.rounds_here if self.rounds_here else None

    def seconds_per_eval(self) -> float | None:
        return sum(self.eval_seconds) / len(self.eval_seconds) if self.eval_seconds else None

    def eta(self) -> float | None:
        """Seconds left: rounds left x s/round + evaluations left x s/eval; None until both are measured."""
        rounds_left = self.rounds - self.round
        evals_left = sum(r > self.last_eval_round for r in self.evals)
        per_round, per_eval = self.seconds_per_round(), self.seconds_per_eval()
        if (rounds_left and per_round is None) or (evals_left and per_eval is None):
            return None
        left = rounds_left * (per_round or 0.0) + evals_left * (per_eval or 0.0)
        if self.phase == "eval" and per_eval is not None:  # part of the open evaluation is done
            left -= min(per_eval, self.clock() - self.since)
        return max(0.0, left)

    # ------------------------------------------------------------------ display
    def _label(self) -> str:
        return f"{self.phase} {self.detail}".strip()

    def _eta_text(self) -> str:
        eta = self.eta()
        return "ETA ?" if eta is None else f"ETA {clock_text(eta)}"

    def _rates(self) -> str:
        per_round, per_eval = self.seconds_per_round(), self.seconds_per_eval()
        parts = [f"{per_round:.2f} s per training round" if per_round is not None else "s per round not yet measured"]
        if per_eval is not None:
            parts.append(f"{per_eval:.1f} s per evaluation")
        return ", ".join(parts)

    def _show_phase(self) -> None:
        if self.bar is not None:
            self._draw(self._label())
        elif self.mode == "lines" and self.phase != "rounds":
            self._line(self._label())
        elif self.mode == "lines" and self.round < self.rounds:
            self._line(f"rounds {self.round + 1}-{self.rounds}: {self._eta_text()}")

    def _draw(self, description: str) -> None:
        """Redraw the bar: the phase (and how far it is) on the left, our ETA and the run's numbers on the right."""
        eta = "" if self.phase == "summary" else self._eta_text()
        self.bar.set_description_str(description, refresh=False)
        self.bar.set_postfix_str(", ".join(t for t in (eta, self.postfix) if t), refresh=True)

    def _line(self, text: str) -> None:
        if self.mode != "lines":
            return
        self.last_line = self.clock()
        print(f"rftlab [{clock_text(self.last_line - self.started)}] {text}", file=self.stream, flush=True)


def close_open_bars() -> None:
    """End the bar of a run that stopped on an error, so the error line starts on a line of its own."""
    while _OPEN_BARS:
        _OPEN_BARS.pop().close()


def silence_library_bars() -> None:
    """Turn off transformers' own bars ("Loading weights"): a second bar under the run's breaks it on a
    terminal and writes carriage returns into a log file."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False
