"""Training-example selection by base Pass@1 bucket, and the cache of base Pass@1 estimates."""

import json
import os
import re
from types import SimpleNamespace

import pytest

from rftlab import selection
from rftlab.errors import RftlabError
from rftlab.selection import (
    DifficultySettings,
    candidate_pool,
    estimate_difficulty,
    in_bucket,
    select_by_difficulty,
)
from rftlab.tasks.problem import Problem


@pytest.mark.parametrize(
    ("p", "bucket", "inside"),
    [
        (0.0, "extreme", True),
        (0.0625, "extreme", False),
        (0.0, "hard", False),
        (0.0625, "hard", True),
        (0.1, "hard", False),
        (0.1, "medium", True),
        (0.6, "medium", True),
        (0.625, "medium", False),
        (0.625, "easy", True),
        (0.9, "easy", True),
        (0.95, "easy", False),
        (1.0, "any", True),
    ],
)
def test_buckets(p, bucket, inside):
    assert in_bucket(p, bucket) is inside


def problems(n):
    return [Problem(f"p{i}", f"q{i}", "1", "t") for i in range(n)]


def test_pool_is_seeded_and_independent_of_run_seed():
    a, b = candidate_pool(problems(50), 10, seed=0), candidate_pool(problems(50), 10, seed=0)
    assert a == b and len(a) == 10 and len({p.id for p in a}) == 10
    assert candidate_pool(problems(50), 10, seed=1) != a


def test_select_first_in_bucket_and_clear_error_when_too_few():
    pool = problems(5)
    rates = {"p0": 0.0, "p1": 0.75, "p2": 0.25, "p3": 0.5, "p4": 0.0}
    assert [p.id for p in select_by_difficulty(pool, rates, "medium", 2)] == ["p2", "p3"]
    assert [p.id for p in select_by_difficulty(pool, rates, "extreme", 1)] == ["p0"]
    with pytest.raises(RftlabError, match=r"only 1 of 5 candidates have base Pass@1 \[0.6, 0.9\]"):
        select_by_difficulty(pool, rates, "easy", 2)


# ------------------------------------------------------------------------------------------ the difficulty cache


class FakeEval:
    """Stands in for `evaluate`: records which candidates were estimated; Pass@1 = 1/(index+2)."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, policy, problems, *, samples, **kw):
        self.calls.append([p.id for p in problems])
        return SimpleNamespace(n=samples, correct=[samples / (int(p.id[1:]) + 2) for p in problems])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path / "cache"))
    fake = FakeEval()
    monkeypatch.setattr(selection, "evaluate", fake)
    return fake


SETTINGS = DifficultySettings(
    model="m",
    model_fingerprint="f",
    dataset="d",
    split="train",
    prompt_style=None,
    answer_format="gsm8k_strict",
    samples=4,
    temperature=1.0,
    top_p=1.0,
    max_new_tokens=8,
    seed=0,
)
EXPECTED = {f"p{i}": 1 / (i + 2) for i in range(4)}


def test_estimates_are_cached(cache):
    assert estimate_difficulty(None, problems(4), SETTINGS) == EXPECTED
    assert estimate_difficulty(None, problems(4), SETTINGS) == EXPECTED
    assert cache.calls == [["p0", "p1", "p2", "p3"]]


CORRUPTIONS = {
    "torn": lambda good: good[: len(good) // 2],
    "garbage": lambda good: bytes(range(256)) * 4,
    "empty": lambda good: b"",
    "not a table": lambda good: b"[1, 2, 3]",
    "not a rate": lambda good: re.sub(rb'"p1": [0-9.]+', b'"p1": "x"', good),
    "out of range": lambda good: re.sub(rb'"p1": [0-9.]+', b'"p1": 7.5', good),
    "other settings": lambda good: good.replace(b'"model": "m"', b'"model": "n"'),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_cache_is_discarded_with_a_warning_and_recomputed(cache, caplog, corruption):
    estimate_difficulty(None, problems(4), SETTINGS)
    file = SETTINGS.cache_file()
    good = file.read_bytes()
    file.write_bytes(CORRUPTIONS[corruption](good))
    assert file.read_bytes() != good
    with caplog.at_level("WARNING"):
        assert estimate_difficulty(None, problems(4), SETTINGS) == EXPECTED
    assert cache.calls == [["p0", "p1", "p2", "p3"]] * 2  # estimated again, from scratch
    assert f"difficulty cache {file} is corrupt" in caplog.text
    assert file.read_bytes() == good  # rewritten whole
    assert estimate_difficulty(None, problems(4), SETTINGS) == EXPECTED and len(cache.calls) == 2


def test_an_unwritable_cache_warns_with_the_path_and_the_variable_and_computes(cache, caplog, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RFTLAB_CACHE", str(blocker))
    with caplog.at_level("WARNING"):
        assert estimate_difficulty(None, problems(4), SETTINGS) == EXPECTED
        assert estimate_difficulty(None, problems(4), SETTINGS) == EXPECTED
    assert len(cache.calls) == 2  # nothing cached, nothing broken
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert str(blocker) in warnings[0] and "RFTLAB_CACHE" in warnings[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_cache_directory_warns_and_computes(cache, caplog, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    monkeypatch.setenv("RFTLAB_CACHE", str(ro))
    with caplog.at_level("WARNING"):
        assert estimate_difficulty(None, problems(4), SETTINGS) == EXPECTED
    assert str(ro) in caplog.text and "RFTLAB_CACHE" in caplog.text


def test_a_failed_write_leaves_the_old_cache_whole_and_no_temp_file(cache, caplog, monkeypatch):
    estimate_difficulty(None, problems(2), SETTINGS)
    file = SETTINGS.cache_file()
    before = file.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # the rename inside files.write_atomic
    with caplog.at_level("WARNING"):
        assert estimate_difficulty(None, problems(4), SETTINGS) == EXPECTED  # p2, p3 are new
    assert "No space left on device" in caplog.text
    assert file.read_bytes() == before
    assert sorted(p.name for p in file.parent.iterdir()) == [file.name]


def test_eval_recovers_the_same_estimate_from_a_corrupt_or_unwritable_cache(tmp_path, monkeypatch, capsys):
    """End to end on tiny: a torn cache file, then an unwritable RFTLAB_CACHE, give the same numbers."""
    from rftlab.cli import main

    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path / "cache"))
    args = [
        "eval",
        "tiny",
        "run.threads=1",
        "rollout.max_new_tokens=24",
        "--train-problems",
        "2",
        "--samples",
        "2",
        "--skip-test",
        "--out",
    ]
    assert main([*args, str(tmp_path / "first.json")]) == 0
    (file,) = (tmp_path / "cache" / "difficulty").iterdir()
    file.write_bytes(file.read_bytes()[:-7])  # what a kill during a non-atomic write leaves
    assert main([*args, str(tmp_path / "torn.json")]) == 0
    monkeypatch.setenv("RFTLAB_CACHE", str(tmp_path / "first.json"))  # a file: nothing can go under it
    assert main([*args, str(tmp_path / "unwritable.json")]) == 0
    first, *others = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("first", "torn", "unwritable"))
    for other in others:
        assert other["train"]["per_problem"] == first["train"]["per_problem"]
