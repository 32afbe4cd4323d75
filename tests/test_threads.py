"""The thread policy (rftlab.threads): threads from config, environment and cores; the OpenMP wait
policy set before torch is imported in the CLI path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from rftlab import threads
from rftlab.config import load_config
from rftlab.threads import WAIT_ENV, choose_threads
from rftlab.trainer import use_threads

PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def test_run_threads_wins_over_environment():
    p = choose_threads(cores=2, requested=3, env={"OMP_NUM_THREADS": "1"})
    assert p.threads == 3
    assert p.reason == "run.threads"
    assert p.env == {**PASSIVE, "OMP_NUM_THREADS": "3"}


def test_omp_num_threads_wins_over_the_cores_when_run_threads_is_0():
    p = choose_threads(cores=2, requested=0, env={"OMP_NUM_THREADS": "1"})
    assert (p.threads, p.reason) == (1, "OMP_NUM_THREADS")
    assert p.env == PASSIVE  # OMP_NUM_THREADS already says 1


@pytest.mark.parametrize(("cores", "threads"), [(2, 2), (16, 16), (1, 1), (0, 1)])
def test_every_available_core_when_nothing_is_set(cores, threads):
    p = choose_threads(cores=cores, requested=0, env={})
    assert p.threads == threads
    assert p.env == {**PASSIVE, "OMP_NUM_THREADS": str(threads)}


@pytest.mark.parametrize("value", ["", "0", "abc", "-2", "1.5"])
def test_a_meaningless_omp_num_threads_is_ignored(value):
    p = choose_threads(cores=2, requested=0, env={"OMP_NUM_THREADS": value})
    assert p.threads == 2


@pytest.mark.parametrize("key", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"])
def test_a_wait_setting_of_the_user_is_left_alone(key):
    p = choose_threads(cores=2, requested=0, env={key: "ACTIVE"})
    assert not set(p.env) & set(WAIT_ENV)


def test_set_wait_policy_adds_only_what_is_missing():
    env = {"PATH": "/bin"}
    assert threads.set_wait_policy(env) == PASSIVE
    assert env == {"PATH": "/bin", **PASSIVE}
    assert threads.set_wait_policy(env) == {}


def test_use_threads_applies_the_policy(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert use_threads(load_config("tiny", ["run.threads=2"])) == 2
        assert torch.get_num_threads() == 2
        assert use_threads(load_config("tiny")) == 1
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(threads, "available_cores", lambda: 2)
        assert use_threads(load_config("tiny")) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# Records the wait variables at the moment `import torch` starts, then imports the CLI module.
SPY = """
import json, os, sys
seen = {}
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")})
        return None
sys.meta_path.insert(0, Spy())
import rftlab.cli
assert "torch" in sys.modules, "the CLI module no longer imports torch: this check sees nothing"
print(json.dumps(seen))
"""


def spy_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def test_cli_sets_the_wait_policy_before_torch_is_imported():
    out = subprocess.run([sys.executable, "-c", SPY], capture_output=True, text=True, env=spy_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == PASSIVE


def test_cli_keeps_the_users_wait_policy():
    out = subprocess.run(
        [sys.executable, "-c", SPY], capture_output=True, text=True, env=spy_env(OMP_WAIT_POLICY="ACTIVE"), timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"OMP_WAIT_POLICY": "ACTIVE", "KMP_BLOCKTIME": None}
