"""Rollouts with Hugging Face `generate`: sampled (rollouts, sampled evaluation) or greedy (test Pass@1).

Sampling is plain ancestral sampling at the configured temperature and top-p, with top-k and every
other logits processor off (a model's generation_config may carry top_k=50 or a repetition penalty;
those would make the behaviour policy differ from the softmax the loss differentiates).
Randomness: `seed` reseeds torch before the call, so a rollout is a pure function of
(weights, prompts, seed); the trainer derives that seed from (run seed, round, purpose).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from rftlab.policy import Policy


@dataclass
class RolloutBatch:
    """N = len(prompts) x samples_per_prompt responses, grouped by prompt (rows b*G .. b*G+G-1)."""

    prompt_ids: Tensor  # (N, P) left-padded
    prompt_mask: Tensor  # (N, P) 1 on real prompt tokens
    response_ids: Tensor  # (N, T) right-padded with pad_token_id after the end
    response_mask: Tensor  # (N, T) 1 on response tokens up to and including the first eos
    texts: list[str]  # decoded responses, special tokens dropped
    prompt_index: list[int]  # which prompt each row answers
    truncated: Tensor  # (N,) bool: the response hit max_new_tokens without an eos

    @property
    def response_lengths(self) -> Tensor:
        return self.response_mask.sum(dim=-1)

    def __len__(self) -> int:
        return self.response_ids.shape[0]


def _response_mask(response_ids: Tensor, eos_ids: list[int]) -> tuple[Tensor, Tensor]:
    """Mask up to and including the first eos; rows with no eos are truncated (mask all T)."""
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= response_ids == eos
    # eos_before[t] = an eos occurred strictly before position t
    eos_before = (torch.cumsum(is_eos.int(), dim=-1) - is_eos.int()) > 0
    return (~eos_before).long(), ~is_eos.any(dim=-1)


@torch.no_grad()
def generate(
    policy: Policy,
    prompts: list[str],
    *,
    samples_per_prompt: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 128,
    greedy: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
    progress: str | None = None,
) -> RolloutBatch:
    """Sample `samples_per_prompt` responses for each prompt (or one greedy response each).

    `progress`: a label for a progress bar over generation batches (shown when there are several).
    """
    tokenizer, model = policy.tokenizer, policy.model
    rows = [p for p in prompts for _ in range(samples_per_prompt)]
    index = [i for i in range(len(prompts)) for _ in range(samples_per_prompt)]
    chunk = batch_size or len(rows)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    parts = []
    starts = range(0, len(rows), chunk)
    bar = tqdm(starts, desc=progress, unit="batch", leave=False, disable=progress is None or len(starts) < 2)
    for start in bar:
        enc = tokenizer(
            rows[start : start + chunk], return_tensors="pt", padding=True, add_special_tokens=False
        )
        enc = {k: v.to(policy.device) for k, v in enc.items()}
        sampling = (
            {"do_sample": False}
            if greedy
            else {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        )
        with policy.autocast():  # compute dtype over the master weights
            out = model.generate(
                **enc,
                **sampling,
                max_new_tokens=max_new_tokens,
                eos_token_id=policy.eos_token_ids,
                pad_token_id=tokenizer.pad_token_id,
                repetition_penalty=1.0,
            )
        parts.append((enc["input_ids"], enc["attention_mask"], out[:, enc["input_ids"].shape[1] :]))
    model.train(was_training)

    prompt_ids = _pad_left([p[0] for p in parts], tokenizer.pad_token_id)
    prompt_mask = _pad_left([p[1] for p in parts], 0)
    response_ids = _pad_right([p[2] for p in parts], tokenizer.pad_token_id)
    response_mask, truncated = _response_mask(response_ids, policy.eos_token_ids)
    response_ids = torch.where(response_mask.bool(), response_ids, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(
        response_ids.masked_fill(~response_mask.bool(), tokenizer.pad_token_id), skip_special_tokens=True
    )
    return RolloutBatch(prompt_ids, prompt_mask, response_ids, response_mask, texts, index, truncated)


def _pad_left(tensors: list[Tensor], value: int) -> Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value) for t in tensors])


def _pad_right(tensors: list[Tensor], value: int) -> Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value) for t in tensors])
