"""The run directory: resolved config, metrics, rollouts, checkpoint, summary.

    <run>/config.yaml        the resolved configuration (every default written out)
    <run>/metrics.jsonl      one JSON object per line; `split` is "train_round" or "eval"
    <run>/rollouts.jsonl.gz  every rollout: round, example id, text, reward
    <run>/checkpoint/        policy weights, optimizer, trainer state (round, RNG, baseline)
    <run>/summary.json       base vs final figures, written at the end

Appends are whole lines written with one `write` call. A checkpoint is written to a temporary
directory and renamed into place, so a run killed at any moment has a complete checkpoint (the
new one or the previous one). On resume, log lines newer than the checkpoint are dropped, so the
resumed run's files end up identical to an uninterrupted run's.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from rftlab.config import Config, config_from_dict
from rftlab.errors import RftlabError

CHECKPOINT = "checkpoint"


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; None says "not measured"
    return value


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ---------------------------------------------------------------- files
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def rollouts_path(self) -> Path:
        return self.path / "rollouts.jsonl.gz"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def prepare(self, cfg: Config, *, resume: bool) -> None:
        """Create the directory, or check that a resumed run has the same configuration."""
        config_file = self.path / "config.yaml"
        if config_file.exists():
            if not resume:
                raise RftlabError(
                    f"run directory {self.path} already holds a run; pass --resume to continue it "
                    f"or choose another --out"
                )
            saved = config_from_dict(yaml.safe_load(config_file.read_text()))
            if saved != cfg:
                diff = _diff(saved.to_dict(), cfg.to_dict())
                raise RftlabError(f"--resume with a different config than {config_file}: {diff}")
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(config_file, cfg.to_yaml())

    def append_metrics(self, row: dict[str, Any]) -> None:
        line = json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n"
        with open(self.metrics_path, "a") as f:
            f.write(line)

    def append_rollouts(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        payload = "".join(json.dumps(r) + "\n" for r in rows)
        with gzip.open(self.rollouts_path, "at") as f:  # each append is a gzip member; readers concatenate
            f.write(payload)

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        _atomic_write(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")

    def truncate_logs(self, last_round: int) -> None:
        """Drop log lines from rounds after the checkpoint (they will be produced again)."""
        rows = [r for r in self.read_metrics() if r.get("round", 0) <= last_round]
        _atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        if self.rollouts_path.exists():
            with gzip.open(self.rollouts_path, "rt") as f:
                kept = [line for line in f if json.loads(line)["round"] <= last_round]
            tmp = self.rollouts_path.with_suffix(".tmp")
            with gzip.open(tmp, "wt") as f:
                f.write("".join(kept))
            os.replace(tmp, self.rollouts_path)

    # ---------------------------------------------------------------- checkpoint
    def save_checkpoint(self, model_state: dict, optimizer_state: dict, state: dict) -> None:
        """Write {model, optimizer, state} atomically; `model_state` is what the trainer trains (all
        weights, or only a LoRA adapter's)."""
        tmp = self.path / (CHECKPOINT + ".tmp")
        old = self.path / (CHECKPOINT + ".old")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save(
            {"model": model_state, "optimizer": optimizer_state, "state": state},
            tmp / "trainer.pt",
        )
        if self.checkpoint_path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.checkpoint_path, old)
        os.replace(tmp, self.checkpoint_path)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self) -> dict | None:
        """The latest complete checkpoint (or the previous one if a save was interrupted), else None."""
        for folder in (self.checkpoint_path, self.path / (CHECKPOINT + ".old")):
            file = folder / "trainer.pt"
            if file.is_file():
                return torch.load(file, map_location="cpu", weights_only=False)
        return None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a run killed mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _diff(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            found = _diff(a[key], b[key], f"{prefix}{key}.")
            if found:
                return found
        elif a.get(key) != b.get(key):
            return f"{prefix}{key} was {a.get(key)!r}, now {b.get(key)!r}"
    return ""
