"""The round loop on the built-in tiny model: smoke, determinism, resume equivalence, mu > 1, KL."""

from __future__ import annotations

import json
import math

import pytest
import torch
from killed_runs import deterministic, train_killed_in_update

from rftlab import trainer
from rftlab.config import load_config
from rftlab.runs import read_jsonl

# Small and fast: few rounds, small evaluations; difficulty "any" skips the Pass@1 estimate of a pool.
FAST = [
    "train.rounds=4",
    "eval.every=2",
    "eval.train_samples=4",
    "data.test_size=6",
    "data.difficulty=any",
    "run.checkpoint_every=2",
    "run.progress=false",
    "rollout.max_new_tokens=96",
]


def run(tmp_path, name, extra=(), **kw):
    cfg = load_config("tiny", FAST + list(extra))
    out = tmp_path / name
    summary = trainer.train(cfg, out, **kw)
    return out, summary


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted run that several tests compare against (runs are the slow part)."""
    return run(tmp_path_factory.mktemp("reference"), "a")


def test_smoke_run_writes_a_well_formed_run_directory(reference_run):
    out, summary = reference_run
    for name in ["config.yaml", "metrics.jsonl", "summary.json", "rollouts.jsonl.gz", "pass_at_1.png"]:
        assert (out / name).is_file(), name
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows if r["split"] == "train_round"] == [1, 2, 3, 4]
    assert [r["round"] for r in rows if r["split"] == "eval"] == [0, 2, 4]
    for r in rows:
        if r["split"] == "eval":
            assert 0 <= r["train/pass_at_1_low"] <= r["train/pass_at_1"] <= r["train/pass_at_1_high"] <= 1
            assert 0 <= r["test/pass_at_1"] <= 1
        else:
            assert r["reward/mean"] in (0.0, 1.0)
            assert r["ratio/max"] == pytest.approx(1.0, abs=1e-4)  # mu = 1: the ratio is 1 at the update
            assert r["clip/frac"] == 0.0
            assert r["tokens/round"] >= 1 and r["rollouts_total"] == r["round"]
    assert summary == json.loads((out / "summary.json").read_text())
    for key in ["train_pass_at_1", "test_pass_at_1"]:
        assert 0 <= summary["base"][key] <= 1 and 0 <= summary["final"][key] <= 1
    assert summary["rounds"] == 4 and summary["wall_seconds"] > 0

    # the parameters moved (AdamW steps every round: weight decay moves them even with reward 0)
    initial = trainer.load_policy("tiny").model.state_dict()
    final = torch.load(out / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    assert any(not torch.equal(initial[k], final[k]) for k in initial)


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path, reference_run):
    a, _ = reference_run
    b, _ = run(tmp_path, "b")
    c, _ = run(tmp_path, "c", ["seed=1"])
    rows_a, rows_b = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    assert deterministic(rows_a) == deterministic(rows_b)
    assert deterministic(rows_a) != deterministic(read_jsonl(c / "metrics.jsonl"))


def test_killed_run_resumes_to_the_same_result(tmp_path, reference_run):
    whole, _ = reference_run  # 4 rounds, checkpoints at rounds 2 and 4

    cfg = load_config("tiny", FAST)
    train_killed_in_update(cfg, tmp_path / "killed")
    assert max(r["round"] for r in read_jsonl(tmp_path / "killed" / "metrics.jsonl")) == 3
    trainer.train(cfg, tmp_path / "killed", resume=True)

    assert deterministic(read_jsonl(whole / "metrics.jsonl")) == deterministic(
        read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    )
    w1 = torch.load(whole / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    w2 = torch.load(tmp_path / "killed" / "checkpoint" / "trainer.pt", weights_only=False)["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_existing_run_directory_needs_resume_and_same_config(tmp_path):
    from rftlab.errors import RftlabError

    cfg = load_config("tiny", FAST + ["train.rounds=1"])
    trainer.train(cfg, tmp_path / "r")
    with pytest.raises(RftlabError, match="--resume"):
        trainer.train(cfg, tmp_path / "r")
    other = load_config("tiny", FAST + ["train.rounds=1", "optim.lr=0.5"])
    with pytest.raises(RftlabError, match=f"optim.lr was {cfg.optim.lr!r}, now 0.5"):
        trainer.train(other, tmp_path / "r", resume=True)


def test_several_updates_per_batch_make_the_ratio_move_and_clip(tmp_path):
    out, _ = run(
        tmp_path,
        "mu",
        [
            "train.rounds=3",
            "objective.updates_per_batch=4",
            "optim.lr=3e-3",
            "objective.reward_design=pm1",
            "eval.every=0",
        ],
    )
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train_round"]
    # reward +-1 is never 0, so every update has signal; by the 4th update the weights have moved
    assert all(abs(r["ratio/max"] - 1) > 1e-3 or abs(r["ratio/min"] - 1) > 1e-3 for r in rows)
    assert any(r["clip/frac_last"] > 0 for r in rows)


def test_kl_to_reference_and_group_advantages(tmp_path):
    out, _ = run(
        tmp_path,
        "kl",
        [
            "train.rounds=2",
            "objective.kl_coef=0.1",
            "rollout.rollouts_per_round=3",
            "objective.advantage=grpo",
            "eval.every=0",
            "optim.lr=1e-3",
        ],
    )
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train_round"]
    assert rows[0]["loss/kl"] == pytest.approx(0.0, abs=1e-6)  # round 1: the policy is the reference
    assert rows[1]["loss/kl"] > 0  # after one step the policy has left the reference
    assert all(r["rollouts_total"] == 3 * r["round"] for r in rows)
    assert all(abs(r["adv/mean"]) < 1e-5 for r in rows)  # GRPO advantages have zero group mean


def test_lean_engine_and_sorted_evaluation_run_through_the_trainer(tmp_path):
    out, _ = run(
        tmp_path,
        "lean",
        [
            "train.rounds=2",
            "rollout.engine=lean",
            "rollout.rollouts_per_round=3",
            "eval.sort_by_length=true",
            "eval.batch_size=4",
        ],
    )
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows if r["split"] == "train_round"] == [1, 2]
    assert all(r["tokens/round"] >= 3 for r in rows if r["split"] == "train_round")
    assert all(0 <= r["test/pass_at_1"] <= 1 for r in rows if r["split"] == "eval")


@pytest.mark.parametrize("step_on_zero_signal", [True, False])
def test_a_round_without_signal_steps_only_when_configured(step_on_zero_signal):
    """verl steps on an all-zero-advantage batch (weight decay and momentum still move); the knob skips it."""
    cfg = load_config("tiny", FAST + [f"optim.step_on_zero_signal={str(step_on_zero_signal).lower()}"])
    policy = trainer.load_policy("tiny")
    optimizer = trainer.build_optimizer(cfg, policy.model.parameters())
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    batch = trainer.generate(policy, [policy.prompt_text(trainer.load_task(cfg)[1][0])], max_new_tokens=16, seed=0)
    metrics = trainer.policy_update(cfg, policy, None, optimizer, batch, torch.zeros(1))
    moved = any(not torch.equal(before[k], v) for k, v in policy.model.state_dict().items())
    assert moved is step_on_zero_signal
    assert metrics["train/stepped"] == float(step_on_zero_signal)
    assert metrics["optim/grad_norm"] == 0.0


@pytest.mark.parametrize("aggregation", sorted(trainer.objectives.LOSS_AGGREGATIONS))
def test_micro_batches_give_the_whole_batch_update(aggregation):
    """train.micro_batch_size splits the backward only: same weights and metrics as the whole batch.

    Two updates per batch with a small clip range, so the second update's ratios move and clip: the
    logged clip fraction is a token fraction and must not depend on how the batch was split.
    """
    update = FAST + [
        f"objective.aggregation={aggregation}",
        "objective.updates_per_batch=2",
        "objective.clip_eps_low=0.01",
        "objective.clip_eps_high=0.01",
        "optim.optimizer=sgd",
        "optim.beta1=0",
        "optim.weight_decay=0",
        "optim.grad_clip=0",
        "optim.lr=0.5",
    ]
    cfg = load_config("tiny", update)
    base = trainer.load_policy("tiny")
    prompts = [base.prompt_text(p) for p in trainer.load_task(cfg)[1][:2]]
    batch = trainer.generate(base, prompts * 2, max_new_tokens=24, seed=3)
    assert len(set(batch.response_mask.sum(-1).tolist())) > 1  # unequal lengths: shares differ
    adv = torch.tensor([1.0, -0.5, 0.75, -1.0])
    results = []
    for micro in (0, 1, 3):
        policy = trainer.load_policy("tiny")
        c = load_config("tiny", update + [f"train.micro_batch_size={micro}"])
        optimizer = trainer.build_optimizer(c, policy.model.parameters())
        metrics = trainer.policy_update(c, policy, None, optimizer, batch, adv)
        results.append((metrics, {k: v.clone() for k, v in policy.model.state_dict().items()}))
    (whole, w_whole), *parts = results
    assert whole["clip/frac_last"] > 0  # the second update clips: the weighting is exercised
    for metrics, weights in parts:
        for key in (
            "loss/policy",
            "clip/frac",
            "clip/frac_last",
            "clip/frac_dual",
            "policy/entropy",
            "optim/grad_norm",
        ):
            assert metrics[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-6), key
        for k, v in weights.items():
            torch.testing.assert_close(v, w_whole[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kl", [False, True])
def test_shared_prompt_gives_the_per_row_update(kl):
    """train.shared_prompt (one forward per distinct prompt, responses packed) against the per-row
    forward on the same batch: two prompts interleaved, unequal lengths, two updates (the second one's
    ratios move), KL to a reference copy: metrics and weights equal to float32 rounding."""
    update = FAST + [
        "objective.updates_per_batch=2",
        "objective.clip_eps_low=0.05",
        "objective.clip_eps_high=0.05",
        f"objective.kl_coef={0.1 if kl else 0}",
        # plain SGD: Adam's m / sqrt(v) turns float rounding of near-zero gradients into lr-sized steps
        "optim.optimizer=sgd",
        "optim.beta1=0",
        "optim.weight_decay=0",
        "optim.grad_clip=0",
        "optim.lr=0.5",
    ]
    base = trainer.load_policy("tiny")
    cfg = load_config("tiny", update)
    prompts = [base.prompt_text(p) for p in trainer.load_task(cfg)[1][:2]]
    batch = trainer.generate(base, prompts * 3, max_new_tokens=24, seed=4)  # rows p0 p1 p0 p1 p0 p1
    assert len(set(batch.response_mask.sum(-1).tolist())) > 1
    adv = torch.tensor([1.0, -0.5, 0.75, -1.0, 0.25, 0.5])
    results = []
    for shared in (False, True):
        c = load_config("tiny", update + [f"train.shared_prompt={str(shared).lower()}"])
        policy = trainer.load_policy("tiny")
        reference = trainer.build_reference(c, policy)
        optimizer = trainer.build_optimizer(c, policy.model.parameters())
        metrics = trainer.policy_update(c, policy, reference, optimizer, batch, adv)
        results.append((metrics, {k: v.clone() for k, v in policy.model.state_dict().items()}))
    (plain, w_plain), (shared, w_shared) = results
    assert plain["ratio/max"] > 1.001 or plain["ratio/min"] < 0.999  # the second update's ratios moved
    keys = ["loss/policy", "policy/entropy", "optim/grad_norm", "ratio/max", "ratio/min"] + (["loss/kl"] if kl else [])
    for key in keys:
        assert shared[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-6), key
    for k, v in w_shared.items():
        torch.testing.assert_close(v, w_plain[k], rtol=1e-4, atol=1e-6)


def test_run_state_reads_the_checkpoint_state_dict_of_earlier_versions():
    """A checkpoint's state is a plain dict (as before RunState); extra keys (RNG, loss scale) are not state."""
    old = {
        "round": 4,
        "train_example_ids": ["a"],
        "train_example_base_estimate": {"a": None},
        "baseline": torch.zeros(1),
        "baseline_count": torch.ones(1),
        "rollouts_total": 4,
        "tokens_total": 96,
        "wall_seconds": 1.5,
        "base": {"test/pass_at_1": 0.1},
        "torch_rng": torch.get_rng_state(),
    }
    state = trainer.RunState.from_dict(old)
    assert state.round == 4 and state.last_eval is None and state.base == {"test/pass_at_1": 0.1}
    again = state.to_dict()
    assert set(again) == set(old) - {"torch_rng"}  # no last_eval key until an evaluation after round 0
    state.last_eval = {"test/pass_at_1": 0.2}
    assert trainer.RunState.from_dict(state.to_dict()) == state


def test_the_run_figure_title_names_the_variant():
    from pathlib import Path

    cfg = load_config("tiny", ["seed=3", "objective.advantage=grpo", "rollout.rollouts_per_round=4"])
    title = trainer.plot_title(cfg, Path("runs/paper/runs/L1-advantage__grpo__ab12cd__seed3"))
    first, second = title.split("\n")
    assert first == "L1-advantage__grpo__ab12cd__seed3"  # a sweep's run directory names layer and variant
    assert "advantage grpo" in second and "G=4" in second and "seed 3" in second and cfg.model.name in second


# ----------------------------------------------------------------------------- adaptive designs


def _ema_advantages(rows: list[dict], step: float) -> list[float]:
    """adv/mean of running_mean at G = 1 from the logged rewards alone: A_t = R_t - b_{t-1}, b_t = b + step (R_t - b)."""
    baseline, out = 0.0, []
    for r in rows:
        out.append(r["reward/mean"] - baseline)
        baseline += step * (r["reward/mean"] - baseline)
    return out


def test_killed_running_mean_run_resumes_with_its_baseline(tmp_path):
    """The running baseline is state across rounds: a run killed after its round-2 checkpoint resumes with the
    baseline of that checkpoint, to the same metrics and weights as the uninterrupted run."""
    extra = ["objective.advantage=running_mean", "objective.baseline_step=0.5"]
    whole, _ = run(tmp_path, "whole", extra)
    rows = [r for r in read_jsonl(whole / "metrics.jsonl") if r["split"] == "train_round"]
    assert [r["adv/mean"] for r in rows] == pytest.approx(_ema_advantages(rows, 0.5), abs=1e-6)
    # the test can only catch a lost baseline if the baseline is nonzero when the run resumes (round 3)
    assert any(r["adv/mean"] != r["reward/mean"] for r in rows[2:]), "no reward before round 3: pick another seed"

    cfg = load_config("tiny", FAST + extra)
    train_killed_in_update(cfg, tmp_path / "killed")
    trainer.train(cfg, tmp_path / "killed", resume=True)
    assert deterministic(read_jsonl(whole / "metrics.jsonl")) == deterministic(
        read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    )
    w1 = torch.load(whole / "checkpoint" / "trainer.pt", weights_only=False)
    w2 = torch.load(tmp_path / "killed" / "checkpoint" / "trainer.pt", weights_only=False)
    assert all(torch.equal(w1["model"][k], w2["model"][k]) for k in w1["model"])
    assert torch.equal(w1["state"]["baseline"], w2["state"]["baseline"])


@pytest.mark.parametrize(
    "extra,advantage_of_correct_share",
    [
        # W-REINFORCE, lambda 0.3: a group with correct share c has mean advantage 0.3 c - (1 - c)
        (["objective.advantage=w_reinforce", "objective.positive_weight=0.3"], lambda c: 0.3 * c - (1 - c)),
        # GRPO-LEAD at G = 2: see below
        (["objective.advantage=grpo_lead"], None),
    ],
)
def test_adaptive_designs_train_through_the_trainer(tmp_path, extra, advantage_of_correct_share):
    out, _ = run(tmp_path, "a", extra + ["train.rounds=3", "eval.every=0", "rollout.rollouts_per_round=2"])
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train_round"]
    assert len(rows) == 3
    if advantage_of_correct_share is None:  # the golden case below needs a mixed group (seed 0: round 3)
        assert any(0 < r["correct/mean"] < 1 for r in rows)
    for r in rows:
        c = r["correct/mean"]
        if advantage_of_correct_share is not None:
            assert r["adv/mean"] == pytest.approx(advantage_of_correct_share(c), abs=1e-6)
        elif c in (0.0, 1.0):
            assert r["adv/zero_frac"] == 1.0  # an all-equal group carries no signal
        else:  # [1, 0]: mean 1/2, sample std sqrt(1/2), grpo A = +-(1/2) / sqrt(1/2) = +-sqrt(1/2); rho = 1/2,
            # so both signs weigh w(1/2) = 0.4 + 1.1 / (1 + exp(10 (1/2 - 3/4)))
            w_half = 0.4 + 1.1 / (1 + math.exp(10 * (0.5 - 0.75)))
            assert r["adv/abs_mean"] == pytest.approx(math.sqrt(0.5) * w_half, rel=1e-4)
