"""The hand-written coordinate-wise optimizers are torch's SGD and Adam/AdamW."""

import pytest
import torch

from rftlab.bandit.optim import BanditOptimizer, optimizer_step


class _Params:
    def __init__(self, p):
        self.params = [p]

    def arm_grads(self, grads):
        return grads


@pytest.mark.parametrize(
    "cfg,reference",
    [
        (BanditOptimizer("sgd", lr=0.3), lambda p: torch.optim.SGD([p], lr=0.3)),
        (
            BanditOptimizer("sgd", lr=0.3, weight_decay=0.1),
            lambda p: torch.optim.SGD([p], lr=0.3, weight_decay=0.1),
        ),
        (BanditOptimizer("adam", lr=0.05), lambda p: torch.optim.Adam([p], lr=0.05)),
        (
            BanditOptimizer("adam", lr=0.05, weight_decay=0.1),
            lambda p: torch.optim.AdamW([p], lr=0.05, weight_decay=0.1),
        ),
    ],
)
def test_matches_torch_optim(cfg, reference):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    mine = _Params(start.clone())
    theirs = start.clone().requires_grad_(True)
    opt = reference(theirs)
    for step in range(1, 21):
        g = torch.randn(4, 6, generator=gen, dtype=torch.float64) * (step % 3)  # includes all-zero grads
        optimizer_step(mine, [g], cfg, step)
        theirs.grad = g.clone()
        opt.step()
    torch.testing.assert_close(mine.params[0], theirs.detach(), rtol=1e-12, atol=1e-12)
