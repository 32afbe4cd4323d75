"""Environments and policies: the pooled K-armed shortcut is the dense algorithm; sequences; correlated arms."""

import itertools

import pytest
import torch

from rftlab.bandit import (
    BanditOptimizer,
    CorrelatedEnv,
    DenseSoftmax,
    KArmedEnv,
    PooledSoftmax,
    Rule,
    SequenceEnv,
    SimConfig,
    policy_update,
    simulate,
)
from rftlab.errors import ConfigError
from rftlab.objectives import get_advantage, shape_reward


@pytest.mark.parametrize("kl_coef", [0.0, 0.05])
@pytest.mark.parametrize("optim", [BanditOptimizer("sgd", lr=0.7), BanditOptimizer("adam", lr=0.1, weight_decay=0.05)])
def test_pooled_equals_dense_update_for_update(kl_coef, optim):
    """Drive both policies with the same dense draws; every arm's logit must agree at every round."""
    arms, m, seeds, rollouts, rounds = 7, 2, 3, 3, 25
    env = KArmedEnv(arms=arms, optimal=m, p0=0.3)
    cfg = SimConfig(
        rounds=rounds,
        rollouts=rollouts,
        advantage="grpo",
        reward_design="pm1",
        updates_per_batch=2,
        clip_eps_low=0.1,
        clip_eps_high=0.1,
        optim=optim,
        kl_coef=kl_coef,
    )
    dense, pooled = DenseSoftmax(env, seeds), PooledSoftmax(env, seeds)
    dense.freeze_reference()
    pooled.freeze_reference()
    gen = torch.Generator().manual_seed(0)
    slot_of = [{} for _ in range(seeds)]
    step_d = step_p = 0
    for _ in range(rounds):
        arms_drawn = dense.sample(gen, rollouts)
        rewards = shape_reward(dense.correct(arms_drawn), cfg.reward_design)
        adv = get_advantage(cfg.advantage)(rewards)
        weighted = torch.ones_like(adv, dtype=torch.bool) if kl_coef else adv != 0
        slots = torch.empty_like(arms_drawn)
        for s, g in itertools.product(range(seeds), range(rollouts)):
            a = int(arms_drawn[s, g])
            pool = 0 if a < m else 1
            if a in slot_of[s]:
                slots[s, g] = slot_of[s][a]
            elif weighted[s, g] and pooled.count[s, pool] > 1:
                slot_of[s][a] = int(pooled.split_rows(torch.tensor([s]), torch.tensor([pool]))[0])
                slots[s, g] = slot_of[s][a]
            else:  # untouched arm: its logit is the pool's (the last arm of a pool is the pool slot)
                if weighted[s, g]:
                    slot_of[s][a] = pool
                slots[s, g] = pool
        assert torch.equal(pooled.correct(slots), dense.correct(arms_drawn))
        step_d = policy_update(dense, arms_drawn, adv, cfg, step_d)
        step_p = policy_update(pooled, slots, adv, cfg, step_p)
        for s in range(seeds):
            zs = pooled.z.detach()
            expect = torch.stack([zs[s, slot_of[s].get(a, 0 if a < m else 1)] for a in range(arms)])
            torch.testing.assert_close(dense.z[s].detach(), expect, rtol=0, atol=1e-9)
        torch.testing.assert_close(pooled.optimal_mass(), dense.optimal_mass(), rtol=0, atol=1e-9)


def test_pooled_sampler_matches_dense_in_distribution():
    """Small pools (many within-round repeats of the same arm): simulated means agree within 4 SE."""
    cfg = SimConfig(rounds=8, rollouts=4, advantage="grpo", reward_design="pm1", optim=BanditOptimizer(lr=0.5))
    seeds = 4000
    a = simulate(KArmedEnv(arms=5, optimal=2, p0=0.3, pooled=True), cfg, seeds, seed=10).metrics["optimal_mass"]
    b = simulate(KArmedEnv(arms=5, optimal=2, p0=0.3, pooled=False), cfg, seeds, seed=11).metrics["optimal_mass"]
    se = torch.sqrt((a.var(-1) + b.var(-1)) / seeds)
    assert torch.all((a.mean(-1) - b.mean(-1)).abs() <= 4 * se + 1e-6)


def test_pooled_minimalist_stays_two_slots_for_huge_k():
    env = KArmedEnv(arms=10**9, p0=0.01)
    res = simulate(env, SimConfig(rounds=50), 100, seed=0)
    assert res.metrics["optimal_mass"][0].mean().item() == pytest.approx(0.01, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs", [{"arms": 1}, {"p0": 0.0}, {"p0": 1.0}, {"p0": -0.5}, {"optimal": 0}, {"arms": 3, "optimal": 3}]
)
def test_karmed_rejects_bad_input(kwargs):
    with pytest.raises(ConfigError):
        KArmedEnv(**kwargs)


def test_bad_sim_config_names_the_option():
    with pytest.raises(ConfigError, match="--advantage"):
        SimConfig(advantage="nope")
    with pytest.raises(ConfigError, match="--reward-design"):
        SimConfig(reward_design="nope")
    with pytest.raises(ConfigError, match="--optimizer"):
        BanditOptimizer("rmsprop")


def test_rules_golden():
    rule = Rule.sum_mod(vocab=16, modulus=8)
    seqs = torch.tensor([[3, 5, 0], [3, 5, 1], [15, 1, 0]])
    env = SequenceEnv(vocab=16, length=3, rule="sum_mod", modulus=8)
    pol = env.make_policy(1)
    assert rule.accept[rule.delta[rule.delta[rule.delta[0, 3], 5], 0]]
    assert pol.correct(seqs[None]).tolist() == [[True, False, True]]
    env = SequenceEnv(vocab=16, length=4, rule="prefix", target_len=2)  # target [1, 4]
    pol = env.make_policy(1)
    assert pol.correct(torch.tensor([[[1, 4, 9, 9], [1, 5, 0, 0], [4, 1, 0, 0]]])).tolist() == [[True, False, False]]


@pytest.mark.parametrize("context", [0, 1, 2])
def test_sequence_logp_is_a_distribution(context):
    env = SequenceEnv(vocab=3, length=3, context=context, rule="sum_mod", modulus=2, init_scale=1.0)
    pol = env.make_policy(2)
    every = torch.tensor(list(itertools.product(range(3), repeat=3)))  # (27, L)
    logp = pol.logp(every[None].expand(2, -1, -1))  # (S, 27, L)
    torch.testing.assert_close(logp.sum(-1).exp().sum(-1), torch.ones(2), rtol=0, atol=1e-5)
    exact = (logp.sum(-1).exp() * pol.correct(every[None].expand(2, -1, -1))).sum(-1)
    torch.testing.assert_close(pol.optimal_mass(), exact, rtol=0, atol=1e-5)


@pytest.mark.parametrize("rule", ["sum_mod", "prefix"])
def test_sequence_optimal_mass_matches_sampling(rule):
    env = SequenceEnv(vocab=6, length=5, context=1, rule=rule, modulus=3, target_len=1, init_scale=1.0)
    pol = env.make_policy(3)
    gen = torch.Generator().manual_seed(0)
    n = 20000
    frac = pol.correct(pol.sample(gen, n)).double().mean(-1)
    mass = pol.optimal_mass().double()
    assert torch.all((frac - mass).abs() <= 4 * torch.sqrt(mass * (1 - mass) / n))


def test_sequence_env_learns():
    env = SequenceEnv(vocab=16, length=10, context=1, rule="prefix", target_len=1)
    res = simulate(env, SimConfig(rounds=60, optim=BanditOptimizer(lr=10.0), eval_every=20), 200, seed=0)
    assert res.mean()[-1] > res.mean()[0] + 0.2


def test_correlated_family_shares_parameters_and_generalizes():
    env = CorrelatedEnv(arms=32, optimal=2, dim=8, train_instances=1, test_instances=16)
    phi, optimal, w = env.family()
    assert phi.shape == (17, 32, 8) and optimal.sum(-1).eq(2).all()
    res = simulate(env, SimConfig(rounds=80), 200, seed=0)
    train, test = res.metrics["optimal_mass"], res.metrics["test_optimal_mass"]
    assert train[0].mean() == pytest.approx(2 / 32, abs=1e-6) and test[0].mean() == pytest.approx(2 / 32, abs=1e-6)
    assert train[-1].mean() > 0.8
    assert test[-1].mean() > test[0].mean() + 0.05  # a shared theta moves held-out instances too


def test_seeds_are_independent_of_each_other():
    """Seed 0's trajectory does not depend on what the other seeds' parameters are doing."""
    env = KArmedEnv(arms=50, optimal=1, p0=0.1, pooled=False)
    cfg = SimConfig(rounds=1, rollouts=2, advantage="rloo", reward_design="pm1")
    pol = DenseSoftmax(env, 3)
    actions = torch.tensor([[0, 1], [2, 3], [0, 0]])
    adv = get_advantage("rloo")(shape_reward(pol.correct(actions), "pm1"))
    policy_update(pol, actions, adv, cfg, 0)
    solo = DenseSoftmax(env, 1)
    policy_update(solo, actions[:1], adv[:1], cfg, 0)
    torch.testing.assert_close(pol.z[:1].detach(), solo.z.detach(), rtol=0, atol=1e-12)


def test_pooled_logp_gradient_matches_autograd():
    env = KArmedEnv(arms=9, optimal=2, p0=0.2)
    pol = PooledSoftmax(env, 4)
    with torch.no_grad():
        pol.split_rows(torch.tensor([0, 1, 3]), torch.tensor([1, 1, 0]))
        pol.z.add_(torch.randn(pol.z.shape, generator=torch.Generator().manual_seed(0), dtype=pol.z.dtype))
    slots = torch.tensor([[0, 2, 1], [1, 1, 2], [0, 0, 1], [2, 1, 0]])
    weights = torch.randn(4, 3, dtype=torch.float64)
    (g_fast,) = torch.autograd.grad((pol.logp(slots).squeeze(-1) * weights).sum(), pol.z)
    u = pol.used
    z = pol.z[:, :u]
    reference = z.gather(1, slots) - torch.logsumexp(z + pol.log_count[:, :u], dim=-1, keepdim=True)
    (g_ref,) = torch.autograd.grad((reference * weights).sum(), pol.z)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_sum_norm"])
@pytest.mark.parametrize(
    "env", [KArmedEnv(arms=20, optimal=2, p0=0.2), SequenceEnv(vocab=4, length=3, rule="sum_mod", modulus=2)]
)
def test_fast_reinforce_path_equals_full_objective(env, aggregation):
    """mu = 1: the ratio-1 shortcut and autograd through clipped_policy_loss give the same run."""
    cfg = SimConfig(
        rounds=15,
        rollouts=3,
        advantage="grpo",
        reward_design="pm1",
        aggregation=aggregation,
        optim=BanditOptimizer("adam", lr=0.1),
    )
    fast = simulate(env, cfg, 50, seed=7)
    full = simulate(env, cfg.with_(fast_reinforce=False), 50, seed=7)
    torch.testing.assert_close(fast.metrics["optimal_mass"], full.metrics["optimal_mass"], rtol=0, atol=1e-6)
