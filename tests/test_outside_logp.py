"""The loss's per-token log-probs and entropy against TRL's own functions (an outside implementation).

rftlab computes log p from one `log_softmax` (`objectives.token_logp_and_entropy`); TRL's
`selective_log_softmax` on CPU float32 computes x_token - logsumexp(x), and so does verl
(`verl.utils.torch_functional.logprobs_from_logits_v2`, its path without flash-attn or NPU kernels:
the same formula, row by row), so this one comparison covers both. The two forms round differently:
they agree to about one float32 ulp of the logits' magnitude, and the gradients they send back into
the logits agree to float32 rounding. Earlier checks of the losses against TRL and verl used 1e-6 as
the tolerance, which one ulp exceeds once |logits| >= 8 (ulp 9.5e-7 at [8, 16), 1.9e-6 at [16, 32)).
The real check is that the difference never exceeds a couple of ulps of the logits, whatever their scale.

Runs where TRL is installed (the `dev` and `bench` extras); skipped otherwise.
"""

from __future__ import annotations

import pytest
import torch

from rftlab.objectives import token_logp_and_entropy

trl_utils = pytest.importorskip("trl.trainer.utils")


def _ulp(logits: torch.Tensor, temperature: float) -> float:
    return float(torch.finfo(torch.float32).eps * (logits.abs().max() / temperature))


def _cases():
    gen = torch.Generator().manual_seed(0)
    vocab = 4096
    for scale in (1.0, 8.0, 30.0):  # logits of magnitude ~1, ~8-30 (a trained LM's range), ~30-100
        logits = torch.randn(3, 17, vocab, generator=gen) * scale
        tokens = torch.randint(0, vocab, (3, 17), generator=gen)
        tokens[:, :4] = logits[:, :4].argmax(-1)  # confident tokens too, where log p ~ 0
        yield scale, logits, tokens


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logp_equals_trl_selective_log_softmax_to_an_ulp_of_the_logits(temperature):
    for scale, logits, tokens in _cases():
        ours_in = logits.clone().requires_grad_(True)
        theirs_in = logits.clone().requires_grad_(True)
        ours, _ = token_logp_and_entropy(ours_in, tokens, temperature)
        theirs = trl_utils.selective_log_softmax(theirs_in, tokens, temperature=temperature)
        ulp = _ulp(logits, temperature)
        worst = float((ours - theirs).detach().abs().max())
        assert worst <= 2 * ulp, (scale, worst, ulp)
        weights = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(1))
        (ours * weights).sum().backward()
        (theirs * weights).sum().backward()
        # d logp / d logits = w (onehot - softmax) / T; softmax = exp(log p) carries log p's ulp as a
        # relative error, so the gradients agree to ~ulp * |w| / T
        atol = 2 * ulp * float(weights.abs().max()) / temperature
        worst_grad = float((ours_in.grad - theirs_in.grad).abs().max())
        assert worst_grad <= atol, (scale, worst_grad, atol)


def test_entropy_equals_trl_entropy_from_logits():
    for _scale, logits, tokens in _cases():
        _, ours = token_logp_and_entropy(logits, tokens, 1.0, with_entropy=True)
        theirs = trl_utils.entropy_from_logits(logits)
        torch.testing.assert_close(ours, theirs, atol=4 * _ulp(logits, 1.0), rtol=1e-5)


def test_on_a_real_models_logits():
    """tiny's logits on one of its own rollouts, the loss's log-probs vs TRL's on the same logits."""
    from rftlab.policy import load_policy, response_logp
    from rftlab.rollout import generate

    policy = load_policy("tiny")
    batch = generate(
        policy, ["<|user|>What is 12 + 30?\n<|assistant|>"], samples_per_prompt=4, max_new_tokens=24, seed=2
    )
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    with torch.no_grad():
        ours, _ = response_logp(policy, *args, temperature=0.7, shared_prompt=False)
        input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)
        attention = torch.cat([batch.prompt_mask, batch.response_mask], dim=1)
        position_ids = (attention.cumsum(1) - 1).clamp(min=0)
        logits = policy.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids).logits
        logits = logits[:, batch.prompt_ids.shape[1] - 1 : -1]
        theirs = trl_utils.selective_log_softmax(logits, batch.response_ids, temperature=0.7)
    mask = batch.response_mask.bool()
    assert float((ours - theirs)[mask].abs().max()) <= 2 * _ulp(logits, 0.7)
