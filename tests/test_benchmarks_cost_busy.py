"""benchmarks/cost_growth.py and benchmarks/busy_machine.py stay runnable: argument checks and their
smallest configuration (1 round, G = 1) end to end in a subprocess, as a user runs them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "benchmarks" / name), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def load_module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cost_growth_refuses_an_unknown_sweep():
    out = run_script("cost_growth.py", "--sweeps", "g,colour")
    assert out.returncode == 2
    assert "unknown sweep(s): colour" in out.stderr


def test_busy_machine_refuses_an_unknown_variant():
    out = run_script("busy_machine.py", "--variants", "old,fastest")
    assert out.returncode == 2
    assert "unknown variant or load: fastest" in out.stderr


def test_flops_count_a_tied_head_once():
    cost = load_module("cost_growth")
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    assert cost.n_params(torch.nn.ModuleList([emb, head])) == 40


@pytest.mark.slow
def test_cost_growth_smallest_configuration_runs(tmp_path):
    out = run_script("cost_growth.py", "--quick", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png"))
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["peak_gflops"] > 0
    (row,) = results["g"]
    assert row["setting"] == "G=1" and row["rounds_timed"] == 1
    assert row["round_s"] >= row["rollout_s"] > 0 and row["update_s"] > 0
    assert 0 < row["mfu_round"] < 1 and 0 < row["mfu_rollout"] < 1
    (ev,) = results["eval"]
    assert ev["rows"] == 2 and ev["response_tokens"] > 0 and 0 < ev["mfu"] <= ev["mfu_executed"] < 1
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "| G=1 |" in out.stdout


@pytest.mark.slow
def test_busy_machine_quick_runs(tmp_path):
    out = run_script("busy_machine.py", "--quick", "--variants", "new,1thread", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["variant"] for r in rows] == ["new", "1thread"]
    assert rows[0]["wait"] == "PASSIVE" and rows[1]["wait"] == "default" and rows[1]["threads"] == 1
    assert all(r["seconds"] > 0 for r in rows)
