"""Predictions for the tabular softmax gradient bandit with a verifiable 0/1 reward.

Setting (the paper's bottom layer, and `KArmedEnv` with `PooledSoftmax`): K arms, logits z,
pi = softmax(z); one optimal arm (reward 1), the K - 1 others wrong (reward 0) and initially
uniform, so the initial optimal mass p0 fixes the optimal logit. A round draws G arms, turns
correctness into rewards by a reward design, into advantages A_g by an estimator, and takes one
SGD step (mu = 1, so the PPO ratio is 1) on the token-mean loss -(1/G) sum_g A_g log pi(a_g):

    z <- z + (lr / G) sum_g A_g (e_{a_g} - pi)                                         (1)

With advantage `none`, G = 1 and rewards {0, 1} this is REINFORCE without a baseline, the
"stochastic gradient bandit algorithm" of Mei et al. 2023 ("Stochastic Gradient Succeeds for
Bandits", ICML 2023, arXiv 2402.17235: almost-sure convergence to the optimal policy at rate O(1/t)
with a constant step size small enough) and Mei et al. 2025 ("Small steps no more: global
convergence of stochastic gradient bandits for arbitrary learning rates", NeurIPS 2024, arXiv
2502.07141: almost-sure convergence for any constant learning rate). With advantage
`running_mean` it is the gradient bandit algorithm of Sutton & Barto (2018), sec. 2.8,
H(a) <- H(a) + alpha (R - Rbar)(1{a = A} - pi(a)). Those results concern the limit t -> infinity;
here we compute the finite-time quantities the simulator is compared with.

Functions:
    minimalist_exact        exact law of the optimal mass over rounds (one optimal arm, G = 1,
                            {0, 1} reward, no advantage, SGD), any K; includes P(no success yet).
    expected_next_mass      exact one-step E[p'] and Var[p'] for any small K, any logits, any G,
                            advantage and reward design, by enumerating all K^G draws.
    expected_logit_update   exact one-step E[z' - z] the same way: baselines leave it unchanged.
    mean_field_drift        first-order-in-lr E[p' - p] for large K, other arms symmetric; shows
                            what GRPO normalization, negative rewards and G do to the update.
    mean_field_trajectory   the ODE dp/dt = drift(p) (RK4) or the iteration p <- p + drift(p).
    failure_probability     P(no correct rollout in T rounds) = prod_t (1 - p_t)^G.
"""

from __future__ import annotations

import itertools
import math

import torch

from rftlab.objectives import REWARD_DESIGNS, get_advantage


def _p_from_gap(x: float, arms: int) -> float:
    """Optimal mass for logit gap x = z_opt - z_other with K - 1 equal others."""
    return 1.0 / (1.0 + (arms - 1) * math.exp(-x))


def _gap_from_p(p: float, arms: int) -> float:
    return math.log(p * (arms - 1) / (1.0 - p))


def minimalist_exact(arms: int, p0: float, lr: float, rounds: int) -> dict[str, torch.Tensor]:
    """Exact distribution of the optimal mass p_t, t = 0..T, for the minimalist configuration.

    Setting: one optimal arm, K - 1 wrong arms with equal logits, G = 1, rewards {0, 1}, advantage
    `none` (the reward itself), one SGD step per round (the paper's bottom layer with SGD).

    Derivation. A wrong draw has R = 0, hence a zero gradient: nothing moves (and the wrong arms stay
    equal forever). A correct draw applies (1) with A = 1: z_opt += lr (1 - p), every other logit
    -= lr (1 - p) / (K - 1), so the gap x = z_opt - z_other grows by lr (1 - p) K / (K - 1). The
    state after n successes is therefore a deterministic p_(n), and the number of successes N_t is
    a Markov chain with P(N_{t+1} = n + 1 | N_t = n) = p_(n). Dynamic programming over n gives the
    exact law of p_t = p_(N_t) in O(T^2).

    Returns float64 tensors over t = 0..T: `mean`, `std` (of p_t across seeds), `p_no_success`
    (= (1 - p0)^t: the probability that no optimal arm was sampled yet, the failure mode of an
    extremely hard example), and `p_by_successes` (p_(n), n = 0..T).
    """
    p_n = torch.empty(rounds + 1, dtype=torch.float64)
    x = _gap_from_p(p0, arms)
    for n in range(rounds + 1):
        p = _p_from_gap(x, arms)
        p_n[n] = p
        x += lr * (1.0 - p) * arms / (arms - 1)
    law = torch.zeros(rounds + 1, dtype=torch.float64)
    law[0] = 1.0
    mean, sq, none = [p0], [p0 * p0], [1.0]
    for _ in range(rounds):
        moved = law * p_n
        law = law - moved
        law[1:] += moved[:-1]
        mean.append(float((law * p_n).sum()))
        sq.append(float((law * p_n * p_n).sum()))
        none.append(float(law[0]))
    mean_t, sq_t = torch.tensor(mean, dtype=torch.float64), torch.tensor(sq, dtype=torch.float64)
    return {
        "mean": mean_t,
        "std": (sq_t - mean_t**2).clamp(min=0).sqrt(),
        "p_no_success": torch.tensor(none, dtype=torch.float64),
        "p_by_successes": p_n,
    }


def expected_next_mass(
    logits: torch.Tensor,
    optimal: torch.Tensor,
    lr: float,
    rollouts: int = 1,
    advantage: str = "none",
    reward_design: str = "binary",
    baseline: float = 0.0,
    advantage_params: dict | None = None,
) -> tuple[float, float]:
    """Exact (E[p'], Var[p']) of the optimal mass after one SGD round (1), for small K.

    Enumerates all K^G ordered draws (a_1..a_G) with probability prod_g pi(a_g), applies the reward
    design and the advantage estimator of `rftlab.objectives` (the definitions under test), then the
    update (1) exactly (no linearization). mu = 1, token-mean aggregation, SGD, no KL. `baseline` is
    the running-mean baseline, read only by `running_mean`; `advantage_params` the estimator's other
    knobs (`positive_weight`, `difficulty`). Cost K^G: meant for K^G <= ~10^5.
    """
    weight, z_new = _one_round_outcomes(
        logits, optimal, lr, rollouts, advantage, reward_design, baseline, advantage_params
    )
    p_new = (torch.softmax(z_new, -1) * optimal).sum(-1)
    mean = float((weight * p_new).sum())
    return mean, float((weight * (p_new - mean) ** 2).sum())


def _one_round_outcomes(
    logits, optimal, lr, rollouts, advantage, reward_design, baseline, advantage_params
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probability (N,), logits after the round (N, K)) of every ordered draw of G arms: update (1)."""
    z = logits.double()
    pi = torch.softmax(z, -1)
    arms = z.shape[0]
    wrong, right = REWARD_DESIGNS[reward_design]
    draws = torch.tensor(list(itertools.product(range(arms), repeat=rollouts)))  # (N, G)
    weight = pi[draws].prod(-1)  # (N,)
    rewards = torch.where(optimal[draws], right, wrong).double()  # (N, G)
    adv = get_advantage(advantage)(
        rewards, baseline=torch.full((len(draws),), baseline), **(advantage_params or {})
    ).double()
    onehot = torch.nn.functional.one_hot(draws, arms).double()  # (N, G, K)
    return weight, z + (lr / rollouts) * (adv[..., None] * (onehot - pi)).sum(1)  # (N, K)


def expected_logit_update(
    logits: torch.Tensor,
    optimal: torch.Tensor,
    lr: float,
    rollouts: int = 1,
    advantage: str = "none",
    reward_design: str = "binary",
    baseline: float = 0.0,
    advantage_params: dict | None = None,
) -> torch.Tensor:
    """Exact E[z' - z] (K,) of one SGD round (1), by enumerating all K^G draws (as `expected_next_mass`).

    The logits' expected update is linear in the advantages, which makes two properties exact:
    a baseline b that does not depend on the round's draws changes nothing in expectation, because
    E[e_a - pi] = 0 (Williams 1992; Sutton & Barto 2018, sec. 2.8: `running_mean`'s update equals
    `none`'s for every b), and `w_reinforce`'s A = (1 + lambda) R - 1 gives (1 + lambda) times the
    minimalist's expected update. What b and lambda do change is the variance (see `expected_next_mass`).
    """
    weight, z_new = _one_round_outcomes(
        logits, optimal, lr, rollouts, advantage, reward_design, baseline, advantage_params
    )
    return (weight[:, None] * (z_new - logits.double())).sum(0)


def _advantages_given_successes(
    c: int, rollouts: int, advantage: str, reward_design: str, advantage_params: dict | None = None
) -> tuple[float, float]:
    """(A of a correct rollout, A of a wrong rollout) in a group with c correct of G."""
    wrong, right = REWARD_DESIGNS[reward_design]
    rewards = torch.tensor([right] * c + [wrong] * (rollouts - c), dtype=torch.float64)
    adv = get_advantage(advantage)(rewards[None], **(advantage_params or {})).double()[0]
    return (float(adv[0]) if c > 0 else 0.0, float(adv[-1]) if c < rollouts else 0.0)


def mean_field_drift(
    p: float,
    arms: int,
    lr: float,
    rollouts: int = 1,
    advantage: str = "none",
    reward_design: str = "binary",
    advantage_params: dict | None = None,
) -> float:
    """E[p' - p] to first order in lr, one optimal arm, wrong arms symmetric (equal logits).

    Linearizing softmax, d log p = dz_opt - sum_i pi_i dz_i. With c ~ Binomial(G, p) correct draws
    (all on the optimal arm) and G - c wrong draws on distinct wrong arms of mass q = (1-p)/(K-1)
    each, s2 = sum_i pi_i^2 = p^2 + (K-1) q^2, update (1) gives

        d log p = (lr / G) [ c A1(c) (1 - 2p + s2) + (G - c) A0(c) (s2 - p - q) ],

    and E[dp] = p E_c[d log p]. What it says (K large: s2 ~ p^2, q ~ 0):
    * minimalist ({0,1}, `none`, any G): drift lr p^2 (1-p)^2 per round -- independent of G per round
      (the 1/G of token-mean cancels the G draws), so G rollouts cost G times the samples for the
      same expected progress; the rollouts only average the noise.
    * `neg` ({-1, 0}): correct draws carry A1 = 0, and a wrong draw pushes its own arm down, which
      raises p by lr p (1 - p) to first order: the drift is again lr p^2 (1-p)^2 (all of it from wrong
      draws). `pm1` ({-1, 1}) adds both: 2 lr p^2 (1-p)^2. In the tabular bandit, negative rewards do
      not stall the expected update; what they change is where the mass goes (the sampled wrong arm
      loses, every unsampled arm gains a little) -- see the sequence and correlated envs for shared
      parameters, and Adam, which rescales these tiny coordinates to full steps.
    * `grpo`: A1(c) = (1 - c/G)/sigma_c, A0(c) = -(c/G)/sigma_c with sigma_c the group's sample std;
      for a rare success (c = 1) the step is sqrt(G)(1 - 1/G) instead of 1: larger early progress,
      and near p -> 1 a lone failure gets advantage -(G-1)/sqrt(G): larger, noisier steps.
    Accuracy: first order in lr; the ODE built from it also ignores the randomness of the time of the
    first success, so it tracks the mean well only when lr is small and p0 not tiny.
    """
    q = (1.0 - p) / (arms - 1)
    s2 = p * p + (arms - 1) * q * q
    total = 0.0
    for c in range(rollouts + 1):
        prob_c = math.comb(rollouts, c) * p**c * (1.0 - p) ** (rollouts - c)
        a1, a0 = _advantages_given_successes(c, rollouts, advantage, reward_design, advantage_params)
        dlogp = (lr / rollouts) * (c * a1 * (1 - 2 * p + s2) + (rollouts - c) * a0 * (s2 - p - q))
        total += prob_c * dlogp
    return p * total


def mean_field_trajectory(
    p0: float,
    arms: int,
    lr: float,
    rounds: int,
    rollouts: int = 1,
    advantage: str = "none",
    reward_design: str = "binary",
    method: str = "ode",
    substeps: int = 8,
    advantage_params: dict | None = None,
) -> torch.Tensor:
    """p_t, t = 0..T, from dp/dt = mean_field_drift(p) (method `ode`, RK4 with `substeps` per round)
    or from the deterministic expected-update iteration p <- p + drift(p) (method `iterate`)."""

    def f(p: float) -> float:
        p = min(max(p, 1e-300), 1.0 - 1e-16)
        return mean_field_drift(p, arms, lr, rollouts, advantage, reward_design, advantage_params)

    out, p = [p0], p0
    h = 1.0 / substeps
    for _ in range(rounds):
        if method == "iterate":
            p = p + f(p)
        else:
            for _ in range(substeps):
                k1 = f(p)
                k2 = f(p + 0.5 * h * k1)
                k3 = f(p + 0.5 * h * k2)
                k4 = f(p + h * k3)
                p = p + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        p = min(max(p, 0.0), 1.0)
        out.append(p)
    return torch.tensor(out, dtype=torch.float64)


def failure_probability(
    p0: float,
    rounds: int,
    rollouts: int = 1,
    *,
    arms: int | None = None,
    lr: float = 0.0,
    weight_decay: float = 0.0,
) -> float:
    """P(not one correct rollout in T rounds) for rewards {0, 1}: prod_{t<T} (1 - p_t)^G.

    Why an extremely hard example fails: with R in {0, 1}, a round without a correct rollout has
    all rewards 0, so every registered advantage is 0 (`none`: A = R = 0; `grpo`, `mean`, `rloo`:
    an all-equal group; `running_mean`: the baseline of all-zero rewards is 0). The gradient is
    exactly zero, SGD does not move, and Adam does not either (zero moments give a zero step), so
    p_t = p0 until the first success and the probability is (1 - p0)^(G T) ~ exp(-G T p0): for
    p0 << 1/(G T) the run almost surely never learns.

    What breaks this: (a) decoupled weight decay (AdamW, as in the paper's verl recipe) shrinks every
    logit by (1 - lr wd) per round even with zero gradients -- for one optimal arm at logit z0 and
    K - 1 arms at 0, z_opt(t) = z0 (1 - lr wd)^t, which moves p_t towards 1/K (pass `arms`, `lr`,
    `weight_decay` to include this); (b) negative reward designs (`neg`, `pm1`): wrong rollouts get a
    nonzero signal, so p_t moves before any success (see `mean_field_drift`); (c) a KL term.
    """
    if weight_decay == 0.0 or lr == 0.0:
        return (1.0 - p0) ** (rollouts * rounds)
    if arms is None:
        raise ValueError("weight decay needs `arms` (the number of arms) to know where p_t decays to")
    z0 = _gap_from_p(p0, arms)
    log_fail = 0.0
    for t in range(rounds):
        p_t = _p_from_gap(z0 * (1.0 - lr * weight_decay) ** t, arms)
        log_fail += rollouts * math.log1p(-p_t)
    return math.exp(log_fail)
