"""Provenance: versions, git commit, machine, command and times, in summary.json and checkpoint manifests."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy
import pytest
import torch
import transformers

import rftlab
from rftlab import provenance, trainer
from rftlab.config import load_config

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_collect_records_versions_machine_command_and_times():
    record = provenance.collect(started_at="2026-01-02T03:04:05Z", argv=["rftlab", "run", "a b"])
    assert set(record) == {"versions", "python", "git", "machine", "command", "started_at", "ended_at"}
    versions = record["versions"]
    assert versions["torch"] == torch.__version__
    assert versions["transformers"] == transformers.__version__ and versions["numpy"] == numpy.__version__
    assert versions["rftlab"] == rftlab.__version__
    assert versions["peft"] and versions["math-verify"]
    assert record["python"] == platform.python_version()
    m = record["machine"]
    assert m["cores"] == os.cpu_count() and 1 <= m["cores_usable"] <= m["cores"]
    assert m["cpu"] and m["platform"] and isinstance(m["gpus"], list)
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    assert m["gpus"] == gpus
    assert record["command"] == "rftlab run 'a b'"  # shell-quoted, so it can be pasted back
    assert record["started_at"] == "2026-01-02T03:04:05Z" and record["ended_at"] is None
    datetime.strptime(provenance.now(), "%Y-%m-%dT%H:%M:%SZ")


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@needs_git
def test_git_state_names_the_checkout_only_when_it_tracks_the_package(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / ".gitignore").write_text(".venv/\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=repo)
    source = str(repo / "pkg" / "__init__.py")
    state = provenance.git_state(source)
    assert state["commit"] == _git("rev-parse", "HEAD", cwd=repo) and state["dirty"] is False
    (repo / "pkg" / "__init__.py").write_text("x = 1\n")
    provenance.git_state.cache_clear()
    assert provenance.git_state(source)["dirty"] is True
    # a wheel installed into a virtual environment inside the checkout: the checkout is not its source
    wheel = repo / ".venv" / "site-packages" / "pkg"
    wheel.mkdir(parents=True)
    (wheel / "__init__.py").write_text("")
    assert provenance.git_state(str(wheel / "__init__.py")) is None
    outside = tmp_path / "site-packages" / "pkg"  # no repository above it at all
    outside.mkdir(parents=True)
    (outside / "__init__.py").write_text("")
    assert provenance.git_state(str(outside / "__init__.py")) is None
    provenance.git_state.cache_clear()


def test_a_runs_summary_and_checkpoint_record_provenance(tmp_path):
    cfg = load_config(
        "tiny",
        [
            "train.rounds=1",
            "eval.every=0",
            "eval.train_samples=2",
            "data.test_size=2",
            "data.difficulty=any",
            "run.progress=false",
            "run.threads=1",
            "rollout.max_new_tokens=8",
        ],
    )
    before = provenance.now()
    trainer.train(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    record = summary["provenance"]
    assert record["versions"]["torch"] == torch.__version__
    assert before <= record["started_at"] <= record["ended_at"] <= provenance.now()  # ISO strings sort by time
    assert record["resumed"] is False
    checkout = Path(rftlab.__file__).resolve().parents[2]
    if shutil.which("git") and (checkout / ".git").exists():  # an editable install of this checkout
        assert record["git"]["commit"] == _git("rev-parse", "HEAD", cwd=checkout)
    manifest = json.loads((tmp_path / "run" / "checkpoint" / "manifest.json").read_text())
    assert manifest["provenance"]["versions"] == record["versions"]
    assert manifest["provenance"]["started_at"] == record["started_at"]
