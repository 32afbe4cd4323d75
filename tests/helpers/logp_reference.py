"""The loss's log-probs as rftlab computed them before `logits_to_keep` and the shared log-softmax.

Logits at every position of prompt + response (the head run over the prompt too), the response ones
kept; log p = z_token - logsumexp(z); the entropy from a second, separate log_softmax. Tests compare
`policy.response_logp` against this, and against the same full-position logits through today's
`token_logp_and_entropy` (which isolates what `logits_to_keep` alone changes).
"""

from __future__ import annotations

import torch

from rftlab.objectives import entropy_from_logits, token_logp_and_entropy


def full_position_logits(policy, prompt_ids, prompt_mask, response_ids, response_mask):
    """(N, T, V) logits of the response positions, from a forward that computes all P + T positions."""
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention = torch.cat([prompt_mask, response_mask], dim=1)
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    logits = policy.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids).logits
    assert logits.shape[1] == input_ids.shape[1]  # every position: logits_to_keep was not used
    return logits[:, prompt_ids.shape[1] - 1 : -1]


def earlier_logp(policy, prompt_ids, prompt_mask, response_ids, response_mask, *, temperature=1.0):
    """(logp, entropy) the way rftlab computed them before: token - logsumexp, entropy apart."""
    logits = full_position_logits(policy, prompt_ids, prompt_mask, response_ids, response_mask)
    z = logits.float() / temperature
    logp = z.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)
    with torch.no_grad():
        entropy = entropy_from_logits(logits, temperature)
    return logp, entropy


def full_position_logp(policy, prompt_ids, prompt_mask, response_ids, response_mask, *, temperature=1.0):
    """Today's log-softmax math over full-position logits: differs from response_logp only in the head's rows."""
    logits = full_position_logits(policy, prompt_ids, prompt_mask, response_ids, response_mask)
    return token_logp_and_entropy(logits, response_ids, temperature, with_entropy=True)


def logp_entropy_grads(policy, batch, compute):
    """(logp, entropy, {name: grad}) of sum(logp * mask) for one way of computing the log-probs."""
    policy.model.zero_grad(set_to_none=True)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)
    logp, entropy = compute(policy, *args)
    (logp * batch.response_mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    return logp.detach(), entropy, grads


def worst_gradient_difference(a: dict, b: dict) -> float:
    """max over parameters of max|a - b| / max|a|: the difference on each gradient's own scale."""
    assert a.keys() == b.keys() and a
    return max(float((a[n] - b[n]).abs().max()) / (float(a[n].abs().max()) + 1e-12) for n in a)
