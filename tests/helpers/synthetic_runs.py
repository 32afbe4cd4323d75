"""Synthetic run directories: a stand-in for the trainer when testing sweeps, analysis and reports.

`synthetic_train(config, out, resume)` has the run function's signature and writes what a real run
writes (config.yaml, metrics.jsonl with train_round and eval rows, summary.json) in milliseconds,
with curves that are a deterministic function of the config and seed: train Pass@1 rises
logistically at a rate that grows with G and B, falls flat for negative reward designs and extreme
examples, and test Pass@1 follows a fraction of it plus seeded noise. A multi-task config (data.mix)
also gets per-task keys: each trained task's test Pass@1 rises 0.3 x the train gain, 1.5 x that with
a second trained task (a second task "helps"), and an evaluated-only task rises half as much as a
trained one ("transfers, but less"). It is no model of RL; it only gives the statistics known,
reproducible inputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import yaml


def write_run(out: str | Path, config: dict, rows: list[dict], *, summary: bool = True) -> Path:
    """A run directory from a config mapping and metric rows (eval rows need round, split, Pass@1s)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary:
        evals = [r for r in rows if r.get("split") == "eval"]

        def pick(r: dict) -> dict:
            return {"train_pass_at_1": r["train/pass_at_1"], "test_pass_at_1": r["test/pass_at_1"], "round": r["round"]}

        (out / "summary.json").write_text(
            json.dumps(
                {
                    "seed": config.get("seed", 0),
                    "base": pick(evals[0]),
                    "final": pick(evals[-1]),
                    "best_test": pick(max(evals, key=lambda r: r["test/pass_at_1"])),
                    "rounds": config.get("train", {}).get("rounds"),
                    "rollouts_total": evals[-1]["rollouts_total"],
                    "wall_seconds": 0.0,
                }
            )
        )
    return out


def eval_row(round_: int, rollouts: int, train: float, test: float) -> dict:
    return {
        "round": round_,
        "split": "eval",
        "rollouts_total": rollouts,
        "train/pass_at_1": train,
        "train/pass_at_1_low": max(0.0, train - 0.1),
        "train/pass_at_1_high": min(1.0, train + 0.1),
        "test/pass_at_1": test,
        "test/pass_at_1_low": max(0.0, test - 0.05),
        "test/pass_at_1_high": min(1.0, test + 0.05),
        "test/format_rate": 1.0,
    }


def synthetic_rows(config: dict) -> list[dict]:
    seed = int(config.get("seed", 0))
    rounds = int(config["train"]["rounds"])
    every = int(config["eval"]["every"]) or rounds
    G = int(config["rollout"]["rollouts_per_round"])
    B = int(config["train"]["examples_per_round"])
    obj, data = config["objective"], config["data"]
    mix = data.get("mix") or {}
    if mix.get("tasks"):
        B = sum(mix.get("per_round") or [1] * len(mix["tasks"]))
    rng = np.random.default_rng(1000 + seed)
    rate = 0.05 * math.sqrt(G * B) * (1.0 + 0.3 * rng.standard_normal())
    if obj["reward_design"] != "binary" or data["difficulty"] == "extreme":
        rate = 0.0
    if obj["advantage"] in ("grpo", "rloo"):
        rate *= 1.3
    base_train, base_test = 0.3, 0.2
    rows, eval_rounds = [], sorted({0, rounds, *range(every, rounds + 1, every)})
    for r in range(1, rounds + 1):
        p = base_train + (1 - base_train) * (1 - math.exp(-rate * r))
        rows.append(
            {
                "round": r,
                "split": "train_round",
                "reward/mean": p,
                "correct/mean": p,
                "rollouts_total": r * G * B,
                "time/round_s": 0.01,
            }
        )
    for r in eval_rounds:
        p = base_train + (1 - base_train) * (1 - math.exp(-rate * r))
        test = base_test + 0.3 * (p - base_train) + (0.02 * rng.standard_normal() if r else 0.0)
        row = eval_row(r, r * G * B, round(p, 4), round(min(1.0, max(0.0, test)), 4))
        if mix.get("tasks"):
            row.update(task_keys(mix, p - base_train, base_test, rng if r else None))
            trained = [row[f"test/{t}/pass_at_1"] for t in mix["tasks"]]
            row["test/pass_at_1"] = round(sum(trained) / len(trained), 4)
        rows.append(row)
    return sorted(rows, key=lambda row: (row["round"], row["split"] == "eval"))


def task_keys(mix: dict, train_gain: float, base_test: float, rng) -> dict:
    """Per-task eval keys of a synthetic multi-task row (see the module docstring for the effects)."""
    tasks, others = mix["tasks"], mix.get("eval_tasks") or []
    help_factor = 1.5 if len(tasks) > 1 else 1.0
    out = {}
    for t in tasks + others:
        gain = 0.3 * train_gain * (help_factor if t in tasks else 0.5)
        value = base_test + gain + (0.01 * rng.standard_normal() if rng is not None else 0.0)
        out[f"test/{t}/pass_at_1"] = round(min(1.0, max(0.0, value)), 4)
        if t in tasks:
            out[f"train/{t}/pass_at_1"] = round(0.3 + train_gain, 4)
    return out


def synthetic_train(config: dict, out: str, resume: bool) -> dict:
    """A run function for executors: writes a synthetic run directory (resume just rewrites it)."""
    write_run(out, config, synthetic_rows(config))
    return json.loads((Path(out) / "summary.json").read_text())
