"""Tests for rftlab.objectives: golden numbers on hand-sized inputs, properties, one case per registry entry.

Every expected number below is worked out by hand in the comments (or written as the closed form
it comes from, e.g. `math.sqrt(3) / 2`); none was copied from running the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from rftlab.errors import ConfigError, RftlabError
from rftlab.objectives import (
    ADVANTAGES,
    GRPO_LEAD_WEIGHTS,
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    REWARD_DESIGNS,
    DifficultyWeights,
    clipped_policy_loss,
    entropy_from_logits,
    get_advantage,
    get_aggregation,
    kl_loss,
    shape_reward,
    token_logp,
    update_running_baseline,
)

F64 = torch.float64
LN2 = math.log(2.0)


def _t(values, dtype=F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _policy_loss_and_grad(ratios, adv, mask=None, **kwargs):
    """Loss, metrics and d loss / d logp for given ratios: logp = log(ratio), old_logp = 0."""
    logp = torch.log(_t(ratios)).requires_grad_(True)
    old_logp = torch.zeros_like(logp)
    mask = torch.ones_like(logp) if mask is None else _t(mask)
    loss, metrics = clipped_policy_loss(logp, old_logp, _t(adv), mask, **kwargs)
    loss.backward()
    return loss.detach(), metrics, logp.grad


# ----------------------------------------------------------------------------- registries are covered

# Hand tables below are keyed by registry name; these guards make a new entry fail loudly until it has
# a golden case of its own.


def test_every_registry_entry_has_a_hand_case():
    assert set(ADVANTAGES) == set(ADV_GOLDEN)
    assert set(REWARD_DESIGNS) == set(REWARD_GOLDEN)
    assert set(KL_ESTIMATORS) == set(KL_GOLDEN)
    assert set(LOSS_AGGREGATIONS) == set(AGG_GOLDEN)


# ----------------------------------------------------------------------------- reward designs

# correct = [True, False, True]; reward = wrong + correct * (right - wrong)
REWARD_GOLDEN = {
    "binary": [1.0, 0.0, 1.0],  # (wrong, right) = (0, 1)
    "pm1": [1.0, -1.0, 1.0],  # (-1, 1)
    "neg": [0.0, -1.0, 0.0],  # (-1, 0)
}


@pytest.mark.parametrize("design", sorted(REWARD_GOLDEN))
@pytest.mark.parametrize("correct", [[True, False, True], [1, 0, 1], [1.0, 0.0, 1.0]])
def test_shape_reward_maps_correctness_to_reward(design, correct):
    rewards = shape_reward(torch.tensor(correct), design)
    assert rewards.dtype == torch.float32
    torch.testing.assert_close(rewards, torch.tensor(REWARD_GOLDEN[design]))


def test_shape_reward_default_is_binary_and_keeps_shape():
    correct = torch.tensor([[True, False], [False, False]])  # (B, G) = (2, 2)
    torch.testing.assert_close(shape_reward(correct), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


# ----------------------------------------------------------------------------- unknown names


def _mask_1x2():
    return torch.ones(1, 2)


UNKNOWN_NAME_CASES = {
    "get_advantage": (lambda: get_advantage("nope"), ADVANTAGES),
    "get_aggregation": (lambda: get_aggregation("nope"), LOSS_AGGREGATIONS),
    "shape_reward": (lambda: shape_reward(torch.tensor([True]), "nope"), REWARD_DESIGNS),
    "kl_loss estimator": (
        lambda: kl_loss(torch.zeros(1, 2), torch.zeros(1, 2), _mask_1x2(), estimator="nope"),
        KL_ESTIMATORS,
    ),
    "kl_loss aggregation": (
        lambda: kl_loss(torch.zeros(1, 2), torch.zeros(1, 2), _mask_1x2(), aggregation="nope"),
        LOSS_AGGREGATIONS,
    ),
    "clipped_policy_loss aggregation": (
        lambda: clipped_policy_loss(
            torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1), _mask_1x2(), aggregation="nope"
        ),
        LOSS_AGGREGATIONS,
    ),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN_NAME_CASES))
def test_unknown_name_raises_config_error_listing_valid_names(case):
    call, registry = UNKNOWN_NAME_CASES[case]
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "'nope'" in message
    for name in registry:
        assert name in message, (name, message)
    assert isinstance(info.value, RftlabError)  # the CLI prints these as one line


# ----------------------------------------------------------------------------- advantages: golden values

# rewards [1, 0, 0, 1] (G = 4), baseline 0.25 (read by running_mean only).
#   none:  A = R
#   grpo:  mean 0.5, deviations +-0.5, sample var = 4 * 0.25 / (4 - 1) = 1/3, std = 1/sqrt(3);
#          A = +-0.5 * sqrt(3) = +-sqrt(3)/2 = +-0.8660254 (with eps = 0)
#   mean:  A = R - 0.5 = +-0.5
#   rloo:  A_0 = 1 - (0 + 0 + 1)/3 = 2/3; A_1 = 0 - (1 + 0 + 1)/3 = -2/3   (= 4/3 * +-0.5)
#   running_mean: A = R - 0.25 = [0.75, -0.25, -0.25, 0.75]
#   w_reinforce (lambda 0.1): correct +0.1, wrong -1
#   grpo_lead: grpo's +-sqrt(3)/2, accuracy rho = 0.5, so both signs weigh w(0.5) = w(1 - 0.5)
#          = 0.4 + 1.1 / (1 + exp(10 (0.5 - 0.75))) = 0.4 + 1.1 / (1 + exp(-2.5))
_H = math.sqrt(3) / 2


def _lead_weight(rho: float) -> float:
    """GRPO-LEAD's default logistic weight A + (B - A) / (1 + exp(k (rho - rho0))), A, B, rho0, k = 0.4, 1.5, 0.75, 10."""
    return 0.4 + 1.1 / (1 + math.exp(10 * (rho - 0.75)))


_W = _lead_weight(0.5)
ADV_GOLDEN = {
    "none": [1.0, 0.0, 0.0, 1.0],
    "grpo": [_H, -_H, -_H, _H],
    "mean": [0.5, -0.5, -0.5, 0.5],
    "rloo": [2 / 3, -2 / 3, -2 / 3, 2 / 3],
    "running_mean": [0.75, -0.25, -0.25, 0.75],
    "w_reinforce": [0.1, -1.0, -1.0, 0.1],
    "grpo_lead": [_H * _W, -_H * _W, -_H * _W, _H * _W],
}


@pytest.mark.parametrize("name", sorted(ADV_GOLDEN))
def test_advantage_golden_values(name):
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    adv = get_advantage(name)(rewards, baseline=torch.tensor(0.25), eps=0.0)
    torch.testing.assert_close(adv, torch.tensor(ADV_GOLDEN[name]))


def test_grpo_default_eps_is_tiny():
    # (R - mean) / (std + 1e-6) with std = 0.57735: relative change ~1.7e-6 from sqrt(3)/2
    adv = get_advantage("grpo")(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(adv, torch.tensor([_H, -_H, -_H, _H]), rtol=1e-5, atol=1e-5)


def test_rloo_second_golden_group():
    # [3, 1, 2]: A_0 = 3 - (1+2)/2 = 1.5, A_1 = 1 - (3+2)/2 = -1.5, A_2 = 2 - (3+1)/2 = 0
    # = G/(G-1) * (R - mean) = 1.5 * ([3, 1, 2] - 2)
    adv = get_advantage("rloo")(torch.tensor([3.0, 1.0, 2.0]))
    torch.testing.assert_close(adv, torch.tensor([1.5, -1.5, 0.0]))


# ----------------------------------------------------------------------------- advantages: properties


def _rewards_sbg(generator: torch.Generator) -> torch.Tensor:
    """(S, B, G) = (2, 3, 4) 0/1 rewards, with one all-equal group and one mixed group pinned."""
    rewards = torch.randint(0, 2, (2, 3, 4), generator=generator).float()
    rewards[0, 0] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    rewards[1, 2] = 1.0
    return rewards


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)])
def test_advantage_preserves_shape_and_returns_float(name, shape):
    rewards = torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(0))  # int64 input
    baseline = torch.full(shape[:-1], 0.5)
    adv = get_advantage(name)(rewards, baseline=baseline)
    assert adv.shape == rewards.shape
    assert adv.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_advantage_leading_dims_equal_per_group_loop(name):
    gen = torch.Generator().manual_seed(1)
    rewards = _rewards_sbg(gen)  # (S, B, G)
    baseline = torch.rand(2, 3, generator=gen)  # (S, B)
    fn = get_advantage(name)
    vectorized = fn(rewards, baseline=baseline)
    for s in range(2):
        for b in range(3):
            looped = fn(rewards[s, b], baseline=baseline[s, b])
            torch.testing.assert_close(vectorized[s, b], looped)


@pytest.mark.parametrize("name", sorted(set(ADVANTAGES) - {"w_reinforce", "grpo_lead"}))
def test_singleton_group_gives_reward_itself(name):
    # verl's convention: a group of one has mean 0 and std 1, so A = R (running_mean: baseline None = 0)
    rewards = torch.tensor([[1.0], [0.0], [-1.0]])  # (B, G) = (3, 1)
    torch.testing.assert_close(get_advantage(name)(rewards), rewards)


@pytest.mark.parametrize("name", ["grpo", "mean", "rloo", "grpo_lead"])
def test_all_equal_group_gives_zero_advantage(name):
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])
    torch.testing.assert_close(get_advantage(name)(rewards), torch.zeros(3, 3), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["grpo", "mean", "rloo"])
def test_group_estimators_have_zero_group_mean(name):
    # rloo's A = G/(G-1) (R - mean) also sums to zero over the group
    rewards = torch.randn(5, 3, 6, generator=torch.Generator().manual_seed(2))
    adv = get_advantage(name)(rewards)
    torch.testing.assert_close(adv.mean(dim=-1), torch.zeros(5, 3), rtol=0, atol=1e-6)


def test_grpo_has_unit_sample_std():
    # std(A) = std / (std + eps) = 1 - O(1e-6) for groups of non-degenerate rewards
    rewards = torch.randn(5, 3, 6, generator=torch.Generator().manual_seed(3))
    adv = get_advantage("grpo")(rewards)
    torch.testing.assert_close(adv.std(dim=-1), torch.ones(5, 3), rtol=0, atol=1e-4)


@pytest.mark.parametrize("group", [2, 3, 8])
def test_rloo_equals_scaled_mean_centering(group):
    rewards = torch.randn(4, group, generator=torch.Generator().manual_seed(group))
    expected = group / (group - 1) * (rewards - rewards.mean(dim=-1, keepdim=True))
    torch.testing.assert_close(get_advantage("rloo")(rewards), expected)


# ----------------------------------------------------------------------------- adaptive designs


@pytest.mark.parametrize(
    "positive_weight,want",
    [
        (0.5, [0.5, -1.0, 0.5, -1.0]),  # correct +lambda, wrong -1
        (0.1, [0.1, -1.0, 0.1, -1.0]),  # the paper's recommended lambda
        (2.0, [2.0, -1.0, 2.0, -1.0]),
    ],
)
def test_w_reinforce_golden_values(positive_weight, want):
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    adv = get_advantage("w_reinforce")(rewards, positive_weight=positive_weight)
    torch.testing.assert_close(adv, torch.tensor([want]))


def test_w_reinforce_gives_a_lone_failure_a_signal():
    # G = 1: A = 0.1 * 1 = 0.1 for a success and 0.1 * 0 - 1 = -1 for a failure (none gives 0)
    adv = get_advantage("w_reinforce")(torch.tensor([[1.0], [0.0]]), positive_weight=0.1)
    torch.testing.assert_close(adv, torch.tensor([[0.1], [-1.0]]))


@pytest.mark.parametrize("positive_weight,design", [(1.0, "pm1"), (0.0, "neg")])
def test_w_reinforce_extremes_are_the_negative_reward_designs(positive_weight, design):
    # lambda R - (1 - R): lambda = 1 gives 2R - 1 = {-1, 1} (PSR + NSR); lambda = 0 gives R - 1 = {-1, 0} (NSR only)
    correct = torch.tensor([[True, False, False, True], [False, False, True, False]])
    adv = get_advantage("w_reinforce")(shape_reward(correct, "binary"), positive_weight=positive_weight)
    torch.testing.assert_close(adv, get_advantage("none")(shape_reward(correct, design)))


def test_difficulty_weights_golden_values():
    w = DifficultyWeights()  # 0.4 + 1.1 / (1 + exp(10 (rho - 0.75)))
    rho = torch.tensor([0.0, 0.75, 1.0])
    want = torch.tensor([0.4 + 1.1 / (1 + math.exp(-7.5)), 0.95, 0.4 + 1.1 / (1 + math.exp(2.5))])
    torch.testing.assert_close(w(rho), want)
    assert w == GRPO_LEAD_WEIGHTS
    # low > high flips it: easy groups weigh more; at the midpoint the weight is the middle (2 + 1) / 2
    flipped = DifficultyWeights(low=2.0, high=1.0, midpoint=0.5, steepness=4.0)
    torch.testing.assert_close(flipped(torch.tensor([0.5])), torch.tensor([1.5]))
    assert float(flipped(torch.tensor(0.9))) > float(flipped(torch.tensor(0.1)))


def test_grpo_lead_golden_values_hard_group():
    # [1, 0, 0, 0]: mean 1/4, sample var = (9/16 + 3/16) / 3 = 1/4, std 1/2; grpo A = [1.5, -0.5, -0.5, -0.5].
    # rho = 1/4: the correct rollout weighs w(1/4) = 0.4 + 1.1 / (1 + exp(-5)), the wrong ones w(3/4) = 0.95.
    adv = get_advantage("grpo_lead")(torch.tensor([1.0, 0.0, 0.0, 0.0]), eps=0.0)
    w_hard = 0.4 + 1.1 / (1 + math.exp(-5))
    torch.testing.assert_close(adv, torch.tensor([1.5 * w_hard, -0.475, -0.475, -0.475]))


def test_grpo_lead_golden_values_easy_group_custom_weights():
    # [1, 1, 1, 0]: grpo A = [0.5, 0.5, 0.5, -1.5] (mirror of the case above), rho = 3/4.
    # weights low 1, high 3, midpoint 0.5, steepness 4: w(3/4) = 1 + 2 / (1 + exp(1)) for the correct ones,
    # w(1 - 3/4) = 1 + 2 / (1 + exp(-1)) for the wrong one
    weights = DifficultyWeights(low=1.0, high=3.0, midpoint=0.5, steepness=4.0)
    adv = get_advantage("grpo_lead")(torch.tensor([1.0, 1.0, 1.0, 0.0]), eps=0.0, difficulty=weights)
    w_pos, w_neg = 1 + 2 / (1 + math.e), 1 + 2 / (1 + math.exp(-1))
    torch.testing.assert_close(adv, torch.tensor([0.5 * w_pos, 0.5 * w_pos, 0.5 * w_pos, -1.5 * w_neg]))


def test_grpo_lead_with_flat_weights_is_grpo():
    rewards = torch.randint(0, 2, (5, 6), generator=torch.Generator().manual_seed(4)).float()
    flat = DifficultyWeights(low=1.0, high=1.0)
    torch.testing.assert_close(
        get_advantage("grpo_lead")(rewards, difficulty=flat), get_advantage("grpo")(rewards), rtol=0, atol=0
    )


def test_grpo_lead_singleton_and_pm1_rewards():
    # G = 1: grpo's A = R (verl), rho = 1[R > 0]: a success weighs w(1) = 0.4 + 1.1 / (1 + exp(2.5)), a failure 0
    lone = get_advantage("grpo_lead")(torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(lone, torch.tensor([[_lead_weight(1.0)], [0.0]]))
    # {-1, 1} rewards: grpo is invariant to the affine map 2R - 1 and "correct" is R > 0, so the same advantages
    binary = torch.tensor([1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(
        get_advantage("grpo_lead")(2 * binary - 1, eps=0.0), get_advantage("grpo_lead")(binary, eps=0.0)
    )


def test_registry_lists_the_adaptive_designs_with_their_reward_designs():
    assert {"w_reinforce", "grpo_lead", "running_mean"} <= set(ADVANTAGES)
    assert ADVANTAGES["w_reinforce"].reward_designs == ("binary",)
    assert ADVANTAGES["grpo_lead"].reward_designs == ("binary", "pm1")
    assert ADVANTAGES["none"].reward_designs is None and ADVANTAGES["running_mean"].uses_baseline


# ----------------------------------------------------------------------------- running-mean baseline


def test_running_mean_gives_lone_zero_reward_a_signal():
    # G = 1, R = 0, baseline 0.3: A = 0 - 0.3 = -0.3 (the group estimators give 0 here)
    adv = get_advantage("running_mean")(torch.tensor([[0.0]]), baseline=torch.tensor([0.3]))
    torch.testing.assert_close(adv, torch.tensor([[-0.3]]))


def test_update_running_baseline_exact_mean_over_rounds_of_different_size():
    # two prompts, rounds of G = 2, 4, 1:
    #   prompt 0: [1,1] [0,0,0,0] [1]  -> ones seen 2/2, 2/6, 3/7  -> baseline 1, 1/3, 3/7
    #   prompt 1: [0,1] [1,1,1,1] [0]  -> ones seen 1/2, 5/6, 5/7  -> baseline 1/2, 5/6, 5/7
    # recursion: b += G/n * (round_mean - b); e.g. prompt 0 round 3: 1/3 + 1/7 * (1 - 1/3) = 3/7
    rounds = [
        (torch.tensor([[1.0, 1.0], [0.0, 1.0]]), [1.0, 1 / 2], [2, 2]),
        (torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]), [1 / 3, 5 / 6], [6, 6]),
        (torch.tensor([[1.0], [0.0]]), [3 / 7, 5 / 7], [7, 7]),
    ]
    baseline, count = torch.zeros(2), torch.zeros(2, dtype=torch.long)
    for rewards, want_baseline, want_count in rounds:
        baseline, count = update_running_baseline(baseline, count, rewards)
        torch.testing.assert_close(baseline, torch.tensor(want_baseline))
        assert count.tolist() == want_count
    # the advantage then reads the updated baseline: prompt 0, R = [1, 0] -> [1 - 3/7, -3/7]
    adv = get_advantage("running_mean")(torch.tensor([[1.0, 0.0]]), baseline=baseline[:1])
    torch.testing.assert_close(adv, torch.tensor([[4 / 7, -3 / 7]]))


def test_update_running_baseline_with_step_size_is_an_ema():
    # step 0.5: b += 0.5 * (round_mean - b)
    #   prompt 0 round means 1, 0, 1:    0 -> 0.5 -> 0.25 -> 0.625
    #   prompt 1 round means 0.5, 1, 0:  0 -> 0.25 -> 0.625 -> 0.3125
    rounds = [
        (torch.tensor([[1.0, 1.0], [0.0, 1.0]]), [0.5, 0.25]),
        (torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]), [0.25, 0.625]),
        (torch.tensor([[1.0], [0.0]]), [0.625, 0.3125]),
    ]
    baseline, count = torch.zeros(2), torch.zeros(2, dtype=torch.long)
    for rewards, want in rounds:
        baseline, count = update_running_baseline(baseline, count, rewards, step_size=0.5)
        torch.testing.assert_close(baseline, torch.tensor(want))
    assert count.tolist() == [7, 7]  # the count still advances


# ----------------------------------------------------------------------------- clipped loss: golden cases

# One token, eps = 0.2, logp = log(ratio), old_logp = 0, A = R (advantage `none`):
#   l = -min(r A, clip(r, 0.8, 1.2) A) = max(-A r, -A clip(r));  d l / d logp = -A r if unclipped, else 0
#   r = 1.5, A = +1: max(-1.5, -1.2) = -1.2  clipped   grad 0
#   r = 1.5, A = -1: max( 1.5,  1.2) =  1.5  unclipped grad -A r = 1.5
#   r = 0.5, A = +1: max(-0.5, -0.8) = -0.5  unclipped grad -0.5
#   r = 0.5, A = -1: max( 0.5,  0.8) =  0.8  clipped   grad 0
#   r = 1.0, A = +-1: l = -A, grad -A;  A = 0: l = 0, grad 0 for every r
CLIP_TABLE = [
    # ratio, R, loss, grad
    (1.5, 1.0, -1.2, 0.0),
    (1.5, 0.0, 0.0, 0.0),
    (1.5, -1.0, 1.5, 1.5),
    (0.5, 1.0, -0.5, -0.5),
    (0.5, 0.0, 0.0, 0.0),
    (0.5, -1.0, 0.8, 0.0),
    (1.0, 1.0, -1.0, -1.0),
    (1.0, 0.0, 0.0, 0.0),
    (1.0, -1.0, 1.0, 1.0),
]


@pytest.mark.parametrize(("ratio", "reward", "want_loss", "want_grad"), CLIP_TABLE)
def test_clipped_loss_value_and_gradient(ratio, reward, want_loss, want_grad):
    adv = get_advantage("none")(_t([reward]))  # A = R, shape (N,) = (1,)
    loss, metrics, grad = _policy_loss_and_grad([[ratio]], adv.tolist())
    torch.testing.assert_close(loss, _t(want_loss))
    torch.testing.assert_close(grad, _t([[want_grad]]))
    clipped_active = (ratio, reward) in {(1.5, 1.0), (0.5, -1.0)}
    assert metrics["clip/frac"].item() == float(clipped_active)


def test_decoupled_clip_range():
    # clip_eps_low 0.1, clip_eps_high 0.3 -> range [0.9, 1.3]; four tokens of one sequence, token_mean (/4)
    #   r 1.25, A +1: inside,     l = -1.25, grad -1.25
    #   r 1.35, A +1: above 1.3,  l = -1.3,  grad 0
    #   r 0.85, A -1: below 0.9,  l = max(0.85, 0.9) = 0.9, grad 0
    #   r 0.95, A -1: inside,     l = 0.95,  grad 0.95
    # loss = (-1.25 - 1.3 + 0.9 + 0.95) / 4 = -0.7 / 4 = -0.175; grad / 4 = [-0.3125, 0, 0, 0.2375]
    ratios, adv = [[1.25, 1.35, 0.85, 0.95]], [[1.0, 1.0, -1.0, -1.0]]
    loss, metrics, grad = _policy_loss_and_grad(ratios, adv, clip_eps_low=0.1, clip_eps_high=0.3)
    torch.testing.assert_close(loss, _t(-0.175))
    torch.testing.assert_close(grad, _t([[-0.3125, 0.0, 0.0, 0.2375]]))
    assert metrics["clip/frac"].item() == 0.5
    # symmetric 0.2 on the same tokens -> range [0.8, 1.2]:
    #   r 1.25 and 1.35 with A +1 both clip to -1.2 (grad 0); 0.85 and 0.95 with A -1 are inside
    # loss = (-1.2 - 1.2 + 0.85 + 0.95) / 4 = -0.6 / 4 = -0.15; grad / 4 = [0, 0, 0.2125, 0.2375]
    loss, _, grad = _policy_loss_and_grad(ratios, adv, clip_eps_low=0.2, clip_eps_high=0.2)
    torch.testing.assert_close(loss, _t(-0.15))
    torch.testing.assert_close(grad, _t([[0.0, 0.0, 0.2125, 0.2375]]))


def test_dual_clip_caps_negative_advantage_loss():
    # eps 0.2, c = 3, four tokens, token_mean (/4):
    #   r 5, A -1: max(5, 1.2) = 5   > cap -A c = 3 -> 3,    grad 0   (dual)
    #   r 2, A -1: max(2, 1.2) = 2   < 3            -> 2,    grad -A r = 2
    #   r 5, A +1: max(-5, -1.2) = -1.2 (no cap for A > 0),  grad 0   (ordinary clip)
    #   r 4, A -2: max(8, 2.4) = 8   > cap 6        -> 6,    grad 0   (dual)
    # loss = (3 + 2 - 1.2 + 6) / 4 = 9.8 / 4 = 2.45; grad / 4 = [0, 0.5, 0, 0]
    ratios, adv = [[5.0, 2.0, 5.0, 4.0]], [[-1.0, -1.0, 1.0, -2.0]]
    loss, metrics, grad = _policy_loss_and_grad(ratios, adv, dual_clip=3.0)
    torch.testing.assert_close(loss, _t(2.45))
    torch.testing.assert_close(grad, _t([[0.0, 0.5, 0.0, 0.0]]))
    assert metrics["clip/frac"].item() == 0.25  # only the A > 0 token has clipped > unclipped
    assert metrics["clip/frac_dual"].item() == 0.5
    # without dual clip: loss = (5 + 2 - 1.2 + 8) / 4 = 3.45; grad / 4 = [5/4, 2/4, 0, 8/4]
    loss, metrics, grad = _policy_loss_and_grad(ratios, adv)
    torch.testing.assert_close(loss, _t(3.45))
    torch.testing.assert_close(grad, _t([[1.25, 0.5, 0.0, 2.0]]))
    assert metrics["clip/frac_dual"].item() == 0.0


def test_clip_metrics_on_known_mix_ignore_padding():
    # (N, T) = (2, 3), per-token advantages, eps 0.2; real tokens marked *
    #   seq 0: *(r 1.5, A +1) clipped   *(r 0.5, A -1) clipped   *(r 1.5, A -1) unclipped
    #   seq 1: *(r 1.0, A +1) unclipped  (r 10, A +1) pad         (r 0.01, A -1) pad
    # clip/frac = 2 / 4 = 0.5; ratio/mean = (1.5 + 0.5 + 1.5 + 1.0) / 4 = 1.125; max 1.5; min 0.5
    ratios = [[1.5, 0.5, 1.5], [1.0, 10.0, 0.01]]
    adv = [[1.0, -1.0, -1.0], [1.0, 1.0, -1.0]]
    mask = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    loss, metrics, grad = _policy_loss_and_grad(ratios, adv, mask=mask)
    assert metrics["clip/frac"].item() == 0.5
    assert metrics["clip/frac_dual"].item() == 0.0
    torch.testing.assert_close(metrics["ratio/mean"], _t(1.125))
    torch.testing.assert_close(metrics["ratio/max"], _t(1.5))
    torch.testing.assert_close(metrics["ratio/min"], _t(0.5))
    # loss = (-1.2 + 0.8 + 1.5 - 1.0) / 4 = 0.1 / 4 = 0.025; padding gets no gradient
    torch.testing.assert_close(loss, _t(0.025))
    # grads / 4: seq 0 t2 -A r = 1.5 -> 0.375; seq 1 t0 -A r = -1 -> -0.25; clipped and padded tokens 0
    torch.testing.assert_close(grad, _t([[0.0, 0.0, 0.375], [-0.25, 0.0, 0.0]]))
    assert all(not v.requires_grad for v in metrics.values())


def test_per_sequence_advantage_broadcasts_like_per_token():
    logp = torch.log(_t([[1.5, 0.5, 1.1], [0.7, 1.0, 1.3]]))
    adv_seq = _t([1.0, -2.0])  # (N,)
    adv_tok = adv_seq[:, None].expand(2, 3)  # (N, T)
    mask = _t([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    a, _ = clipped_policy_loss(logp, torch.zeros_like(logp), adv_seq, mask)
    b, _ = clipped_policy_loss(logp, torch.zeros_like(logp), adv_tok, mask)
    torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- aggregations

# loss_mat (N, T) = [[1, 2, 3], [4, 100, 100]], mask [[1, 1, 1], [1, 0, 0]] (lengths 3 and 1)
#   token_mean:               (1 + 2 + 3 + 4) / 4 = 2.5
#   seq_mean_token_mean:      ((1 + 2 + 3)/3 + 4/1) / 2 = (2 + 4) / 2 = 3
#   seq_mean_token_sum_norm:  (1 + 2 + 3 + 4) / (N * T) = 10 / 6 = 5/3;  norm_tokens 5: 10 / (2 * 5) = 1
AGG_GOLDEN = {
    "token_mean": (2.5, 2.5),
    "seq_mean_token_mean": (3.0, 3.0),
    "seq_mean_token_sum_norm": (5 / 3, 1.0),  # (default norm T = 3, norm_tokens = 5)
}


@pytest.mark.parametrize("name", sorted(AGG_GOLDEN))
def test_aggregation_golden_values(name):
    loss_mat = _t([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
    mask = _t([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    default, normed = AGG_GOLDEN[name]
    agg = get_aggregation(name)
    torch.testing.assert_close(agg(loss_mat, mask), _t(default))
    torch.testing.assert_close(agg(loss_mat, mask, norm_tokens=5.0), _t(normed))
    torch.testing.assert_close(agg(loss_mat, mask.bool()), _t(default))  # boolean masks work too


@pytest.mark.parametrize("name", sorted(LOSS_AGGREGATIONS))
def test_aggregation_leading_seed_dim_is_one_loss_per_seed(name):
    gen = torch.Generator().manual_seed(4)
    logp = torch.randn(3, 2, 4, generator=gen, dtype=F64) * 0.3  # (S, N, T)
    old_logp = logp + torch.randn(3, 2, 4, generator=gen, dtype=F64) * 0.3
    adv = torch.randn(3, 2, generator=gen, dtype=F64)  # (S, N)
    mask = _t([[1, 1, 1, 0], [1, 1, 0, 0]]).expand(3, 2, 4)
    logp.requires_grad_(True)
    loss, _ = clipped_policy_loss(logp, old_logp, adv, mask, aggregation=name)
    assert loss.shape == (3,)
    loss.sum().backward()
    for s in range(3):
        own_logp = logp.detach()[s].clone().requires_grad_(True)
        own, _ = clipped_policy_loss(own_logp, old_logp[s], adv[s], mask[s], aggregation=name)
        own.backward()
        torch.testing.assert_close(loss[s].detach(), own.detach())
        torch.testing.assert_close(logp.grad[s], own_logp.grad)  # summing gives each seed its own gradient


# ----------------------------------------------------------------------------- ratio 1: REINFORCE gradient

# At mu = 1 (logp == old_logp.detach()), r = 1 and d l_it / d logp_it = -A_i. With A = [+1, -1] and
# lengths 3 and 1 (mask [[1, 1, 1], [1, 0, 0]]), d loss / d logp_it = -A_i m_it w_i:
#   token_mean:               w = 1 / 4                      -> [[-1/4]*3, [+1/4, 0, 0]]
#   seq_mean_token_mean:      w_i = 1 / (N |o_i|) = 1/6, 1/2 -> [[-1/6]*3, [+1/2, 0, 0]]
#   seq_mean_token_sum_norm:  w = 1 / (N T) = 1 / 6          -> [[-1/6]*3, [+1/6, 0, 0]]
#                             norm_tokens 4: 1 / (2 * 4) = 1/8
# and loss = -sum A_i m_it w_i: -(3 - 1)/4 = -0.5; -(1 - 1)/2 = 0; -(3 - 1)/6 = -1/3; -(3 - 1)/8 = -0.25
RATIO_ONE_GOLDEN = [
    # aggregation, norm_tokens, loss, grad
    ("token_mean", None, -0.5, [[-1 / 4] * 3, [1 / 4, 0.0, 0.0]]),
    ("seq_mean_token_mean", None, 0.0, [[-1 / 6] * 3, [1 / 2, 0.0, 0.0]]),
    ("seq_mean_token_sum_norm", None, -1 / 3, [[-1 / 6] * 3, [1 / 6, 0.0, 0.0]]),
    ("seq_mean_token_sum_norm", 4.0, -0.25, [[-1 / 8] * 3, [1 / 8, 0.0, 0.0]]),
]


@pytest.mark.parametrize(("aggregation", "norm_tokens", "want_loss", "want_grad"), RATIO_ONE_GOLDEN)
def test_ratio_one_gradient_weights_by_aggregation(aggregation, norm_tokens, want_loss, want_grad):
    logp = _t([[-0.3, -1.2, -2.0], [-0.7, -5.0, -9.0]]).requires_grad_(True)
    mask = _t([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss, metrics = clipped_policy_loss(
        logp, logp.detach(), _t([1.0, -1.0]), mask, aggregation=aggregation, norm_tokens=norm_tokens
    )
    loss.backward()
    torch.testing.assert_close(loss.detach(), _t(want_loss))
    torch.testing.assert_close(logp.grad, _t(want_grad))
    assert metrics["clip/frac"].item() == 0.0
    assert metrics["ratio/mean"].item() == 1.0


def _reinforce_surrogate(logp, adv, mask, aggregation, norm_tokens):
    """-A * (aggregated log pi), written out independently of the module's aggregations."""
    weighted = adv[:, None] * logp * mask  # (N, T)
    n_seq, n_tok = logp.shape
    if aggregation == "token_mean":
        return -weighted.sum() / mask.sum()
    if aggregation == "seq_mean_token_mean":
        return -(weighted.sum(-1) / mask.sum(-1)).mean()
    if aggregation == "seq_mean_token_sum_norm":
        return -weighted.sum() / (n_seq * (norm_tokens or n_tok))
    raise AssertionError(aggregation)


@pytest.mark.parametrize(
    ("aggregation", "norm_tokens"),
    [
        ("token_mean", None),
        ("seq_mean_token_mean", None),
        ("seq_mean_token_sum_norm", None),
        ("seq_mean_token_sum_norm", 8.0),
    ],
)
def test_ratio_one_clipped_gradient_equals_reinforce_through_softmax_policy(aggregation, norm_tokens):
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 4, 5, generator=gen, requires_grad=True)  # (N, T, V)
    tokens = torch.randint(0, 5, (3, 4), generator=gen)  # (N, T)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, -1.0, 0.5])

    logp = token_logp(logits, tokens)
    loss, _ = clipped_policy_loss(logp, logp.detach(), adv, mask, aggregation=aggregation, norm_tokens=norm_tokens)
    (grad_clipped,) = torch.autograd.grad(loss, logits)

    surrogate = _reinforce_surrogate(token_logp(logits, tokens), adv, mask, aggregation, norm_tokens)
    (grad_reinforce,) = torch.autograd.grad(surrogate, logits)
    # values differ (the clipped loss is -A * r = -A at r = 1, the surrogate -A * log pi); gradients agree
    torch.testing.assert_close(grad_clipped, grad_reinforce)
    assert grad_clipped.abs().sum() > 0
    assert grad_clipped[2, 1:].abs().sum() == 0  # padded positions get no gradient


def test_token_mean_and_seq_mean_differ_when_lengths_differ():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 4, generator=gen, requires_grad=True)
    tokens = torch.randint(0, 4, (2, 3), generator=gen)
    adv = torch.tensor([1.0, 1.0])
    grads = {}
    for aggregation in ("token_mean", "seq_mean_token_mean"):
        for mask in (torch.ones(2, 3), torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])):
            logp = token_logp(logits, tokens)
            loss, _ = clipped_policy_loss(logp, logp.detach(), adv, mask, aggregation=aggregation)
            grads[aggregation, int(mask.sum())] = torch.autograd.grad(loss, logits)[0]
    # equal lengths: both are (1/6) sum; lengths 3 and 1: weights 1/4 each vs 1/6 and 1/2
    torch.testing.assert_close(grads["token_mean", 6], grads["seq_mean_token_mean", 6])
    assert not torch.allclose(grads["token_mean", 4], grads["seq_mean_token_mean", 4])


@pytest.mark.parametrize("reward", [1.0, 0.0, -1.0])
def test_minimalist_configuration_gradient_on_uniform_policy(reward):
    # G = 1, advantage none (A = R), token_mean, mu = 1; one sequence of two tokens, V = 4 uniform logits.
    # d log softmax(z)_a / d z = onehot(a) - pi = onehot(a) - 1/4; loss = -R (1/2) sum_t log pi(o_t)
    # -> d loss / d z_t = -(R/2) (onehot(o_t) - 1/4); for o_0 = 2: -(R/2) [-1/4, -1/4, 3/4, -1/4]
    logits = torch.zeros(1, 2, 4, requires_grad=True)  # (N, T, V)
    tokens = torch.tensor([[2, 0]])
    adv = get_advantage("none")(torch.tensor([[reward]]))[:, 0]  # (B, G) = (1, 1) -> (N,) = (1,)
    logp = token_logp(logits, tokens)
    loss, _ = clipped_policy_loss(logp, logp.detach(), adv, torch.ones(1, 2))
    loss.backward()
    # loss = (1/2) sum_t -R r_t with r_t = 1: -R
    torch.testing.assert_close(loss.detach(), torch.tensor(-reward))
    half = -reward / 2
    want = torch.tensor([[[-0.25, -0.25, 0.75, -0.25], [0.75, -0.25, -0.25, -0.25]]]) * half
    torch.testing.assert_close(logits.grad, want)  # all zeros when R = 0


# ----------------------------------------------------------------------------- padding with -inf log-probs


def test_policy_loss_ignores_padding_with_minus_inf_logp():
    # real token: r = exp(-1 - (-1)) = 1, A = 1 -> loss -1, grad -1; padded token must not matter
    logp = torch.tensor([[-1.0, float("-inf")]], requires_grad=True)
    old_logp = torch.tensor([[-1.0, float("-inf")]])
    loss, metrics = clipped_policy_loss(logp, old_logp, torch.tensor([1.0]), torch.tensor([[1.0, 0.0]]))
    loss.backward()
    torch.testing.assert_close(loss.detach(), torch.tensor(-1.0))
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, 0.0]]))
    torch.testing.assert_close(metrics["ratio/mean"], torch.tensor(1.0))


def test_kl_loss_ignores_padding_with_minus_inf_logp():
    logp = torch.tensor([[-1.0, float("-inf")]])
    loss = kl_loss(logp, logp.clone(), torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(loss, torch.tensor(0.0))


def test_one_sided_minus_inf_padding_is_guarded():
    # only logp is -inf at the pad: log ratio clamps to -20, finite loss, zero gradient there
    logp = torch.tensor([[-1.0, float("-inf")]], requires_grad=True)
    old_logp = torch.tensor([[-1.0, -3.0]])
    loss, _ = clipped_policy_loss(logp, old_logp, torch.tensor([1.0]), torch.tensor([[1.0, 0.0]]))
    loss.backward()
    torch.testing.assert_close(loss.detach(), torch.tensor(-1.0))
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, 0.0]]))


# ----------------------------------------------------------------------------- KL estimators

# x = logp - ref_logp. Case a: pi = 0.5, ref = 0.25 -> x = ln 2;  case b: pi = 0.25, ref = 0.5 -> x = -ln 2
#   k1 = x:                         a  ln 2 = 0.693147        b  -ln 2
#   k2 = x^2 / 2:                   a  (ln 2)^2 / 2 = 0.240227  b  same
#   k3 = ref/pi - ln(ref/pi) - 1:   a  0.5 + ln 2 - 1 = ln 2 - 0.5 = 0.193147
#                                   b  2 - ln 2 - 1 = 1 - ln 2 = 0.306853
KL_GOLDEN = {
    "k1": [LN2, -LN2],
    "k2": [LN2**2 / 2, LN2**2 / 2],
    "k3": [LN2 - 0.5, 1 - LN2],
}
_LOGP = [math.log(0.5), math.log(0.25)]
_REF = [math.log(0.25), math.log(0.5)]


@pytest.mark.parametrize("name", sorted(KL_GOLDEN))
def test_kl_estimator_golden_values(name):
    torch.testing.assert_close(KL_ESTIMATORS[name](_t(_LOGP), _t(_REF)), _t(KL_GOLDEN[name]))


@pytest.mark.parametrize("name", sorted(KL_ESTIMATORS))
def test_kl_estimator_zero_when_policy_equals_reference(name):
    logp = torch.randn(3, 5, generator=torch.Generator().manual_seed(7)) - 2.0
    assert torch.equal(KL_ESTIMATORS[name](logp, logp.clone()), torch.zeros(3, 5))


def test_kl_loss_aggregates_like_the_policy_loss():
    # token_mean over the two real tokens: k3 (ln 2 - 0.5 + 1 - ln 2) / 2 = 0.25; k1 (ln 2 - ln 2) / 2 = 0
    logp, ref = _t([_LOGP + [-7.0]]), _t([_REF + [-1.0]])  # third token is padding
    mask = _t([[1.0, 1.0, 0.0]])
    torch.testing.assert_close(kl_loss(logp, ref, mask), _t(0.25))
    torch.testing.assert_close(kl_loss(logp, ref, mask, estimator="k1"), _t(0.0))
    # seq_mean_token_sum_norm with T = 3: 0.5 / (1 * 3) = 1/6
    torch.testing.assert_close(kl_loss(logp, ref, mask, aggregation="seq_mean_token_sum_norm"), _t(1 / 6))


def test_k3_is_nonnegative():
    gen = torch.Generator().manual_seed(8)
    logp = torch.randn(10_000, generator=gen, dtype=F64) * 3
    ref = torch.randn(10_000, generator=gen, dtype=F64) * 3
    assert KL_ESTIMATORS["k3"](logp, ref).min() >= 0.0
    # float32 and near-equal policies: allow one ulp-scale rounding of exp(x) - x - 1 at 1
    near = logp.float() + 1e-3 * torch.randn(10_000, generator=gen)
    assert KL_ESTIMATORS["k3"](logp.float(), near).min() >= -2e-7


def test_k3_is_exactly_nonnegative_in_float32_near_zero():
    ref = torch.linspace(-1e-3, 1e-3, 20_001)
    assert KL_ESTIMATORS["k3"](torch.zeros_like(ref), ref).min() >= 0.0


def test_k3_clamps_extreme_ratios():
    # ref_logp - logp = -inf -> clamp -20 -> e^-20 + 20 - 1 ~ 19 -> clamp 10;  = +30 -> clamp 20 -> e^20 - 21 -> 10
    k3 = KL_ESTIMATORS["k3"](_t([0.0, -30.0]), _t([float("-inf"), 0.0]))
    torch.testing.assert_close(k3, _t([10.0, 10.0]))


def test_kl_estimators_monte_carlo_on_small_categorical():
    # pi = [0.5, 0.3, 0.2], ref = [0.2, 0.3, 0.5]
    # KL(pi || ref) = 0.5 ln 2.5 + 0.3 ln 1 + 0.2 ln 0.4 = (0.5 - 0.2) ln 2.5 = 0.3 * 0.9162907 = 0.2748872
    # k3 per outcome, ref/pi = 0.4, 1, 2.5: 0.4 - 1 + 0.9162907 = 0.3162907, 0, 1.5 - 0.9162907 = 0.5837093
    #   E k3 = 0.5 * 0.3162907 + 0.2 * 0.5837093 = 0.1581454 + 0.1167419 = 0.2748872 (= KL, since E ref/pi = 1)
    #   E k3^2 = 0.5 * 0.1000398 + 0.2 * 0.3407166 = 0.1181632; Var = 0.1181632 - 0.2748872^2 = 0.0426002
    #   sd = 0.2064, so with n = 200_000 the standard error is 0.2064 / 447.2 = 4.6e-4; allow 5 SE = 2.3e-3
    # k1 = ln(pi/ref) = 0.9162907, 0, -0.9162907: E = KL; E k1^2 = 0.7 * 0.8395887 = 0.5877121,
    #   Var = 0.5877121 - 0.0755630 = 0.5121491, sd 0.7156, SE 1.6e-3; allow 5 SE = 8e-3
    # k2 = k1^2 / 2 = 0.4197944 w.p. 0.7: E k2 = 0.2938561 (biased by +0.019), sd = 0.4198 * sqrt(0.21) = 0.1924
    kl_true = 0.3 * math.log(2.5)
    pi = _t([0.5, 0.3, 0.2])
    ref = _t([0.2, 0.3, 0.5])

    # exact expectation by enumeration: sum_a pi(a) k3(a) = KL
    exact = (pi * KL_ESTIMATORS["k3"](pi.log(), ref.log())).sum()
    torch.testing.assert_close(exact, _t(kl_true))

    samples = torch.multinomial(pi, 200_000, replacement=True, generator=torch.Generator().manual_seed(9))
    logp, ref_logp = pi.log()[samples], ref.log()[samples]
    k1, k2, k3 = (KL_ESTIMATORS[k](logp, ref_logp) for k in ("k1", "k2", "k3"))
    assert abs(k3.mean().item() - kl_true) < 2.3e-3
    assert abs(k1.mean().item() - kl_true) < 8e-3
    # k2 converges to 0.2938561, not KL: SE 0.1924 / 447.2 = 4.3e-4, 5 SE = 2.2e-3 (bias 0.019 = 44 SE)
    assert abs(k2.mean().item() - 0.2938561) < 2.2e-3
    assert k3.var().item() < k1.var().item() / 5  # 0.043 vs 0.512: the low-variance estimator


# ----------------------------------------------------------------------------- logits helpers


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_uniform_logits_give_log_v_at_any_temperature(temperature):
    # softmax of constant logits over V = 4 is 1/4 whatever the temperature: logp = -ln 4, H = ln 4
    logits = torch.full((2, 3, 4), 7.0)  # (B, T, V)
    tokens = torch.tensor([[0, 1, 3], [2, 2, 0]])  # (B, T)
    logp = token_logp(logits, tokens, temperature=temperature)
    assert logp.shape == (2, 3)
    torch.testing.assert_close(logp, torch.full((2, 3), -math.log(4.0)))
    torch.testing.assert_close(entropy_from_logits(logits, temperature=temperature), torch.full((2, 3), math.log(4.0)))


def _binary_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_token_logp_and_entropy_with_temperature():
    # logits [0, ln 3]:
    #   T = 1: pi = [1, 3] / 4 = [0.25, 0.75]; logp = [ln 0.25, ln 0.75] = [-1.3862944, -0.2876821]
    #          H = 0.25 * 1.3862944 + 0.75 * 0.2876821 = 0.3465736 + 0.2157616 = 0.5623351
    #   T = 2: logits / 2 = [0, ln sqrt 3]; pi = [1, sqrt 3] / (1 + sqrt 3) = [0.3660254, 0.6339746]
    #          logp = [-ln(1 + sqrt 3), ln sqrt 3 - ln(1 + sqrt 3)] = [-1.0050525, -0.4557464]
    #          H = 0.3660254 * 1.0050525 + 0.6339746 * 0.4557464 = 0.3678747 + 0.2889317 = 0.6568064
    logits = torch.tensor([[0.0, math.log(3.0)]] * 2)  # (T, V) = (2, 2)
    tokens = torch.tensor([0, 1])
    torch.testing.assert_close(token_logp(logits, tokens), torch.tensor([math.log(0.25), math.log(0.75)]))
    torch.testing.assert_close(entropy_from_logits(logits), torch.full((2,), _binary_entropy(0.25)))
    assert abs(_binary_entropy(0.25) - 0.5623351) < 1e-7
    p = 1 / (1 + math.sqrt(3))
    torch.testing.assert_close(
        token_logp(logits, tokens, temperature=2.0), torch.tensor([math.log(p), math.log(1 - p)])
    )
    torch.testing.assert_close(entropy_from_logits(logits, temperature=2.0), torch.full((2,), _binary_entropy(p)))
    assert abs(_binary_entropy(p) - 0.6568064) < 1e-7


def test_logits_helpers_return_float32_for_half_inputs():
    logits = torch.zeros(3, 4, dtype=torch.bfloat16)
    assert token_logp(logits, torch.tensor([0, 1, 2])).dtype == torch.float32
    assert entropy_from_logits(logits).dtype == torch.float32


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logp_and_entropy_match_float64_and_share_one_log_softmax(temperature):
    """One log_softmax for both: float32 values and gradients within 1e-6 of float64 (relative, with a
    1e-6 floor), the entropy bit-identical to `entropy_from_logits`, and logp equal to `token_logp`."""
    from rftlab.objectives import token_logp_and_entropy

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 300, generator=gen) * 8  # confident and flat positions both
    tokens = torch.randint(0, 300, (2, 5), generator=gen)
    tokens[0] = logits[0].argmax(-1)  # log p near 0: where token - logsumexp loses precision
    results = []
    for dtype in (torch.float32, torch.float64):
        z = logits.to(dtype).detach().clone().requires_grad_()
        logp, entropy = token_logp_and_entropy(z, tokens, temperature, with_entropy=True)
        logp.sum().backward()
        results.append((logp.detach().double(), entropy.double(), z.grad.double()))
    (logp32, ent32, grad32), (logp64, ent64, grad64) = results
    torch.testing.assert_close(logp32, logp64, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ent32, ent64, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grad32, grad64, atol=1e-6, rtol=1e-6)
    assert torch.equal(ent32.float(), entropy_from_logits(logits, temperature))
    assert torch.equal(logp32.float(), token_logp(logits, tokens, temperature))
    assert token_logp_and_entropy(logits, tokens, temperature)[1] is None
