"""Rollouts with Hugging Face `generate`: sampled (rollouts, sampled evaluation) or greedy (test Pass@1).

Sampling is plain ancestral sampling at the configured temperature and top-p, with top-k and every
other logits processor off (a model's generation_config may carry top_k=50 or a repetition penalty;
those would make the behaviour policy differ from the softmax the loss differentiates).
Randomness: `seed` reseeds torch before the call, so a rollout is a pure function of
(weights, prompts, seed); the trainer derives that seed from (run seed, round, purpose).
Memory: a generation batch that hits CUDA out-of-memory is retried at half the size (down to one
row) from the random state it started with, and the smaller size is kept for the rest of the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from rftlab.errors import RftlabError
from rftlab.policy import Policy
from rftlab.rollout.lean import lean_generate

log = logging.getLogger(__name__)


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
    progress: str | Callable[[int, int], None] | None = None,
    engine: str = "hf",
    sort_by_length: bool = False,
) -> RolloutBatch:
    """Sample `samples_per_prompt` responses for each prompt (or one greedy response each).

    `batch_size`: rows per generation batch (None = all at once); on a CUDA out-of-memory error a batch
    is retried at half the size, down to one row, from the same random state (see `_generate_rows`).
    `engine`: "hf" (`model.generate`) or "lean" (`rollout.lean`: finished rows leave the batch).
    `sort_by_length`: generate rows longest prompt first, so batches hold prompts of similar length
    (less left padding), and return them in the original order; rows then draw other random numbers
    than unsorted, so sampled results change with it (greedy ones do not, up to float rounding).
    `progress`: a label for a progress bar over generation batches (shown when there are several), or
    a callable told (rows done, rows in all) after each batch, for a caller that draws its own display.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown generation engine {engine!r}; valid: {', '.join(ENGINES)}")
    tokenizer, model = policy.tokenizer, policy.model
    rows = [p for p in prompts for _ in range(samples_per_prompt)]
    index = [i for i in range(len(prompts)) for _ in range(samples_per_prompt)]
    order = list(range(len(rows)))
    if sort_by_length:
        lengths = [len(ids) for ids in tokenizer(rows, add_special_tokens=False)["input_ids"]]
        order.sort(key=lambda i: -lengths[i])  # stable: a prompt's samples stay together
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    settings = dict(engine=engine, greedy=greedy, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    parts = _generate_rows(policy, [rows[i] for i in order], batch_size or len(rows), settings, progress)
    model.train(was_training)

    prompt_ids = _pad_left([p[0] for p in parts], tokenizer.pad_token_id)
    prompt_mask = _pad_left([p[1] for p in parts], 0)
    response_ids = _pad_right([p[2] for p in parts], tokenizer.pad_token_id)
    if sort_by_length:  # back to the caller's order
        unsort = torch.empty(len(order), dtype=torch.long)
        unsort[torch.tensor(order)] = torch.arange(len(order))
        prompt_ids, prompt_mask, response_ids = prompt_ids[unsort], prompt_mask[unsort], response_ids[unsort]
    response_mask, truncated = _response_mask(response_ids, policy.eos_token_ids)
    response_ids = torch.where(response_mask.bool(), response_ids, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(
        response_ids.masked_fill(~response_mask.bool(), tokenizer.pad_token_id), skip_special_tokens=True
    )
    return RolloutBatch(prompt_ids, prompt_mask, response_ids, response_mask, texts, index, truncated)


def _generate_rows(
    policy: Policy, rows: list[str], batch_size: int, settings: dict, progress: str | Callable[[int, int], None] | None
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(prompt ids, prompt mask, response ids) per generation batch, halving the batch on CUDA OOM.

    A batch that runs out of memory is retried at half the size from the random state it started
    with, so the result is a function of (seed, rows, the sizes that fit): greedy results do not
    depend on the split at all (up to float rounding of other batch shapes); the smaller size is
    kept for the remaining batches. At one row the error is re-raised as a one-line RftlabError.
    """
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    report = progress if callable(progress) else None  # the run's own display, told (rows done, rows)
    bar = tqdm(
        total=len(rows),
        desc=progress,
        unit="row",
        leave=False,
        disable=report is not None or progress is None or len(rows) <= batch_size,
    )
    start = 0
    while start < len(rows):
        batch = rows[start : start + batch_size]
        rng = _rng_state(policy.device)
        try:
            parts.append(_generate_batch(policy, batch, **settings))
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise RftlabError(
                    "out of device memory generating even one row at a time (batches halved from "
                    f"eval.batch_size or the round's rollouts down to 1, {settings['max_new_tokens']} new "
                    "tokens); lower rollout.max_new_tokens or use a smaller model"
                ) from None
            batch_size = max(1, len(batch) // 2)
        else:
            start += len(batch)
            bar.update(len(batch))
            if report is not None:
                report(start, len(rows))
            continue
        # out of memory: free what the failed batch held, then retry it smaller from the same random state
        if policy.device.type == "cuda":
            torch.cuda.empty_cache()
        _warn_halved_once(batch_size)
        _set_rng_state(policy.device, rng)
    bar.close()
    return parts


def _generate_batch(
    policy: Policy,
    rows: list[str],
    *,
    engine: str,
    greedy: bool,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """One generation batch: (prompt ids (n, P), prompt mask (n, P), response ids (n, T))."""
    tokenizer = policy.tokenizer
    enc = tokenizer(rows, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(policy.device) for k, v in enc.items()}
    # ---- the one place the model is called for generation, in the compute dtype over the master weights
    with policy.autocast():
        return (
            enc["input_ids"],
            enc["attention_mask"],
            _call_engine(
                policy,
                enc,
                engine=engine,
                greedy=greedy,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
            ),
        )


def _call_engine(
    policy: Policy,
    enc: dict[str, Tensor],
    *,
    engine: str,
    greedy: bool,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
) -> Tensor:
    """Response ids (n, T) from the chosen engine for one tokenized batch."""
    tokenizer = policy.tokenizer
    if engine == "lean":
        response = lean_generate(
            policy.model,
            enc["input_ids"],
            enc["attention_mask"],
            greedy=greedy,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            eos_token_ids=policy.eos_token_ids,
            pad_token_id=tokenizer.pad_token_id,
        )
    else:
        sampling = (
            {"do_sample": False}
            if greedy
            else {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        )
        out = policy.model.generate(
            **enc,
            **sampling,
            max_new_tokens=max_new_tokens,
            eos_token_id=policy.eos_token_ids,
            pad_token_id=tokenizer.pad_token_id,
            repetition_penalty=1.0,
        )
        response = out[:, enc["input_ids"].shape[1] :]
    return response


ENGINES = ("hf", "lean")
_halved_warned = False


def _warn_halved_once(batch_size: int) -> None:
    global _halved_warned
    if not _halved_warned:
        _halved_warned = True
        log.warning(
            "out of device memory in a generation batch: retrying at %d rows per batch "
            "(set eval.batch_size to at most that to skip the retries)",
            batch_size,
        )


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _pad_left(tensors: list[Tensor], value: int) -> Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value) for t in tensors])


def _pad_right(tensors: list[Tensor], value: int) -> Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value) for t in tensors])
