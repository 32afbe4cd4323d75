"""Bandit lab: the paper's bottom layer (one example, verifiable 0/1 reward) as a multi-armed bandit.

Environments (`envs`), rftlab's own objectives run vectorized over seeds (`simulate`), plain SGD/Adam
(`optim`), theory predictions (`theory`), the layer pipeline (`pipeline`) and its data (`figures`:
PNGs, findings.json, bandit.json). Imports nothing above `rftlab.objectives` and the leaves; the
`rftlab bandit` command and the HTML page live in `rftlab.commands.bandit` and `rftlab.report.html`.
"""

from rftlab.bandit.envs import (
    CorrelatedEnv,
    DenseSoftmax,
    FeatureSoftmax,
    KArmedEnv,
    PooledSoftmax,
    Rule,
    SequenceEnv,
    SequenceSoftmax,
)
from rftlab.bandit.optim import BanditOptimizer, optimizer_step
from rftlab.bandit.simulate import SimConfig, SimResult, policy_update, simulate

__all__ = [
    "CorrelatedEnv",
    "DenseSoftmax",
    "FeatureSoftmax",
    "KArmedEnv",
    "BanditOptimizer",
    "PooledSoftmax",
    "Rule",
    "SequenceEnv",
    "SequenceSoftmax",
    "SimConfig",
    "SimResult",
    "optimizer_step",
    "policy_update",
    "simulate",
]
