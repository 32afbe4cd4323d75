"""Plain SGD and Adam(W), coordinate-wise, on a policy's parameters (every seed its own optimizer).

Written out instead of using `torch.optim` because the pooled K-armed policy moves optimizer state
between slots when an arm leaves its pool; the formulas are torch's (tested against torch.optim):

    SGD:   p <- p (1 - lr wd) - lr g
    Adam:  m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2                  (Kingma & Ba 2015)
           p <- p (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)   (decoupled wd: AdamW)

Every operation is elementwise, so seeds (a leading tensor dim) never interact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from rftlab.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class BanditOptimizer:
    """The bandit simulator's optimizer: which one (`OPTIMIZERS`) and its settings.

    Not the trainer's `rftlab.config.OptimConfig`; `weight_decay` is decoupled (AdamW; for SGD identical to L2).
    """

    name: str = "sgd"
    lr: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"unknown --optimizer {self.name!r}; valid: {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0 (got {self.lr})")


def optimizer_step(policy, grads: list[Tensor], cfg: BanditOptimizer, step: int) -> None:
    """One update of policy.params in place; `step` counts from 1 (Adam's bias correction)."""
    grads = policy.arm_grads(grads)
    if cfg.name == "adam" and not getattr(policy, "moments", None):
        policy.moments = [[torch.zeros_like(p), torch.zeros_like(p)] for p in policy.params]
    with torch.no_grad():
        for i, (p, g) in enumerate(zip(policy.params, grads, strict=True)):
            if cfg.weight_decay:
                p.mul_(1.0 - cfg.lr * cfg.weight_decay)
            if cfg.name == "sgd":
                p.add_(g, alpha=-cfg.lr)
                continue
            m, v = policy.moments[i]
            b1, b2 = cfg.betas
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(1 - b2**step)).add_(cfg.eps)
            p.addcdiv_(m, denom, value=-cfg.lr / (1 - b1**step))
