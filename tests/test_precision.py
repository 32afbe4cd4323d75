"""Mixed precision: at the paper's lr 1e-6 an AdamW step must move the weights.

The failure this guards against: bfloat16 weights updated in place round away every update smaller
than half a bf16 ulp (about 6e-5 for a weight of 0.02), so a run at lr 1e-6 barely moves. With
float32 master weights and bfloat16 compute (autocast), every entry with a gradient moves.
"""

from __future__ import annotations

import logging

import pytest
import torch

from rftlab import trainer
from rftlab.config import load_config
from rftlab.policy import load_policy


def moved_share_after_one_step(cfg) -> float:
    """Share of parameter entries that change in one policy_update at lr 1e-6 with advantage 1."""
    policy = load_policy(cfg.model.name, dtype=cfg.model.dtype, **_master(cfg))
    optimizer = trainer.build_optimizer(cfg, [p for p in policy.model.parameters() if p.requires_grad])
    problem = trainer.load_task(cfg)[1][0]
    batch = trainer.generate(policy, [policy.prompt_text(problem)], samples_per_prompt=2, max_new_tokens=24, seed=0)
    before = [p.detach().clone() for p in policy.model.parameters()]
    trainer.policy_update(cfg, policy, None, optimizer, batch, torch.ones(len(batch)))
    changed = sum(int((p.detach() != b).sum()) for p, b in zip(policy.model.parameters(), before, strict=True))
    return changed / sum(b.numel() for b in before)


def _master(cfg) -> dict:
    """master_dtype is passed only when it is not the default (main's load_policy had no such argument)."""
    return {} if cfg.model.master_dtype == "float32" else {"master_dtype": cfg.model.master_dtype}


LR_1E6 = ["optim.lr=1e-6", "run.progress=false", "data.test_size=2", "data.difficulty=any"]


def test_bf16_compute_over_float32_master_weights_moves_every_weight():
    cfg = load_config("tiny", LR_1E6 + ["model.dtype=bfloat16"])
    policy = load_policy(cfg.model.name, dtype=cfg.model.dtype)
    assert all(p.dtype == torch.float32 for p in policy.model.parameters())  # master weights
    assert moved_share_after_one_step(cfg) >= 0.99


def test_fp16_compute_scales_the_loss_and_moves_every_weight():
    cfg = load_config("tiny", LR_1E6 + ["model.dtype=float16"])
    assert load_policy(cfg.model.name, dtype="float16").grad_scaler is not None
    assert load_policy(cfg.model.name, dtype="bfloat16").grad_scaler is None  # bf16 has float32's range
    assert moved_share_after_one_step(cfg) >= 0.99


def test_float32_reference_moves_every_weight():
    assert moved_share_after_one_step(load_config("tiny", LR_1E6)) >= 0.99


def test_pure_bf16_training_rounds_updates_away_and_warns(caplog):
    cfg = load_config("tiny", LR_1E6 + ["model.dtype=bfloat16", "model.master_dtype=bfloat16"])
    assert 0.001 < moved_share_after_one_step(cfg) < 0.05  # ~1%: only weights near 0 have an ulp below 1e-6
    from rftlab.policy import lr_resolution_warning

    policy = load_policy(cfg.model.name, dtype="bfloat16", master_dtype="bfloat16")
    message = lr_resolution_warning(policy, cfg.optim.lr)
    assert message is not None and "optim.lr=1e-06" in message and "model.master_dtype=float32" in message
    assert lr_resolution_warning(policy, 1e-3) is None  # above half an ulp of the median weight
    assert lr_resolution_warning(load_policy("tiny", dtype="bfloat16"), 1e-6) is None  # float32 master


def test_the_trainer_logs_the_resolution_warning_once(tmp_path, caplog):
    cfg = load_config(
        "tiny",
        LR_1E6
        + [
            "model.dtype=bfloat16",
            "model.master_dtype=bfloat16",
            "train.rounds=1",
            "eval.every=0",
            "eval.train_samples=1",
            "rollout.max_new_tokens=8",
        ],
    )
    with caplog.at_level(logging.WARNING, logger="rftlab"):
        trainer.train(cfg, tmp_path / "run")
    warnings = [r for r in caplog.records if "resolution" in r.getMessage()]
    assert len(warnings) == 1


def test_compute_more_precise_than_the_stored_weights_is_refused():
    from rftlab.errors import RftlabError

    with pytest.raises(RftlabError, match="model.master_dtype=bfloat16"):
        load_policy("tiny", dtype="float32", master_dtype="bfloat16")


def test_autocast_only_when_compute_differs_from_master():
    mixed = load_policy("tiny", dtype="bfloat16")
    x = torch.randn(2, 4)
    layer = torch.nn.Linear(4, 4)
    with mixed.autocast():
        assert layer(x).dtype == torch.bfloat16
    with load_policy("tiny").autocast():
        assert layer(x).dtype == torch.float32


def test_fp16_run_survives_loss_scale_overflow(tmp_path, monkeypatch):
    """A loss scale that overflows gives an infinite grad norm, and the scaler skips that step and
    halves the scale. The non-finite guard must leave that to the scaler (and still check the loss
    and the weights). The scale starts at 2^60 here so that every round overflows."""

    class HugeScaler(torch.amp.GradScaler):
        def __init__(self, device: str):
            super().__init__(device, init_scale=2.0**60)

    monkeypatch.setattr(torch.amp, "GradScaler", HugeScaler)
    cfg = load_config(
        "tiny",
        LR_1E6
        + [
            "model.dtype=float16",
            "train.rounds=3",
            "eval.every=0",
            "eval.train_samples=2",
            "rollout.rollouts_per_round=2",
            "rollout.max_new_tokens=24",
            "optim.lr=1e-3",
            "objective.reward_design=pm1",
        ],
    )  # every round has a gradient
    summary = trainer.train(cfg, tmp_path / "run")
    assert summary["rounds"] == 3
    rows = [r for r in trainer.RunDir(tmp_path / "run").read_metrics() if r["split"] == "train_round"]
    assert len(rows) == 3
    assert all(r["optim/grad_norm"] is None for r in rows)  # inf, written as null: every step overflowed
