"""A lean decoding loop on the model's own forward: finished rows leave the batch (`rollout.engine=lean`).

Why: on small models generation is bound by per-step overhead, and in an evaluation batch the rows
that already emitted eos keep being decoded as padding until the longest row ends (35-42% of the
rows of a `tiny` eval batch, issue 11). This loop drops finished rows from the batch and from the KV
cache (`DynamicCache.batch_select_indices`) after every step, so each step costs only the live rows.

Each distinct prompt is prefilled once and its KV cache copied to its rows (a rollout's G samples
share one prompt: G times less prefill).

It samples the same distribution as `generate` with the engine's settings (the same temperature and
top-p warpers from `transformers`, top-k and every other processor off) and draws its random numbers
the way `generate` does: `torch.multinomial` over the whole chunk's (N, V) probabilities, finished rows
given a one-hot on pad. So the random stream is the same as HF's; the tokens match HF's too whenever
the smaller batches give the same logits, which float rounding does not promise (batch shape changes
the matmul blocking): it keeps the distribution, not promised the bits. It was opt-in until it had
given `generate`'s tokens in every benchmark pair and on the whole main job; it is the default since.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def _in_inference_mode(fn):
    """Run `fn` under `torch.inference_mode` (no version counters or autograd bookkeeping on its tensors:
    5-10% of a decode step on a small model, measured) and clone its tensors outside it, so the caller
    gets ordinary tensors that the update's autograd may take as inputs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode():
            out = fn(*args, **kwargs)
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()

    return wrapper


@_in_inference_mode
def lean_generate(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    greedy: bool,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    eos_token_ids: list[int],
    pad_token_id: int,
    with_logp: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Response tokens (N, T) for left-padded prompts (N, P), pad after a row's eos, T <= max_new_tokens.

    `with_logp`: also return log pi(token) (N, T) under the distribution each token was drawn from
    (the warped logits' log-softmax; 0 after a row's end), for tests that check it against the loss.
    """
    from transformers import DynamicCache
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    warpers = []
    if not greedy and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if not greedy and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    n, device = input_ids.shape[0], input_ids.device
    eos = torch.tensor(eos_token_ids, device=device)
    out = torch.full((n, max_new_tokens), pad_token_id, dtype=torch.long, device=device)  # (N, T)
    out_logp = torch.zeros((n, max_new_tokens), device=device) if with_logp else None
    live = torch.arange(n, device=device)  # chunk rows still decoding
    mask = attention_mask.long()  # (n_live, P + t)
    position = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate: left padding starts at 0
    cache = DynamicCache(config=model.config)
    # prefill each distinct prompt once (a rollout's G rows share one), then copy its cache to its rows
    distinct, copies = torch.unique(torch.cat([input_ids, mask], dim=1), dim=0, return_inverse=True)
    first = torch.full((distinct.shape[0],), n, device=device).scatter_reduce(0, copies, live, "amin")
    logits = (
        model(
            input_ids=input_ids[first],
            attention_mask=mask[first],
            position_ids=position[first],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        .logits[copies, -1]
        .float()
    )  # (N, V)
    cache.batch_select_indices(copies)
    steps = 0
    for t in range(max_new_tokens):
        for warp in warpers:
            logits = warp(None, logits)
        if greedy:
            token = logits.argmax(dim=-1)
        else:
            # the whole chunk's probabilities: torch.multinomial consumes the random stream as generate does
            probs = torch.zeros((n, logits.shape[-1]), dtype=logits.dtype, device=device)
            probs[:, pad_token_id] = 1.0
            probs[live] = torch.softmax(logits, dim=-1)
            token = torch.multinomial(probs, num_samples=1).squeeze(1)[live]
        out[live, t] = token
        if out_logp is not None:
            out_logp[live, t] = torch.log_softmax(logits, dim=-1).gather(-1, token[:, None]).squeeze(1)
        steps = t + 1
        going = ~torch.isin(token, eos)  # (n_live,)
        if t == max_new_tokens - 1 or not bool(going.any()):
            break
        if not bool(going.all()):  # retire finished rows from the batch and the cache
            keep = going.nonzero().squeeze(1)
            live, token, mask, position = live[keep], token[keep], mask[keep], position[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        position = position[:, -1:] + 1
        logits = (
            model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=position,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            .logits[:, -1]
            .float()
        )  # (n_live, V)
    if out_logp is not None:
        return out[:, :steps], out_logp[:, :steps]
    return out[:, :steps]
