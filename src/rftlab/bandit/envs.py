"""Bandit environments with their softmax policies, every tensor vectorized over S seeds.

The paper's bottom layer (one prompt, reward from a verifier) is a bandit whose arms are responses
and whose optimal arms are the correct responses. Three instances of that view:

* `KArmedEnv`     K arms (up to 10^6 and beyond), m of them optimal, tabular softmax policy whose
                  initial optimal mass p0 is the example's difficulty (the base model's Pass@1).
* `SequenceEnv`   arms are token sequences of length L over V tokens (V^L arms); a deterministic
                  finite automaton decides correctness; autoregressive softmax policy whose logits
                  are a table per (position, last k tokens) -- memory S*L*V^k*V, never V^L.
* `CorrelatedEnv` a family of instances ("prompts") whose arms have features; the policy is a softmax
                  over features @ theta with theta shared by every arm and instance, so one update
                  moves many arms, and held-out instances measure generalization.

A policy is a `BanditPolicy`: it samples actions (S, G, ...), gives their log-probabilities
(S, G, T) as a differentiable function of its parameters, and its optimal mass (S,) -- the exact
probability that one fresh rollout is correct, i.e. the bandit's Pass@1. The simulator
(`rftlab.bandit.simulate`) feeds these through `rftlab.objectives`.

Every random draw takes an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from rftlab.errors import ConfigError

# ----------------------------------------------------------------------------- helpers


def sample_categorical(logits: Tensor, gen: torch.Generator, n: int) -> Tensor:
    """n inverse-CDF draws from softmax(logits) over the last dim; logits (..., K) -> (..., n)."""
    probs = torch.softmax(logits.double(), dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = torch.rand((*logits.shape[:-1], n), generator=gen, dtype=cdf.dtype) * cdf[..., -1:]
    return torch.searchsorted(cdf.contiguous(), u.contiguous()).clamp(max=logits.shape[-1] - 1)


def check(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless cond (user input validation, one line)."""
    if not cond:
        raise ConfigError(message)


def optimal_logit(p0: float, n_optimal: int, n_arms: int) -> float:
    """Logit z of the optimal arms (others at 0) such that m e^z / (m e^z + K - m) = p0."""
    return math.log(p0 * (n_arms - n_optimal) / (n_optimal * (1.0 - p0)))


class BanditPolicy:
    """Interface shared by the policies (documented here once; subclasses fill it in).

    params:   leaf tensors with a leading seed dim S, updated in place by `rftlab.bandit.optim`.
    sample(gen, G)  -> actions, leading dims (S, G); no gradient.
    logp(actions)   -> (S, G, T) log-probabilities of every token of every action (T = 1 for arms).
    optimal_mass()  -> (S,) probability that one fresh rollout is correct (the bandit's Pass@1).
    arm_grads(grads) -> per-coordinate gradients for the optimizer (identity except for pooled arms).
    """

    params: list[Tensor]
    n_seeds: int

    def sample(self, gen: torch.Generator, rollouts: int) -> Tensor:
        raise NotImplementedError

    def logp(self, actions: Tensor) -> Tensor:
        raise NotImplementedError

    def optimal_mass(self) -> Tensor:
        raise NotImplementedError

    def correct(self, actions: Tensor) -> Tensor:
        raise NotImplementedError

    def arm_grads(self, grads: list[Tensor]) -> list[Tensor]:
        return grads

    def ref_logp(self, actions: Tensor) -> Tensor:
        """logp(actions) under the initial parameters (the KL reference); no gradient."""
        if not hasattr(self, "_init"):
            raise RuntimeError("call freeze_reference() before the first update")
        current = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, p0 in zip(self.params, self._init, strict=True):
                p.copy_(p0)
            out = self.logp(actions)
            for p, c in zip(self.params, current, strict=True):
                p.copy_(c)
        return out

    def freeze_reference(self) -> None:
        self._init = [p.detach().clone() for p in self.params]

    def metrics(self) -> dict[str, Tensor]:
        """Per-seed metrics (S,) recorded every evaluation; always holds `optimal_mass`."""
        with torch.no_grad():
            return {"optimal_mass": self.optimal_mass()}


# ----------------------------------------------------------------------------- K arms


@dataclass(frozen=True)
class KArmedEnv:
    """K arms, the first m optimal; initial logits 0 for the others and z0 for the optimal arms.

    z0 is set so that the initial optimal mass is p0 (the difficulty). `pooled=True` (default)
    gives `PooledSoftmax`, exact and cheap for any K; `pooled=False` the dense (S, K) table.
    """

    arms: int = 1000
    optimal: int = 1
    p0: float = 0.1
    pooled: bool = True
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        check(self.arms >= 2, f"--arms must be an integer >= 2 (got {self.arms})")
        check(1 <= self.optimal < self.arms, f"--optimal must be in [1, arms) (got {self.optimal})")
        check(0.0 < self.p0 < 1.0, f"--p0 must be in the open interval (0, 1) (got {self.p0})")

    def make_policy(self, n_seeds: int, gen: torch.Generator | None = None) -> BanditPolicy:
        cls = PooledSoftmax if self.pooled else DenseSoftmax
        return cls(self, n_seeds)


class DenseSoftmax(BanditPolicy):
    """Tabular softmax with one logit per arm per seed, (S, K): the straightforward version."""

    def __init__(self, env: KArmedEnv, n_seeds: int):
        self.n_seeds, self.env = n_seeds, env
        z = torch.zeros(n_seeds, env.arms, dtype=env.dtype)
        z[:, : env.optimal] = optimal_logit(env.p0, env.optimal, env.arms)
        self.z = z.requires_grad_(True)
        self.params = [self.z]

    def sample(self, gen: torch.Generator, rollouts: int) -> Tensor:
        with torch.no_grad():
            return sample_categorical(self.z, gen, rollouts)  # (S, G) arm ids

    def logp(self, actions: Tensor) -> Tensor:
        return torch.log_softmax(self.z, dim=-1).gather(-1, actions).unsqueeze(-1)  # (S, G, 1)

    def correct(self, actions: Tensor) -> Tensor:
        return actions < self.env.optimal

    def optimal_mass(self) -> Tensor:
        return torch.softmax(self.z, dim=-1)[:, : self.env.optimal].sum(-1)


class PooledSoftmax(BanditPolicy):
    """Exact tabular softmax over K arms stored as slots: pools of untouched arms plus touched arms.

    Why this is the same algorithm as `DenseSoftmax`: the gradient of any loss of sampled
    log-probabilities w.r.t. the logits is sum_g w_g (e_{a_g} - pi), so every arm that was not
    sampled with a nonzero weight w_g gets the same coordinate of the gradient as every other arm
    with its logit, and SGD, Adam and weight decay act coordinate-wise. Arms that start with the
    same logit and have never been sampled with nonzero weight therefore keep identical logits and
    optimizer moments forever: they form a pool, stored once with its size. A sampled arm leaves its
    pool (becomes its own slot) only when its weight can be nonzero: advantage != 0 or a KL term.
    The pool's slot gradient is count * (per-arm gradient); `arm_grads` divides it back.

    Two pools at the start: the m optimal arms (logit z0) and the K - m others (logit 0). Within a
    round, a second nonzero-weight draw from the same pool is, with probability k / n (k arms of
    that pool already split off this round, n its size at the start of the round), one of those k
    arms -- uniformly -- and otherwise a new arm; this is exactly sampling arms with replacement.
    Memory: S * (2 + number of split arms); with reward-only 0/1 signal and one optimal arm, no
    arm ever splits and the whole policy is two logits per seed.
    """

    def __init__(self, env: KArmedEnv, n_seeds: int, capacity: int = 2):
        self.n_seeds, self.env = n_seeds, env
        cap = max(capacity, 2)
        self.z = torch.zeros(n_seeds, cap, dtype=env.dtype)
        self.z[:, 0] = optimal_logit(env.p0, env.optimal, env.arms)
        self.count = torch.zeros(n_seeds, cap, dtype=env.dtype)
        self.count[:, 0], self.count[:, 1] = env.optimal, env.arms - env.optimal
        self.log_count = self.count.log()  # -inf on unused slots
        self._cache: tuple | None = None  # (z version, used, log normalizer) for no-grad reuse
        self.is_optimal = torch.zeros(n_seeds, cap, dtype=torch.bool)
        self.is_optimal[:, 0] = True
        self.used = 2  # slots in use (max over seeds); per-seed next free slot in self.next_free
        self.next_free = torch.full((n_seeds,), 2, dtype=torch.long)
        self.z.requires_grad_(True)
        self.params = [self.z]
        self.moments: list[list[Tensor]] = []  # optimizer state tensors shaped like z (set by optim)

    # -- storage
    def _grow(self, need: int) -> None:
        cap = self.z.shape[1]
        if need <= cap:
            return
        extra = max(need, 2 * cap) - cap

        def pad(t: Tensor) -> Tensor:
            return torch.cat([t, torch.zeros(t.shape[0], extra, dtype=t.dtype)], dim=1)

        with torch.no_grad():
            z = pad(self.z.detach())
        self.z = z.requires_grad_(True)
        self.params[0] = self.z
        self.count, self.is_optimal = pad(self.count), pad(self.is_optimal)
        self.log_count = self.count.log()
        self.moments = [[pad(m) for m in group] for group in self.moments]

    def _log_norm(self) -> Tensor:
        """log Z = logsumexp(z + log count) (S,), no gradient; cached while z is unchanged."""
        u = self.used
        key = (self.z._version, id(self.z), u)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, torch.logsumexp(self.z[:, :u] + self.log_count[:, :u], dim=-1))
        return self._cache[1]

    # -- policy interface
    def sample(self, gen: torch.Generator, rollouts: int) -> Tensor:
        """Slots (S, G) drawn with probability count * exp(z) / Z; pool draws are resolved by `split`."""
        with torch.no_grad():
            u = self.used
            probs = torch.exp(self.z[:, :u] + self.log_count[:, :u] - self._log_norm()[:, None])
            cdf = probs.cumsum(dim=-1)
            draw = torch.rand((self.n_seeds, rollouts), generator=gen, dtype=cdf.dtype) * cdf[:, -1:]
            return torch.searchsorted(cdf, draw).clamp(max=u - 1)

    def split(self, slots: Tensor, weighted: Tensor, gen: torch.Generator) -> Tensor:
        """Give every nonzero-weight draw from a pool (count > 1) its own slot; returns new slots (S, G)."""
        n_seeds, rollouts = slots.shape
        pool_draw = weighted & (self.count.gather(1, slots) > 1)
        if not bool(pool_draw.any()):
            return slots
        slots = slots.clone()
        rows = torch.arange(n_seeds)
        pool_size = self.count[:, :2].clone()  # (S, 2) pool sizes at the start of the round
        k = torch.zeros(n_seeds, 2, dtype=torch.long)  # arms split off each pool this round
        split_slots = torch.zeros(n_seeds, 2, rollouts, dtype=torch.long)  # their slots, in order
        for g in range(rollouts):
            draw = pool_draw[:, g]
            if not bool(draw.any()):
                continue
            pool = slots[:, g].clamp(max=1)  # pools are slots 0 and 1
            k_pool = k.gather(1, pool[:, None]).squeeze(1)
            n_pool = pool_size.gather(1, pool[:, None]).squeeze(1)
            r = (torch.rand(n_seeds, generator=gen, dtype=torch.float64) * n_pool.double()).floor().long()
            repeat = draw & (r < k_pool)  # the same arm as the r-th arm split off this pool this round
            new = draw & ~repeat
            earlier = split_slots[rows, pool, r.clamp(max=rollouts - 1)]
            dst = self.next_free.clone()
            if bool(new.any()):
                idx, src = rows[new], pool[new]
                tgt = self.split_rows(idx, src)
                split_slots[idx, src, k[idx, src]] = tgt
                k[idx, src] += 1
            slots[:, g] = torch.where(new, dst, torch.where(repeat, earlier, slots[:, g]))
        return slots

    def split_rows(self, rows: Tensor, pools: Tensor) -> Tensor:
        """Move one arm out of pool `pools[i]` of seed `rows[i]` (distinct rows) into a new slot; returns the slots."""
        self._grow(int(self.next_free.max()) + 1)
        tgt = self.next_free[rows].clone()
        with torch.no_grad():
            self.z[rows, tgt] = self.z[rows, pools]
            for group in self.moments:
                for m in group:
                    m[rows, tgt] = m[rows, pools]
            self.count[rows, tgt] = 1.0
            self.count[rows, pools] -= 1.0
            self.log_count[rows, tgt] = 0.0
            self.log_count[rows, pools] = self.count[rows, pools].log()
            self.is_optimal[rows, tgt] = self.is_optimal[rows, pools]
        self.next_free[rows] += 1
        self.used = int(self.next_free.max())
        return tgt

    def logp(self, actions: Tensor) -> Tensor:
        u = self.used
        return _PooledLogp.apply(self.z[:, :u], actions, self.log_count[:, :u], self._log_norm()).unsqueeze(-1)

    def freeze_reference(self) -> None:
        env = self.env
        self._z0 = optimal_logit(env.p0, env.optimal, env.arms)
        self._log_norm0 = math.log(env.optimal * math.exp(self._z0) + env.arms - env.optimal)

    def ref_logp(self, actions: Tensor) -> Tensor:
        """Initial logits are z0 on optimal arms and 0 elsewhere: a slot's origin is its optimality."""
        opt = self.is_optimal.gather(1, actions).to(self.z.dtype)
        return (opt * self._z0 - self._log_norm0).unsqueeze(-1)

    def correct(self, actions: Tensor) -> Tensor:
        return self.is_optimal.gather(1, actions)

    def optimal_mass(self) -> Tensor:
        u = self.used
        with torch.no_grad():
            probs = torch.exp(self.z[:, :u] + self.log_count[:, :u] - self._log_norm()[:, None])
            return (probs * self.is_optimal[:, :u]).sum(-1)

    def arm_grads(self, grads: list[Tensor]) -> list[Tensor]:
        if (self.count.shape[1] > 2) or not hasattr(self, "_inv_pool"):  # after splits: recompute
            self._inv_pool = 1.0 / self.count.clamp(min=1.0)
        return [grads[0] * self._inv_pool]


class _PooledLogp(torch.autograd.Function):
    """logp of slots: z[slot] - log Z with log Z = logsumexp(z + log count), and its exact gradient.

    Backward written out (d logp_g / dz_c = 1[c = slot_g] - count_c e^{z_c} / Z) because autograd's
    logsumexp backward over a handful of slots costs more than the whole rest of a round; the
    formula is checked against autograd in tests/bandit/test_envs.py.
    """

    @staticmethod
    def forward(ctx, z: Tensor, slots: Tensor, log_count: Tensor, log_norm: Tensor) -> Tensor:
        ctx.save_for_backward(z, slots, log_count, log_norm)
        return z.gather(1, slots) - log_norm[:, None]  # (S, G)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        z, slots, log_count, log_norm = ctx.saved_tensors
        probs = torch.exp(z + log_count - log_norm[:, None])  # (S, C) slot masses
        grad = torch.zeros_like(z).scatter_add_(1, slots, grad_out) - grad_out.sum(1, keepdim=True) * probs
        return grad, None, None, None


# ----------------------------------------------------------------------------- sequences


@dataclass(frozen=True)
class Rule:
    """A verifiable rule as a deterministic finite automaton over tokens: delta (Q, V), accept (Q,)."""

    name: str
    delta: Tensor
    accept: Tensor

    @staticmethod
    def sum_mod(vocab: int, modulus: int, residue: int = 0) -> Rule:
        """Correct iff the token sum is `residue` mod `modulus` (uniform policy: p0 ~ 1/modulus)."""
        q = torch.arange(modulus)[:, None]
        delta = (q + torch.arange(vocab)[None, :]) % modulus
        accept = torch.arange(modulus) == residue % modulus
        return Rule(f"sum_mod{modulus}", delta, accept)

    @staticmethod
    def prefix(vocab: int, target: list[int]) -> Rule:
        """Correct iff the sequence starts with `target` (uniform policy: p0 = V^-len(target))."""
        j = len(target)
        dead, done = j + 1, j
        delta = torch.full((j + 2, vocab), dead, dtype=torch.long)
        for i, tok in enumerate(target):
            delta[i, tok] = i + 1
        delta[done, :] = done
        accept = torch.zeros(j + 2, dtype=torch.bool)
        accept[done] = True
        return Rule(f"prefix{j}", delta, accept)


@dataclass(frozen=True)
class SequenceEnv:
    """Responses are L tokens over V; reward 1 iff the DFA `rule` accepts (V^L arms).

    rule `prefix`: the response must start with a fixed target of `target_len` tokens (uniform
    policy: p0 = V^-target_len); rule `sum_mod`: the token sum must be 0 mod `modulus` (p0 ~ 1/modulus,
    but a hard credit-assignment problem: no single position decides correctness).

    Policy: pi(o_l | o_<l) = softmax(table[l, last `context` tokens]) -- context 0 is position-wise,
    context 1 a bigram per position. Initial logits ~ init_scale * N(0, 1), the same for all seeds
    (a fixed "base model"), drawn from `init_seed`.
    """

    vocab: int = 16
    length: int = 10
    context: int = 1
    rule: str = "prefix"
    target_len: int = 2
    modulus: int = 8
    init_scale: float = 0.0
    init_seed: int = 0

    def __post_init__(self) -> None:
        check(self.vocab >= 2, f"--vocab must be >= 2 (got {self.vocab})")
        check(self.length >= 1, f"--length must be >= 1 (got {self.length})")
        check(0 <= self.context <= 2, f"--context must be 0, 1 or 2 (got {self.context})")
        check(self.rule in ("sum_mod", "prefix"), f"--rule must be sum_mod or prefix (got {self.rule!r})")
        check(
            1 <= self.target_len <= self.length,
            f"--target-len must be in [1, length] (got {self.target_len})",
        )
        check(self.modulus >= 2, f"--modulus must be >= 2 (got {self.modulus})")

    def make_rule(self) -> Rule:
        if self.rule == "prefix":
            return Rule.prefix(self.vocab, [(3 * i + 1) % self.vocab for i in range(self.target_len)])
        return Rule.sum_mod(self.vocab, self.modulus)

    def make_policy(self, n_seeds: int, gen: torch.Generator | None = None) -> BanditPolicy:
        return SequenceSoftmax(self, n_seeds)


class SequenceSoftmax(BanditPolicy):
    """Autoregressive tabular softmax: logits table (S, L, V^k, V) indexed by (position, context)."""

    def __init__(self, env: SequenceEnv, n_seeds: int):
        self.env, self.n_seeds = env, n_seeds
        self.rule = env.make_rule()
        V, L, k = env.vocab, env.length, env.context
        self.n_ctx = V**k
        init_gen = torch.Generator().manual_seed(env.init_seed)
        base = env.init_scale * torch.randn(L, self.n_ctx, V, generator=init_gen)
        self.table = base.expand(n_seeds, L, self.n_ctx, V).clone().requires_grad_(True)
        self.params = [self.table]
        # next context after token v from context c: keep the last k tokens
        c = torch.arange(self.n_ctx)[:, None]
        self.next_ctx = (c * V + torch.arange(V)[None, :]) % self.n_ctx  # (C, V)

    def _contexts(self, tokens: Tensor) -> Tensor:
        """Context index of every position; tokens (S, G, L) -> (S, G, L) (missing tokens count as 0)."""
        V, k = self.env.vocab, self.env.context
        ctx = torch.zeros_like(tokens)
        for j in range(1, k + 1):  # token at l - j contributes V^(j-1)
            shifted = torch.zeros_like(tokens)
            shifted[..., j:] = tokens[..., :-j]
            ctx = ctx + shifted * V ** (j - 1)
        return ctx

    def sample(self, gen: torch.Generator, rollouts: int) -> Tensor:
        S, L = self.n_seeds, self.env.length
        with torch.no_grad():
            ctx = torch.zeros(S, rollouts, dtype=torch.long)
            tokens = torch.empty(S, rollouts, L, dtype=torch.long)
            for pos in range(L):
                logits = self.table[:, pos].gather(1, ctx[..., None].expand(-1, -1, self.env.vocab))  # (S, G, V)
                tok = sample_categorical(logits, gen, 1).squeeze(-1)  # (S, G)
                tokens[..., pos] = tok
                ctx = self.next_ctx[ctx, tok]
        return tokens  # (S, G, L)

    def logp(self, actions: Tensor) -> Tensor:
        S, G, L = actions.shape
        ctx = self._contexts(actions)
        s_idx = torch.arange(S)[:, None, None]
        l_idx = torch.arange(L)[None, None, :]
        logits = self.table[s_idx, l_idx, ctx]  # (S, G, L, V)
        return torch.log_softmax(logits, dim=-1).gather(-1, actions[..., None]).squeeze(-1)  # (S, G, L)

    def correct(self, actions: Tensor) -> Tensor:
        q = torch.zeros(actions.shape[:-1], dtype=torch.long)
        for pos in range(actions.shape[-1]):
            q = self.rule.delta[q, actions[..., pos]]
        return self.rule.accept[q]

    def optimal_mass(self) -> Tensor:
        """Exact pass probability by dynamic programming over (automaton state, context)."""
        S, Q, C, V = self.n_seeds, self.rule.delta.shape[0], self.n_ctx, self.env.vocab
        probs = torch.softmax(self.table.detach().double(), dim=-1)  # (S, L, C, V)
        alpha = torch.zeros(S, Q * C, dtype=torch.float64)
        alpha[:, 0] = 1.0  # state 0, context 0
        target = (self.rule.delta[:, None, :] * C + self.next_ctx[None, :, :]).reshape(-1)  # (Q*C*V,)
        for pos in range(self.env.length):
            contrib = alpha.view(S, Q, C, 1) * probs[:, pos].view(S, 1, C, V)  # (S, Q, C, V)
            alpha = torch.zeros(S, Q * C, dtype=torch.float64).index_add_(1, target, contrib.reshape(S, -1))
        accept = self.rule.accept.repeat_interleave(C)
        return (alpha * accept).sum(-1).to(torch.float32)


# ----------------------------------------------------------------------------- correlated arms


@dataclass(frozen=True)
class CorrelatedEnv:
    """A family of instances sharing one parameter vector: a model of prompts and generalization.

    Instance i has K arms with features phi_i (K, d) ~ N(0, I); a hidden direction w* (unit) marks
    each instance's top-m arms by phi_i . w* as its optimal (correct) arms. The policy on instance i
    is softmax(phi_i theta) with theta (d,) per seed, shared by all arms and instances; theta starts
    at `skill` * w* (a base model with some skill; skill 0 = uniform, p0 = m/K). The first
    `train_instances` instances are trained on (one drawn uniformly per round and seed); the last
    `test_instances` are held out: train optimal mass ~ train Pass@1, held-out ~ test Pass@1.
    """

    arms: int = 64
    optimal: int = 4
    dim: int = 16
    train_instances: int = 1
    test_instances: int = 32
    skill: float = 0.0
    family_seed: int = 0

    def __post_init__(self) -> None:
        check(self.arms >= 2, f"--arms must be an integer >= 2 (got {self.arms})")
        check(1 <= self.optimal < self.arms, f"--optimal must be in [1, arms) (got {self.optimal})")
        check(self.dim >= 1, f"--dim must be >= 1 (got {self.dim})")
        check(self.train_instances >= 1, f"--train-instances must be >= 1 (got {self.train_instances})")
        check(self.test_instances >= 1, f"--test-instances must be >= 1 (got {self.test_instances})")

    def family(self) -> tuple[Tensor, Tensor, Tensor]:
        """(features (N, K, d), optimal mask (N, K), w* (d,)), N = train + test instances."""
        gen = torch.Generator().manual_seed(self.family_seed)
        n = self.train_instances + self.test_instances
        w = torch.randn(self.dim, generator=gen)
        w = w / w.norm()
        phi = torch.randn(n, self.arms, self.dim, generator=gen)
        top = (phi @ w).topk(self.optimal, dim=-1).indices
        optimal = torch.zeros(n, self.arms, dtype=torch.bool).scatter_(1, top, True)
        return phi, optimal, w

    def make_policy(self, n_seeds: int, gen: torch.Generator | None = None) -> BanditPolicy:
        return FeatureSoftmax(self, n_seeds, gen)


class FeatureSoftmax(BanditPolicy):
    """Softmax over phi_i theta, theta (S, d) shared across arms and instances."""

    def __init__(self, env: CorrelatedEnv, n_seeds: int, gen: torch.Generator | None):
        self.env, self.n_seeds = env, n_seeds
        self.phi, self.is_optimal, w = env.family()
        self.theta = (env.skill * w).expand(n_seeds, -1).clone().requires_grad_(True)
        self.params = [self.theta]
        self.instance = torch.zeros(n_seeds, dtype=torch.long)  # the training instance of this round

    def start_round(self, gen: torch.Generator) -> None:
        self.instance = torch.randint(self.env.train_instances, (self.n_seeds,), generator=gen)

    def _logits(self, instances: Tensor) -> Tensor:
        return torch.einsum("skd,sd->sk", self.phi[instances], self.theta)  # (S, K)

    def sample(self, gen: torch.Generator, rollouts: int) -> Tensor:
        with torch.no_grad():
            return sample_categorical(self._logits(self.instance), gen, rollouts)  # (S, G)

    def logp(self, actions: Tensor) -> Tensor:
        return torch.log_softmax(self._logits(self.instance), dim=-1).gather(-1, actions).unsqueeze(-1)

    def correct(self, actions: Tensor) -> Tensor:
        return self.is_optimal[self.instance].gather(1, actions)

    def _mass(self, first: int, last: int) -> Tensor:
        logits = torch.einsum("nkd,sd->snk", self.phi[first:last], self.theta.detach())  # (S, n, K)
        return (torch.softmax(logits, dim=-1) * self.is_optimal[first:last]).sum(-1).mean(-1)  # (S,)

    def optimal_mass(self) -> Tensor:
        """Mean optimal mass over the training instances (the train Pass@1)."""
        return self._mass(0, self.env.train_instances)

    def metrics(self) -> dict[str, Tensor]:
        n_train = self.env.train_instances
        return {
            "optimal_mass": self._mass(0, n_train),
            "test_optimal_mass": self._mass(n_train, n_train + self.env.test_instances),
        }
