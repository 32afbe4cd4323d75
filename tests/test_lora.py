"""LoRA through the whole trainer: only the adapter trains and is checkpointed, KL uses the disabled
adapter as the reference, a killed LoRA run resumes to the uninterrupted result, sweeps pass it through."""

from __future__ import annotations

import pytest
import torch
from killed_runs import deterministic, train_killed_in_update

from rftlab import trainer
from rftlab.config import load_config
from rftlab.runs import read_jsonl

FAST = [
    "train.rounds=4",
    "eval.every=2",
    "eval.train_samples=4",
    "data.test_size=6",
    "data.difficulty=any",
    "run.checkpoint_every=2",
    "run.progress=false",
    "rollout.max_new_tokens=48",
    "model.lora_rank=4",
    "objective.kl_coef=0.05",
    "rollout.rollouts_per_round=2",
    "optim.lr=1e-3",
]


def one_update(cfg):
    """A LoRA policy before and after one policy_update with advantage 1 (KL on, no reference copy)."""
    policy = trainer.load_policy_for(cfg.model)
    assert policy.is_lora and trainer.build_reference(cfg, policy) is None
    optimizer = trainer.build_optimizer(cfg, policy.trainable_parameters())
    batch = trainer.generate(
        policy, [policy.prompt_text(trainer.load_task(cfg)[1][0])], samples_per_prompt=2, max_new_tokens=16, seed=0
    )
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    metrics = trainer.policy_update(cfg, policy, None, optimizer, batch, torch.ones(len(batch)))
    return policy, before, metrics


def test_lora_update_moves_the_adapter_and_leaves_the_base_weights_untouched():
    cfg = load_config("tiny", FAST)
    policy, before, metrics = one_update(cfg)
    after = dict(policy.model.named_parameters())
    adapter = [n for n in after if "lora_" in n]
    assert adapter and all(after[n].requires_grad for n in adapter)
    assert all(not after[n].requires_grad for n in after if "lora_" not in n)
    assert all(torch.equal(before[n], after[n]) for n in after if "lora_" not in n)
    assert all(not torch.equal(before[n], after[n]) for n in adapter if "lora_B" in n)
    assert metrics["loss/kl"] == pytest.approx(0.0, abs=1e-7)  # B = 0 at start: policy == its base
    assert set(policy.trainable_state_dict()) == set(adapter)
    # the base weights under their own names: the same fingerprint as the plain model (shared cache)
    from rftlab.selection import model_fingerprint

    assert model_fingerprint(policy) == model_fingerprint(trainer.load_policy("tiny"))


def test_lora_reference_is_the_base_model():
    cfg = load_config("tiny", FAST)
    policy, _, _ = one_update(cfg)
    base = trainer.load_policy("tiny")
    batch = trainer.generate(base, [base.prompt_text(trainer.load_task(cfg)[1][1])], max_new_tokens=12, seed=1)
    args = [batch.prompt_ids, batch.prompt_mask, batch.response_ids]
    chunks = [slice(0, len(batch))]
    ref = trainer.reference_logp(cfg, policy, None, args, batch.response_mask, chunks)
    want = trainer.response_logp(base, *args, batch.response_mask)[0]
    moved = trainer.response_logp(policy, *args, batch.response_mask)[0]
    assert torch.allclose(ref, want, atol=1e-6)
    assert not torch.allclose(moved, want, atol=1e-4)  # the adapter itself did change the policy


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "whole"
    trainer.train(load_config("tiny", FAST), out)
    return out


def test_lora_checkpoint_holds_only_the_adapter(lora_run):
    saved = torch.load(lora_run / "checkpoint" / "trainer.pt", weights_only=False)
    assert saved["model"] and all("lora_" in k for k in saved["model"])
    n_adapter = sum(v.numel() for v in saved["model"].values())
    n_base = sum(p.numel() for p in trainer.load_policy("tiny").model.parameters())
    assert n_adapter < 0.1 * n_base
    rows = [r for r in read_jsonl(lora_run / "metrics.jsonl") if r["split"] == "train_round"]
    assert rows[0]["loss/kl"] == pytest.approx(0.0, abs=1e-7) and rows[-1]["loss/kl"] > 0


def test_killed_lora_run_resumes_to_the_same_result(tmp_path, lora_run):
    cfg = load_config("tiny", FAST)
    train_killed_in_update(cfg, tmp_path / "killed")
    trainer.train(cfg, tmp_path / "killed", resume=True)

    assert deterministic(read_jsonl(lora_run / "metrics.jsonl")) == deterministic(
        read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    )
    w1 = torch.load(lora_run / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    w2 = torch.load(tmp_path / "killed" / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)


def test_unknown_lora_target_module_is_one_line_error():
    from rftlab.errors import RftlabError

    cfg = load_config("tiny", FAST + ["model.lora_target_modules=[no_such_proj]"])
    with pytest.raises(RftlabError, match="model.lora_target_modules"):
        trainer.load_policy_for(cfg.model)


def test_a_sweep_variant_with_lora_validates_and_keeps_its_values(tmp_path):
    from rftlab.commands.pipeline import run_pipeline
    from rftlab.pipeline.spec import plan, spec_from_dict

    spec = {
        "name": "t",
        "base": "tiny",
        "seeds": 2,
        "overrides": {"train.rounds": 2},
        "layers": [
            {
                "name": "L",
                "finding": "f",
                "variants": {
                    "full": {},
                    "lora": {
                        "model.lora_rank": 8,
                        "model.lora_alpha": 32,
                        "model.lora_target_modules": ["q_proj", "v_proj"],
                    },
                },
            }
        ],
    }
    runs = plan(spec_from_dict(spec))
    lora = [r for r in runs if r.variant == "lora"]
    assert len(lora) == 2 and all(r.config["model"]["lora_rank"] == 8 for r in lora)
    assert lora[0].config["model"]["lora_target_modules"] == ["q_proj", "v_proj"]
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_pipeline(str(path), tmp_path / "out", dry_run=True, progress=False, report=False)
    assert result["runs"] == 4
