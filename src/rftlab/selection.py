"""Choosing training examples by difficulty: the base model's own Pass@1 on each candidate.

The paper picks its single training example by how hard it is for the base model (layer L4:
an extremely hard example, base Pass@1 = 0, gives no signal). Difficulty is estimated once per
(model, dataset, prompt, sampling settings) from `samples` rollouts per candidate and cached as
JSON under `$RFTLAB_CACHE/difficulty/`, so every seed and variant of a sweep trains on the same
example without paying for the estimate again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rftlab.errors import ConfigError, RftlabError
from rftlab.evaluation import evaluate
from rftlab.files import write_atomic
from rftlab.policy import Policy, cache_dir
from rftlab.tasks.problem import Problem

log = logging.getLogger(__name__)
_FIX = "set RFTLAB_CACHE to a writable directory to keep estimates between runs"

# Base Pass@1 buckets; `low < p <= high` except where noted, so "hard" excludes exactly 0.
BUCKETS: dict[str, tuple[float, float, str]] = {
    "easy": (0.6, 0.9, "[0.6, 0.9]"),
    "medium": (0.1, 0.6, "[0.1, 0.6]"),
    "hard": (0.0, 0.1, "(0, 0.1)"),
    "extreme": (0.0, 0.0, "= 0"),
    "any": (0.0, 1.0, "[0, 1]"),
}


def in_bucket(pass_at_1: float, bucket: str) -> bool:
    low, high, _ = BUCKETS[bucket]
    if bucket == "extreme":
        return pass_at_1 == 0.0
    if bucket == "hard":
        return 0.0 < pass_at_1 < high
    return low <= pass_at_1 <= high


@dataclass(frozen=True)
class DifficultySettings:
    """Everything a base Pass@1 estimate depends on (it is part of the cache key)."""

    model: str
    model_fingerprint: str
    dataset: str
    split: str
    prompt_style: str | None
    answer_format: str
    samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def cache_file(self) -> Path:
        key = hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:20]
        return cache_dir() / "difficulty" / f"{key}.json"


def model_fingerprint(policy: Policy) -> str:
    """Cheap identity of the weights: a hash of a few parameter values (changes if the model does)."""
    digest = hashlib.sha256()
    named = policy.base_named_parameters()  # a LoRA policy's base weights: its outputs at the start
    for name, param in named[:: max(1, len(named) // 8)]:
        digest.update(name.encode())
        digest.update(param.detach().flatten()[:256].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_pool_size(data, available: int, example_id: str) -> None:
    """Refuse, before any sampling, training data too small for what `data` (a DataConfig) asks.

    Difficulty selection estimates the base Pass@1 of `data.difficulty_pool` candidates and keeps
    those in the bucket; how many qualify is known only after sampling (a 5-problem file once spent
    433 s to learn that none did). A pool smaller than configured is refused up front with the three
    ways out, so spending that time is a choice: `data.difficulty_pool=N` estimates all N anyway.
    """
    if available < data.train_examples:
        raise ConfigError(
            f"data.train_examples={data.train_examples} but the training data has only {available} problem(s)"
        )
    if data.difficulty == "any" or available >= data.difficulty_pool:
        return
    raise ConfigError(
        f"the training data has {available} problem(s), fewer than data.difficulty_pool={data.difficulty_pool}: "
        f"data.difficulty={data.difficulty} keeps candidates with base Pass@1 {BUCKETS[data.difficulty][2]} "
        f"({data.difficulty_samples} samples each, {available * data.difficulty_samples} generations) and so few "
        f"may hold none; pick one with data.train_example_ids=[{example_id}], take the first with "
        f"data.difficulty=any, or estimate all {available} anyway with data.difficulty_pool={available}"
    )


def candidate_pool(problems: list[Problem], size: int, seed: int) -> list[Problem]:
    """The first `size` problems of a seeded permutation (the same pool for every run seed)."""
    order = torch.randperm(len(problems), generator=torch.Generator().manual_seed(seed)).tolist()
    return [problems[i] for i in order[:size]]


def estimate_difficulty(
    policy: Policy,
    pool: list[Problem],
    settings: DifficultySettings,
    *,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | str | None = "",
) -> dict[str, float]:
    """Base Pass@1 per candidate id, from the cache when this exact estimate was made before.

    `progress`: "" (a bar labelled with the candidate count), a label, None (silent), or a callable
    told (rows done, rows in all) after each generation batch (the run's whole-run progress display).
    """
    file = settings.cache_file()
    cached = read_difficulty_cache(file, settings)
    missing = [p for p in pool if p.id not in cached]
    if missing:
        result = evaluate(
            policy,
            missing,
            answer_format=settings.answer_format,
            prompt_style=settings.prompt_style,
            samples=settings.samples,
            greedy=False,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed,
            batch_size=batch_size,
            progress=f"base Pass@1 of {len(missing)} candidates" if progress == "" else progress,
        )
        cached.update({p.id: c / result.n for p, c in zip(missing, result.correct, strict=True)})
        write_difficulty_cache(file, {"settings": settings.__dict__, "pass_at_1": cached})
    return {p.id: cached[p.id] for p in pool}


def read_difficulty_cache(file: Path, settings: DifficultySettings) -> dict[str, float]:
    """The cached base Pass@1 per candidate id; {} when there is none or it is unusable.

    A cache file that is not what this module writes (torn, garbage, edited, or made for other
    settings) is discarded with a warning and recomputed: an estimate is cheap to redo and a wrong
    one would silently pick another training example. An unreadable cache directory is the same
    as an empty cache (see `write_difficulty_cache`).
    """
    try:
        raw = file.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # no cache yet (a bad directory: see the write)
        return {}
    except OSError as err:
        log.warning("difficulty cache %s is unreadable (%s); estimating without it (%s)", file, err, _FIX)
        return {}
    problem, rates = None, None
    try:
        data = json.loads(raw.decode("utf-8"))
        rates = data["pass_at_1"] if isinstance(data, dict) else None
        if not isinstance(rates, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
            for k, v in rates.items()
        ):
            problem = "no valid pass_at_1 table"
        elif data.get("settings") != json.loads(json.dumps(settings.__dict__)):
            problem = "made for other settings"
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"not valid JSON: {err}"
    if problem is None:
        return {k: float(v) for k, v in rates.items()}
    log.warning("difficulty cache %s is corrupt (%s); discarding it and estimating again", file, problem)
    with contextlib.suppress(OSError):
        file.unlink()
    return {}


def write_difficulty_cache(file: Path, content: dict) -> None:
    """Write the cache atomically (`files.write_atomic`) so no reader ever sees half a file.

    An unwritable `$RFTLAB_CACHE` is a warning, not an error: the cache only saves time (an estimate
    made without it is the same estimate), and a read-only home directory on a cluster node should
    not stop a run that has already paid for the estimate. The warning names the path and the variable.
    """
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(file, json.dumps(content, indent=1), durable=True)
    except OSError as err:
        log.warning("could not write the difficulty cache %s (%s); continuing without it (%s)", file, err, _FIX)


def select_by_difficulty(
    pool: list[Problem], base_pass_at_1: dict[str, float], bucket: str, count: int
) -> list[Problem]:
    """The first `count` candidates (in pool order) whose base Pass@1 falls in the bucket."""
    chosen = [p for p in pool if in_bucket(base_pass_at_1[p.id], bucket)][:count]
    if len(chosen) < count:
        raise RftlabError(
            f"only {len(chosen)} of {len(pool)} candidates have base Pass@1 {BUCKETS[bucket][2]} "
            f"(data.difficulty={bucket}); raise data.difficulty_pool, choose another data.difficulty, "
            f"or name the example with data.train_example_ids=[...]"
        )
    return chosen
