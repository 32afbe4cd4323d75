"""The GPU check stays runnable: its benchmark in tiny mode on CPU, and CUDA tests for a GPU machine.

`scripts/gpu_check.sh` runs `pytest -m gpu` and `benchmarks/gpu_round.py` on a CUDA machine; the
CPU tests here run the same benchmark code on tiny models so it does not rot between GPU loans.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_gpu_round_tiny_mode_on_cpu(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/gpu_round.py"),
            "--device",
            "cpu",
            "--tiny",
            "--rounds",
            "1",
            "--models",
            "llama-3.2-1b-instruct",
            "--out",
            str(tmp_path / "t.md"),
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((tmp_path / "r.json").read_text())
    assert row["model"] == "llama-3.2-1b-instruct" and row["response_tokens"] > 0
    assert row["seconds_per_round"] > 0 and row["rollout_tokens_per_s"] > 0
    assert row["peak_bytes"] > 0 and row["plan_bytes"] > 0
    assert "| llama-3.2-1b-instruct |" in (tmp_path / "t.md").read_text()


@pytest.mark.slow
def test_gpu_check_script_cpu_tiny(tmp_path):
    done = subprocess.run(
        ["bash", str(REPO / "scripts/gpu_check.sh"), "--cpu-tiny"],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**ENV, "OUT": str(tmp_path), "ROUNDS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "gpu_round.md").read_text()
    assert all(
        f"| {m} |" in table for m in ("qwen2.5-1.5b-instruct", "llama-3.2-1b-instruct", "olmo-2-0425-1b-instruct")
    )
    assert "fits in 80 GiB" in (tmp_path / "plan.txt").read_text()


# ----------------------------------------------------------------------------- CUDA only


def _random_qwen2(directory: Path, *, hidden=512, layers=8) -> Path:
    """A random-init Qwen2 (~50M parameters with the tiny tokenizer's ids only) saved to `directory`."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from rftlab.policy import BUILTIN_DIR

    config = Qwen2Config(
        vocab_size=32000,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=0,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny").save_pretrained(directory)
    return directory


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_plan_matches_cuda_peak_memory(tmp_path, dtype):
    """The plan's peak (less the CUDA context, which max_memory_allocated does not see) within 25%."""
    import torch

    from rftlab.config import load_config
    from rftlab.plan import CUDA_CONTEXT_BYTES, plan_for_config
    from rftlab.trainer import train

    model = _random_qwen2(tmp_path / "m")
    cfg = load_config(
        "tiny",
        [
            f"model.name={model}",
            "model.device=cuda",
            f"model.dtype={dtype}",
            "data.difficulty=any",
            "data.test_size=8",
            "eval.train_samples=4",
            "eval.every=0",
            "rollout.rollouts_per_round=8",
            "rollout.max_new_tokens=256",
            "train.rounds=2",
            "objective.kl_coef=0.001",
            "run.progress=false",
        ],
    )
    _, plan = plan_for_config(cfg, device="cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    train(cfg, tmp_path / "run")
    measured = torch.cuda.max_memory_allocated()
    expected = plan.peak_bytes - CUDA_CONTEXT_BYTES
    assert abs(expected - measured) / measured < 0.25, (expected, measured, plan.phases)


@pytest.mark.gpu
def test_bf16_compute_step_moves_weights_on_cuda(tmp_path):
    """bf16 compute at the paper's lr 1e-6 moves about as many weights as float32 (master weights float32)."""

    from rftlab.config import load_config
    from rftlab.policy import load_policy
    from rftlab.runs import RunDir
    from rftlab.trainer import train

    moved = {}
    for dtype in ("float32", "bfloat16"):
        cfg = load_config(
            "tiny",
            [
                "model.device=cuda",
                f"model.dtype={dtype}",
                "optim.lr=1e-6",
                "train.rounds=1",
                "data.difficulty=any",
                "data.test_size=4",
                "eval.train_samples=2",
                "run.progress=false",
            ],
        )
        before = load_policy("tiny", device="cpu").model.state_dict()
        train(cfg, tmp_path / dtype)
        state = RunDir(tmp_path / dtype).load_checkpoint()["model"]
        changed = sum(int((state[k].float().cpu() != v.float()).sum()) for k, v in before.items() if k in state)
        moved[dtype] = changed / sum(v.numel() for k, v in before.items() if k in state)
    assert moved["float32"] > 0.9
    assert moved["bfloat16"] > 0.5 * moved["float32"], moved
