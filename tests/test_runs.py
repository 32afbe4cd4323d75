"""The run directory under faults: each is provoked for real (flipped bytes, torn files, deleted files,
a huge learning rate) and must either recover exactly or stop with one line naming the file or round.

Runs are killed in-process by raising KeyboardInterrupt from the 4th update (as tests/test_trainer.py
does); killing real processes with SIGKILL is tests/test_fault_campaign.py.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from killed_runs import deterministic, train_killed_in_update

from rftlab import trainer
from rftlab.config import load_config
from rftlab.errors import RftlabError
from rftlab.runs import RunDir, read_gzip_lines, read_jsonl, read_metrics_strict

# 4 rounds, a checkpoint every round: a kill in round 4 leaves checkpoint (round 3) and checkpoint.old (2)
FAST = [
    "train.rounds=4",
    "eval.every=2",
    "eval.train_samples=4",
    "data.test_size=6",
    "data.difficulty=any",
    "run.checkpoint_every=1",
    "run.progress=false",
    "rollout.max_new_tokens=96",
]


def weights(out):
    return torch.load(out / "checkpoint" / "trainer.pt", weights_only=False)["model"]


def same_run(a, b):
    assert deterministic(read_jsonl(a / "metrics.jsonl")) == deterministic(read_jsonl(b / "metrics.jsonl"))
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    with gzip.open(a / "rollouts.jsonl.gz", "rt") as fa, gzip.open(b / "rollouts.jsonl.gz", "rt") as fb:
        assert fa.read() == fb.read()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    trainer.train(load_config("tiny", FAST), out)
    return out


@pytest.fixture(scope="module")
def killed_template(tmp_path_factory):
    """A run of FAST killed inside round 4's update: checkpoints of rounds 3 (newest) and 2 (previous)."""
    out = tmp_path_factory.mktemp("killed") / "run"
    train_killed_in_update(load_config("tiny", FAST), out)
    return out


@pytest.fixture
def killed(tmp_path, killed_template):
    """A fresh copy of the killed run for one test to damage."""
    return Path(shutil.copytree(killed_template, tmp_path / "r"))


def resume(out, extra=()):
    return trainer.train(load_config("tiny", FAST + list(extra)), out, resume=True)


def flip_bytes(path, offset, count=64):
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- 1. corrupted checkpoint


def test_corrupted_checkpoint_falls_back_to_the_previous_one(killed, reference, caplog):
    out = killed
    file = out / "checkpoint" / "trainer.pt"
    flip_bytes(file, file.stat().st_size // 2)  # inside the tensor data: torch.load would not notice
    with caplog.at_level(logging.WARNING):
        resume(out)
    assert "sha256 does not match" in caplog.text and "round 2" in caplog.text
    same_run(reference, out)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_damaged_checkpoint_without_an_intact_one_stops_in_one_line(killed, damage):
    out = killed
    for folder in ("checkpoint", "checkpoint.old"):
        file = out / folder / "trainer.pt"
        if damage == "flip":
            flip_bytes(file, 1000)
        else:
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 3 if damage == "truncate" else 0])
    with pytest.raises(RftlabError, match=r"checkpoint/trainer.pt is damaged .*no earlier intact checkpoint"):
        resume(out)


def test_checkpoint_manifest_records_checksum_round_and_config(killed):
    out = killed
    manifest = json.loads((out / "checkpoint" / "manifest.json").read_text())
    old = json.loads((out / "checkpoint.old" / "manifest.json").read_text())
    assert (manifest["round"], old["round"]) == (3, 2)
    assert manifest["bytes"] == (out / "checkpoint" / "trainer.pt").stat().st_size
    assert manifest["config"] == load_config("tiny", FAST).to_dict()
    assert not (out / "checkpoint.tmp").exists()


# ----------------------------------------------------------------------------- 4. config mixing


def test_resume_without_config_yaml_is_checked_against_the_checkpoint(killed, reference):
    out = killed
    (out / "config.yaml").unlink()
    with pytest.raises(RftlabError, match=r"checkpoint/manifest.json: optim.lr was 3e-05, now 0.5"):
        resume(out, ["optim.lr=0.5"])
    assert not (out / "config.yaml").exists()
    resume(out)  # the same config: config.yaml is rewritten from the checkpoint's and the run finishes
    assert load_config(str(out / "config.yaml")) == load_config("tiny", FAST)
    same_run(reference, out)


@pytest.mark.parametrize("garbage", ["model: {name: [unclosed\n", "just a string\n", "train: {rounds: -3}\n", ""])
def test_damaged_config_yaml_is_restored_from_the_checkpoint(killed, reference, garbage):
    out = killed
    text = (out / "config.yaml").read_text()
    (out / "config.yaml").write_text(garbage or text[: len(text) // 2])  # "" -> truncated mid-file
    resume(out)
    assert load_config(str(out / "config.yaml")) == load_config("tiny", FAST)
    same_run(reference, out)


# ----------------------------------------------------------------------------- 5. damaged metrics


def test_torn_last_metrics_line_is_dropped_and_the_resume_is_exact(killed, reference):
    out = killed
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"round": 4, "split": "train_ro')  # a kill in the middle of the next append
    resume(out)
    same_run(reference, out)


def test_corrupt_middle_metrics_line_is_an_error_naming_the_line(killed):
    out = killed
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[2] = lines[2][:10] + "#garbage#" + lines[2][10:]
    (out / "metrics.jsonl").write_text("".join(lines))
    with pytest.raises(RftlabError, match=r"metrics.jsonl line 3 is damaged"):
        resume(out)


def test_missing_metrics_or_a_missing_or_repeated_round_is_an_error(killed):
    out = killed
    rows = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    row_2 = next(r for r in rows if '"round": 2, "split": "train_round"' in r)
    (out / "metrics.jsonl").write_text("".join(rows + [row_2]))  # what two racing writers left before locks
    with pytest.raises(RftlabError, match=r"metrics.jsonl has round 2 twice"):
        resume(out)
    (out / "metrics.jsonl").write_text("".join(r for r in rows if r != row_2))
    with pytest.raises(RftlabError, match=r"metrics.jsonl has no row for round 2 \(the checkpoint is at round 3\)"):
        resume(out)
    (out / "metrics.jsonl").unlink()
    with pytest.raises(RftlabError, match=r"metrics.jsonl is missing but the run has a checkpoint"):
        resume(out)


def test_read_metrics_strict_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert read_metrics_strict(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\n[1]\n{"a": 3}\n')
    with pytest.raises(RftlabError, match="line 2"):
        read_metrics_strict(path)


# ----------------------------------------------------------------------------- 8. torn rollouts.jsonl.gz


def test_torn_rollouts_member_is_repaired_on_resume(killed, reference):
    out = killed
    member = gzip.compress(b'{"round": 4, "example_id": "x", "text": "half of a round"}\n')
    with open(out / "rollouts.jsonl.gz", "ab") as f:
        f.write(member[: len(member) // 2])  # what a kill in the middle of the append leaves
    resume(out)
    same_run(reference, out)


def test_read_gzip_lines_keeps_whole_members_and_drops_the_torn_tail(tmp_path):
    path = tmp_path / "r.gz"
    whole = gzip.compress(b'{"round": 1}\n{"round": 2}\n') + gzip.compress(b'{"round": 3}\n')
    path.write_bytes(whole + gzip.compress(b'{"round": 4}\n{"round": 4}\n')[:20])
    assert [json.loads(x)["round"] for x in read_gzip_lines(path)] == [1, 2, 3]
    path.write_bytes(gzip.compress(b'{"round": 1}\nnot json\n{"round": 3}\n'))
    with pytest.raises(RftlabError, match=r"r.gz line 2 is damaged"):
        read_gzip_lines(path)


# ----------------------------------------------------------------------------- 3. non-finite values

# AdamW at lr 10 on +-1 rewards: round 5's gradient norm is NaN (measured: rounds 1-4 stay finite)
EXPLODES = ["optim.lr=10", "objective.reward_design=pm1", "train.rounds=8", "eval.every=0"]


def test_non_finite_round_stops_before_logging_or_checkpointing(tmp_path):
    out = tmp_path / "nan"
    cfg = load_config("tiny", FAST + EXPLODES)
    with pytest.raises(RftlabError, match=r"^round (\d+): non-finite .*last good checkpoint \(round \d+\)") as err:
        trainer.train(cfg, out)
    bad = int(err.value.args[0].split(":")[0].split()[1])
    saved = torch.load(out / "checkpoint" / "trainer.pt", weights_only=False)
    assert saved["state"]["round"] == bad - 1
    assert all(torch.isfinite(t).all() for t in saved["model"].values())
    assert max(r["round"] for r in read_jsonl(out / "metrics.jsonl")) == bad - 1
    with pytest.raises(RftlabError, match=rf"^round {bad}: non-finite"):  # the good checkpoint resumes
        trainer.train(cfg, out, resume=True)


def test_check_finite_names_the_weight_and_accepts_finite_ones():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    trainer.check_finite(3, {"loss/policy": 0.5, "optim/grad_norm": 1.0}, model, 2)
    with torch.no_grad():
        model[0].weight.fill_(3e38)  # finite, though their sum is not: not mistaken for a broken weight
    trainer.check_finite(3, {"loss/policy": 0.5, "optim/grad_norm": 1.0}, model, 2)
    with pytest.raises(RftlabError, match=r"^round 3: non-finite loss/policy \(inf\)"):
        trainer.check_finite(3, {"loss/policy": float("inf")}, model, 2)
    with torch.no_grad():
        model[1].bias[0] = float("nan")
    with pytest.raises(RftlabError, match=r"^round 3: non-finite weights .*\(1.bias\).*checkpoint \(round 2\)"):
        trainer.check_finite(3, {"loss/policy": 0.5, "optim/grad_norm": 1.0}, model, 2)


# ----------------------------------------------------------------------------- 6. no half-made directory


def test_bad_train_example_ids_leave_no_directory(tmp_path):
    with pytest.raises(RftlabError, match="data.train_example_ids: no example with id 'nope'"):
        trainer.train(load_config("tiny", FAST + ["data.train_example_ids=[nope]"]), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_run_refused_before_its_first_round_leaves_a_reusable_directory(tmp_path, monkeypatch):
    def corrupt_cache(*args, **kwargs):  # any refusal after the directory is made (a bad cache, a huge prompt)
        raise RftlabError("difficulty cache is damaged")

    monkeypatch.setattr(trainer, "choose_training_examples", corrupt_cache)
    with pytest.raises(RftlabError, match="difficulty cache"):
        trainer.train(load_config("tiny", FAST), tmp_path / "r")
    assert (tmp_path / "r" / "config.yaml").exists()
    monkeypatch.undo()
    trainer.train(load_config("tiny", FAST + ["train.rounds=1"]), tmp_path / "r")  # no --resume needed
    assert load_config(str(tmp_path / "r" / "config.yaml")).train.rounds == 1


def test_a_directory_with_a_completed_round_still_needs_resume(killed):
    out = killed
    assert RunDir(out).has_completed_round()
    with pytest.raises(RftlabError, match="already holds a run; pass --resume"):
        trainer.train(load_config("tiny", FAST), out)


# ----------------------------------------------------------------------------- metric names of older runs
def test_a_run_written_with_the_old_metric_names_reads_summarizes_and_analyses_the_same(reference, tmp_path):
    """Before issue 10, `policy/entropy`, `optim/grad_norm`, `optim/lr`, `tokens/round` and `tokens/total`
    were written as entropy, grad_norm, lr, tokens and tokens_total; every reader maps them."""
    from rftlab.pipeline import analysis
    from rftlab.report.compare import compare_runs
    from rftlab.runs import RENAMED_METRICS

    old_name = {new: old for old, new in RENAMED_METRICS.items()}
    rows = read_jsonl(reference / "metrics.jsonl")
    train_rows = [r for r in rows if r["split"] == "train_round"]
    assert train_rows and all(set(old_name) <= r.keys() for r in train_rows)  # today's run writes the new names
    assert not any(set(RENAMED_METRICS) & r.keys() for r in rows)
    old = tmp_path / "old"
    shutil.copytree(reference, old)
    (old / "metrics.jsonl").write_text(
        "".join(json.dumps({old_name.get(k, k): v for k, v in r.items()}) + "\n" for r in rows)
    )
    assert "grad_norm" in read_jsonl(old / "metrics.jsonl")[1]  # the copy really is in the old names

    assert RunDir(old).read_metrics() == RunDir(reference).read_metrics() == rows
    cfg = load_config("tiny", FAST)
    state = trainer.RunState(["a"], {"a": None}, torch.zeros(1), torch.zeros(1), tokens_total=7, rollouts_total=3)
    assert trainer.build_summary(cfg, RunDir(old), state, 1.0) == trainer.build_summary(
        cfg, RunDir(reference), state, 1.0
    )
    curve_old, curve_new = analysis.load_run(old, seed=0), analysis.load_run(reference, seed=0)
    for field in ("rounds", "rollouts", "train", "test", "round_rollouts", "round_correct"):
        assert getattr(curve_old, field).tolist() == getattr(curve_new, field).tolist(), field
    table, _ = compare_runs([str(reference), str(old)])
    row_new, row_old = table.splitlines()[2:4]  # header, rule, then one row per run
    assert row_new.split()[1:] == row_old.split()[1:]  # the same row but for the label
