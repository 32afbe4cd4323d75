"""Simulated means over >= 1000 seeds against theory, within mean +- 4 standard errors (+ known model error)."""

import math

import pytest
import torch

from rftlab.bandit import BanditOptimizer, KArmedEnv, SimConfig, simulate
from rftlab.bandit import pipeline as bandit_pipeline
from rftlab.bandit.envs import optimal_logit
from rftlab.bandit.theory import (
    expected_logit_update,
    expected_next_mass,
    failure_probability,
    mean_field_drift,
    mean_field_trajectory,
    minimalist_exact,
)

FLOAT_TOL = 1e-6  # metrics are stored in float32


@pytest.mark.parametrize("arms,p0,lr,rounds", [(1000, 0.05, 1.0, 150), (1_000_000, 0.02, 2.0, 150)])
def test_minimalist_trajectory_matches_exact_law(arms, p0, lr, rounds):
    seeds = 2000
    res = simulate(KArmedEnv(arms=arms, p0=p0), SimConfig(rounds=rounds, optim=BanditOptimizer(lr=lr)), seeds, seed=1)
    exact = minimalist_exact(arms, p0, lr, rounds)
    sim = res.mean().double()
    se = exact["std"] / math.sqrt(seeds)
    assert torch.all((sim - exact["mean"]).abs() <= 4 * se + FLOAT_TOL), (sim - exact["mean"]).abs().max()
    # the spread across seeds matches too (loose: 10% relative where it is not tiny)
    big = exact["std"] > 0.05
    assert torch.allclose(res.std().double()[big], exact["std"][big], rtol=0.1)


def test_mean_field_ode_tracks_the_mean_for_small_steps():
    arms, p0, lr, rounds, seeds = 10, 0.3, 0.05, 300, 2000
    exact = minimalist_exact(arms, p0, lr, rounds)
    ode = mean_field_trajectory(p0, arms, lr, rounds)
    model_error = float((ode - exact["mean"]).abs().max())
    assert model_error < 0.005  # first order in lr: measured 0.002 at lr = 0.05
    res = simulate(KArmedEnv(arms=arms, p0=p0), SimConfig(rounds=rounds, optim=BanditOptimizer(lr=lr)), seeds, seed=2)
    se = exact["std"] / math.sqrt(seeds)
    assert torch.all((res.mean().double() - ode).abs() <= 4 * se + model_error + FLOAT_TOL)


@pytest.mark.parametrize(
    "advantage,rollouts,optim",
    [
        ("none", 1, BanditOptimizer()),
        ("grpo", 4, BanditOptimizer()),
        ("running_mean", 1, BanditOptimizer("adam", lr=0.1)),
    ],
)
def test_failure_probability_small_p0(advantage, rollouts, optim):
    p0, rounds, seeds = 0.005, 80 // rollouts, 4000
    cfg = SimConfig(rounds=rounds, rollouts=rollouts, advantage=advantage, optim=optim)
    res = simulate(KArmedEnv(arms=100_000, p0=p0), cfg, seeds, seed=3)
    never = (res.metrics["successes"][-1] == 0).double().mean().item()
    pred = failure_probability(p0, rounds, rollouts)
    assert abs(never - pred) <= 4 * math.sqrt(pred * (1 - pred) / seeds)


def test_failure_probability_with_weight_decay():
    """AdamW's decay moves p_t with zero gradients: 1/K = 0.01 > p0 pulls p up, failure drops."""
    arms, p0, rounds, seeds, lr, wd = 100, 0.002, 200, 4000, 0.1, 1.0
    cfg = SimConfig(rounds=rounds, optim=BanditOptimizer("adam", lr=lr, weight_decay=wd))
    res = simulate(KArmedEnv(arms=arms, p0=p0), cfg, seeds, seed=4)
    never = (res.metrics["successes"][-1] == 0).double().mean().item()
    pred = failure_probability(p0, rounds, arms=arms, lr=lr, weight_decay=wd)
    assert pred < 0.5 * failure_probability(p0, rounds)
    assert abs(never - pred) <= 4 * math.sqrt(pred * (1 - pred) / seeds)


@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize(
    "advantage,design,rollouts",
    [
        ("grpo", "binary", 4),
        ("grpo", "pm1", 3),
        ("none", "neg", 3),
        ("rloo", "binary", 4),
        ("mean", "pm1", 2),
    ],
)
def test_one_step_update_matches_exact_expectation(pooled, advantage, design, rollouts):
    arms, p0, lr, seeds = 4, 0.3, 1.0, 20000
    env = KArmedEnv(arms=arms, p0=p0, pooled=pooled)
    cfg = SimConfig(
        rounds=1, rollouts=rollouts, advantage=advantage, reward_design=design, optim=BanditOptimizer(lr=lr)
    )
    res = simulate(env, cfg, seeds, seed=5)
    logits = torch.tensor([optimal_logit(p0, 1, arms)] + [0.0] * (arms - 1))
    optimal = torch.arange(arms) == 0
    mean, var = expected_next_mass(logits, optimal, lr, rollouts, advantage, design)
    sim = res.metrics["optimal_mass"][-1].double()
    assert abs(sim.mean().item() - mean) <= 4 * math.sqrt(var / seeds) + FLOAT_TOL
    assert abs(sim.std().item() - math.sqrt(var)) <= 0.05 * math.sqrt(var)


def test_expected_next_mass_golden_minimalist():
    """G = 1, {0,1}, none: E[p'] = p * p_after_success + (1 - p) * p (hand-derived)."""
    arms, p0, lr = 5, 0.2, 0.5
    logits = torch.tensor([optimal_logit(p0, 1, arms)] + [0.0] * (arms - 1))
    mean, _ = expected_next_mass(logits, torch.arange(arms) == 0, lr)
    after = minimalist_exact(arms, p0, lr, 1)["p_by_successes"][1].item()
    assert mean == pytest.approx(p0 * after + (1 - p0) * p0, abs=1e-12)


@pytest.mark.parametrize(
    "advantage,design,rollouts",
    [("none", "binary", 1), ("grpo", "binary", 3), ("none", "pm1", 2), ("rloo", "neg", 3)],
)
def test_mean_field_drift_is_the_first_order_exact_update(advantage, design, rollouts):
    arms, p0, lr = 5, 0.3, 1e-3
    logits = torch.tensor([optimal_logit(p0, 1, arms)] + [0.0] * (arms - 1))
    mean, _ = expected_next_mass(logits, torch.arange(arms) == 0, lr, rollouts, advantage, design)
    drift = mean_field_drift(p0, arms, lr, rollouts, advantage, design)
    assert mean - p0 == pytest.approx(drift, rel=0.01)


def test_mean_field_drift_statements():
    p, lr, big = 0.2, 0.1, 10**9
    base = lr * p**2 * (1 - p) ** 2
    assert mean_field_drift(p, big, lr) == pytest.approx(base, rel=1e-6)
    assert mean_field_drift(p, big, lr, 8) == pytest.approx(base, rel=1e-6)  # G-invariant per round
    assert mean_field_drift(p, big, lr, 1, "none", "neg") == pytest.approx(base, rel=1e-6)
    assert mean_field_drift(p, big, lr, 1, "none", "pm1") == pytest.approx(2 * base, rel=1e-6)
    # GRPO at rare success: c = 1 of G dominates, A1 = (1 - 1/G) sqrt(G) instead of 1
    small, g = 1e-6, 16
    ratio = mean_field_drift(small, big, lr, g, "grpo") / mean_field_drift(small, big, lr, g)
    assert ratio == pytest.approx((1 - 1 / g) * math.sqrt(g), rel=1e-3)


# ----------------------------------------------------------------------------- adaptive designs


@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize(
    "advantage,design,rollouts",
    [("w_reinforce", "binary", 1), ("w_reinforce", "binary", 3), ("grpo_lead", "binary", 4), ("grpo_lead", "pm1", 3)],
)
def test_one_step_update_of_adaptive_designs_matches_exact_expectation(pooled, advantage, design, rollouts):
    """The simulator runs the registry's w_reinforce / grpo_lead exactly as the enumeration applies them."""
    arms, p0, lr, seeds = 4, 0.3, 1.0, 20000
    cfg = SimConfig(
        rounds=1, rollouts=rollouts, advantage=advantage, reward_design=design, optim=BanditOptimizer(lr=lr)
    )
    res = simulate(KArmedEnv(arms=arms, p0=p0, pooled=pooled), cfg, seeds, seed=6)
    logits = torch.tensor([optimal_logit(p0, 1, arms)] + [0.0] * (arms - 1))
    mean, var = expected_next_mass(logits, torch.arange(arms) == 0, lr, rollouts, advantage, design)
    sim = res.metrics["optimal_mass"][-1].double()
    assert abs(sim.mean().item() - mean) <= 4 * math.sqrt(var / seeds) + FLOAT_TOL


def test_expected_logit_update_golden_minimalist_and_w_reinforce():
    """G = 1, {0,1}: only a success (prob p) moves the logits, by lr (e_opt - pi): E[dz] = lr p (e_opt - pi).
    W-REINFORCE: A = +lambda on the optimal arm (prob p), -1 on wrong arm a (prob pi_a):
    E[dz] = lr [lambda p (e_opt - pi) - sum_a pi_a (e_a - pi)] = lr (1 + lambda) p (e_opt - pi),
    since sum_{a wrong} pi_a e_a = pi - p e_opt and sum_{a wrong} pi_a = 1 - p (hand-derived)."""
    logits = torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64)
    optimal = torch.tensor([True, False, False])
    pi = torch.softmax(logits, -1)
    p, lr, lam = float(pi[0]), 0.5, 0.25  # 0.25 is exact in float32
    e_opt = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(expected_logit_update(logits, optimal, lr), lr * p * (e_opt - pi))
    w = expected_logit_update(logits, optimal, lr, 1, "w_reinforce", advantage_params={"positive_weight": lam})
    torch.testing.assert_close(w, lr * (1 + lam) * p * (e_opt - pi))


@pytest.mark.parametrize("rollouts", [1, 2, 3])
@pytest.mark.parametrize("baseline", [0.0, 0.3, 0.9])
def test_running_mean_baseline_leaves_the_expected_update_unchanged(rollouts, baseline):
    """E[(R - b)(e_a - pi)] = E[R (e_a - pi)] for any b fixed before the draw (Sutton & Barto sec. 2.8)."""
    logits = torch.tensor([0.4, -0.2, 0.0, 1.1], dtype=torch.float64)
    optimal = torch.tensor([False, True, False, True])
    plain = expected_logit_update(logits, optimal, 0.7, rollouts)
    shifted = expected_logit_update(logits, optimal, 0.7, rollouts, "running_mean", baseline=baseline)
    torch.testing.assert_close(shifted, plain, rtol=0, atol=1e-12)
    # ... while the spread of the next optimal mass does change with b (b = 0.9 vs 0 differ)
    if baseline == 0.9:
        _, var_plain = expected_next_mass(logits, optimal, 0.7, rollouts)
        _, var_shifted = expected_next_mass(logits, optimal, 0.7, rollouts, "running_mean", baseline=baseline)
        assert abs(var_shifted - var_plain) > 1e-6


def test_mean_field_drift_of_w_reinforce_is_one_plus_lambda_times_the_minimalist():
    p, lr, big = 0.2, 0.1, 10**9
    base = lr * p**2 * (1 - p) ** 2
    drift = mean_field_drift(p, big, lr, 1, "w_reinforce", advantage_params={"positive_weight": 0.5})
    assert drift == pytest.approx(1.5 * base, rel=1e-6)


def test_adaptive_theory_check_of_the_bandit_layer():
    errors = bandit_pipeline.baseline_theory_errors()
    assert set(errors) == {"running_mean_vs_none", "w_reinforce_vs_scaled_none"}
    assert max(errors.values()) < bandit_pipeline.UNBIASED_TOL
