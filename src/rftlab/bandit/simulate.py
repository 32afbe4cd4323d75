"""The bandit round loop, vectorized over seeds, on rftlab's own objectives.

One round, for S seeds at once (seeds are the leading tensor dim):
    sample G rollouts -> verify (correct) -> reward design -> advantage -> mu updates of the clipped
    surrogate (+ optional KL to the initial policy) with SGD or Adam -> record the optimal mass.

Reward designs, advantages, the clipped loss, loss aggregation and KL come from `rftlab.objectives`
unchanged; their leading dims carry the seeds, so the per-seed losses are summed and each seed's
parameters receive exactly their own gradient. Deviations from the LLM trainer: no grad-norm
clipping (it would couple nothing across seeds but is not part of the bandit theory), one prompt
per round (the correlated env draws which).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor
from tqdm import tqdm

from rftlab.bandit.envs import PooledSoftmax, check
from rftlab.bandit.optim import BanditOptimizer, optimizer_step
from rftlab.objectives import (
    ADVANTAGES,
    GRPO_LEAD_WEIGHTS,
    LOSS_AGGREGATIONS,
    REWARD_DESIGNS,
    DifficultyWeights,
    check_name,
    clipped_policy_loss,
    get_advantage,
    kl_loss,
    shape_reward,
    update_running_baseline,
)


@dataclass(frozen=True)
class SimConfig:
    """One bandit training configuration (the knobs of the LLM pipeline's layers)."""

    rounds: int = 200  # training rounds T
    rollouts: int = 1  # G, rollouts per round
    advantage: str = "none"  # a name in rftlab.objectives.ADVANTAGES
    reward_design: str = "binary"  # a name in rftlab.objectives.REWARD_DESIGNS
    updates_per_batch: int = 1  # mu; the ratio and clipping bind only when mu > 1
    clip_eps_low: float = 0.2  # PPO clip range below 1
    clip_eps_high: float = 0.2  # PPO clip range above 1
    dual_clip: float | None = None  # dual-clip constant c > 1, or None
    aggregation: str = "token_mean"  # a name in rftlab.objectives.LOSS_AGGREGATIONS
    kl_coef: float = 0.0  # weight of the KL-to-initial-policy loss term (0 = off)
    kl_estimator: str = "k3"  # k1 | k2 | k3
    baseline_step: float | None = None  # running_mean baseline: None = exact mean, else EMA step
    positive_weight: float = 0.1  # w_reinforce's lambda
    difficulty: DifficultyWeights = GRPO_LEAD_WEIGHTS  # grpo_lead's weight of a group's accuracy
    optim: BanditOptimizer = field(default_factory=BanditOptimizer)
    eval_every: int = 1  # record metrics every this many rounds
    fast_reinforce: bool = True  # mu = 1, no KL: reuse the objective's ratio-1 gradient (identical result)

    def __post_init__(self) -> None:
        check(self.rounds >= 1, f"--rounds must be >= 1 (got {self.rounds})")
        check(self.rollouts >= 1, f"--rollouts must be >= 1 (got {self.rollouts})")
        check(self.updates_per_batch >= 1, f"--updates-per-batch must be >= 1 (got {self.updates_per_batch})")
        check(self.eval_every >= 1, f"--eval-every must be >= 1 (got {self.eval_every})")
        check(self.clip_eps_low >= 0 and self.clip_eps_high >= 0, "--clip-eps-low and --clip-eps-high must be >= 0")
        check_name(ADVANTAGES, "--advantage", self.advantage)
        check_name(REWARD_DESIGNS, "--reward-design", self.reward_design)
        designs = ADVANTAGES[self.advantage].reward_designs
        check(
            designs is None or self.reward_design in designs,
            f"--reward-design {self.reward_design} does not suit --advantage {self.advantage}; allowed: "
            f"{', '.join(designs or ())}",
        )
        check(self.positive_weight >= 0, f"--positive-weight must be >= 0 (got {self.positive_weight})")
        check_name(LOSS_AGGREGATIONS, "--aggregation", self.aggregation)
        check(self.dual_clip is None or self.dual_clip > 1, f"--dual-clip must be > 1 (got {self.dual_clip})")

    def with_(self, **changes) -> SimConfig:
        return replace(self, **changes)


@dataclass
class SimResult:
    """Per-seed metric trajectories: metrics[name] is (E, S) at `rounds` (E evaluations, round 0 first).

    Always present: `optimal_mass` (Pass@1 on the training instance(s)) and `successes` (cumulative
    number of correct rollouts); the correlated env adds `test_optimal_mass` (held-out instances).
    """

    rounds: list[int]
    metrics: dict[str, Tensor]
    config: SimConfig

    def mean(self, name: str = "optimal_mass") -> Tensor:
        return self.metrics[name].mean(-1)

    def std(self, name: str = "optimal_mass") -> Tensor:
        return self.metrics[name].std(-1) if self.metrics[name].shape[-1] > 1 else torch.zeros(len(self.rounds))


def _ratio_one_gradient(rollouts: int, tokens: int, cfg: SimConfig, dtype: torch.dtype) -> Tensor:
    """d loss / d logp (1, G, T) of `clipped_policy_loss` at ratio 1 with A = 1 and a full mask.

    At the single update of a batch (mu = 1) the ratio is exactly 1, both branches of the clipped
    surrogate (and the dual clip) are inactive, and the loss is linear in A: d loss / d logp_{g,t} =
    A_g * this tensor. Computed by autograd through rftlab.objectives itself (nothing re-derived), so
    every aggregation keeps its own normalization.
    """
    key = (rollouts, tokens, cfg.aggregation, cfg.clip_eps_low, cfg.clip_eps_high, cfg.dual_clip, dtype)
    if key not in _PROBES:
        logp = torch.zeros(1, rollouts, tokens, dtype=dtype, requires_grad=True)
        loss, _ = clipped_policy_loss(
            logp,
            logp.detach(),
            torch.ones(1, rollouts, dtype=dtype),
            torch.ones(1, rollouts, tokens, dtype=dtype),
            clip_eps_low=cfg.clip_eps_low,
            clip_eps_high=cfg.clip_eps_high,
            dual_clip=cfg.dual_clip,
            aggregation=cfg.aggregation,
        )
        _PROBES[key] = torch.autograd.grad(loss.sum(), logp)[0]
    return _PROBES[key]


_PROBES: dict[tuple, Tensor] = {}


def policy_update(policy, actions: Tensor, adv: Tensor, cfg: SimConfig, step: int) -> int:
    """mu optimizer steps of the clipped surrogate (+ KL) on one batch; returns the updated step count.

    actions (S, G, ...) with logp (S, G, T); adv (S, G). The per-seed losses (S,) are summed, so each
    seed's parameters get exactly the gradient of their own loss. With mu = 1 and no KL (and
    `cfg.fast_reinforce`), the loss's gradient w.r.t. logp is taken as A * (its value at A = 1, ratio 1)
    -- the same number autograd would produce, without rebuilding the surrogate's graph every round
    (tests/bandit/test_envs.py checks both paths give the same trajectory).
    """
    if cfg.fast_reinforce and cfg.updates_per_batch == 1 and cfg.kl_coef == 0:
        logp = policy.logp(actions)  # (S, G, T)
        weight = adv.to(logp.dtype)[..., None] * _ratio_one_gradient(logp.shape[1], logp.shape[2], cfg, logp.dtype)
        grads = torch.autograd.grad(logp, policy.params, grad_outputs=weight)
        optimizer_step(policy, list(grads), cfg.optim, step + 1)
        return step + 1
    ref_logp = policy.ref_logp(actions) if cfg.kl_coef > 0 else None
    logp = policy.logp(actions)  # (S, G, T)
    old_logp = logp.detach()  # the parameters that drew the batch: ratio 1 at the first update
    mask = torch.ones_like(old_logp)
    adv = adv.to(logp.dtype)
    for i in range(cfg.updates_per_batch):
        if i > 0:
            logp = policy.logp(actions)
        loss, _ = clipped_policy_loss(
            logp,
            old_logp,
            adv,
            mask,
            clip_eps_low=cfg.clip_eps_low,
            clip_eps_high=cfg.clip_eps_high,
            dual_clip=cfg.dual_clip,
            aggregation=cfg.aggregation,
        )  # (S,)
        if ref_logp is not None:
            kl = kl_loss(logp, ref_logp, mask, estimator=cfg.kl_estimator, aggregation=cfg.aggregation)
            loss = loss + cfg.kl_coef * kl
        grads = torch.autograd.grad(loss.sum(), policy.params)
        step += 1
        optimizer_step(policy, list(grads), cfg.optim, step)
    return step


def simulate(
    env,
    cfg: SimConfig,
    n_seeds: int,
    seed: int = 0,
    *,
    progress: bool = False,
    on_eval=None,
) -> SimResult:
    """Train `n_seeds` independent policies on `env` under `cfg`; all randomness from `seed`.

    Paired seeds: two calls with the same (env, n_seeds, seed) start from the same policies and draw
    from the same generator stream, so variant differences can be compared seed by seed.
    on_eval(round, metrics) is called at every evaluation (metrics: name -> (S,) tensor).
    """
    gen = torch.Generator().manual_seed(seed)
    policy = env.make_policy(n_seeds, gen)
    advantage_fn = get_advantage(cfg.advantage)
    needs_ref = cfg.kl_coef > 0
    if needs_ref:
        policy.freeze_reference()
    baseline = torch.zeros(n_seeds)
    count = torch.zeros(n_seeds, dtype=torch.long)

    successes = torch.zeros(n_seeds)  # cumulative correct rollouts per seed
    rounds = [0] + [t for t in range(1, cfg.rounds + 1) if t % cfg.eval_every == 0 or t == cfg.rounds]
    # Preallocated, not appended: small tensors kept alive between each round's large temporaries
    # pin glibc's heap, and RSS then grew by ~20 MB per round (5.4 GB after 300 rounds of a
    # 1000-arm correlated bandit, 200 seeds); one block per metric keeps it flat.
    first = policy.metrics() | {"successes": successes}
    history = {k: torch.empty((len(rounds), *v.shape), dtype=v.dtype) for k, v in first.items()}
    for k, v in first.items():
        history[k][0] = v
    row = 0
    step = 0
    # a transient bar on a terminal only: in a log file or CI its carriage returns are noise
    show = progress and sys.stderr.isatty()
    for t in tqdm(range(1, cfg.rounds + 1), disable=not show, desc="bandit", unit="round", leave=False):
        # ---- roll out and verify
        if hasattr(policy, "start_round"):
            policy.start_round(gen)
        actions = policy.sample(gen, cfg.rollouts)  # (S, G, ...)
        correct = policy.correct(actions)  # (S, G)
        # ---- reward design and advantage
        successes += correct.sum(-1)
        rewards = shape_reward(correct, cfg.reward_design)  # (S, G)
        adv = advantage_fn(
            rewards,
            baseline=baseline if advantage_fn.uses_baseline else None,
            positive_weight=cfg.positive_weight,
            difficulty=cfg.difficulty,
        )
        if isinstance(policy, PooledSoftmax):  # arms with a possibly nonzero gradient leave their pool
            weighted = torch.ones_like(correct) if needs_ref else adv != 0
            actions = policy.split(actions, weighted, gen)
        # ---- mu updates on the same batch
        step = policy_update(policy, actions, adv, cfg, step)
        if advantage_fn.uses_baseline:
            baseline, count = update_running_baseline(baseline, count, rewards, cfg.baseline_step)
        # ---- evaluate
        if t % cfg.eval_every == 0 or t == cfg.rounds:
            metrics = policy.metrics() | {"successes": successes}
            row += 1
            for k, v in metrics.items():
                history[k][row] = v
            if on_eval is not None:
                on_eval(t, metrics)
    return SimResult(rounds, {k: v.float() for k, v in history.items()}, cfg)
