"""Prompt length against the model's context, checked before any generation or run directory.

A prompt must fit in the model's context (its `max_position_embeddings`, else the tokenizer's
`model_max_length`). Without a check a 10 MB question tokenizes for minutes and then tries to
allocate tens of GB. Too-long prompts stop the load with the problem id in one line, or, under
`data.on_bad_row=skip`, are left out and counted.

A prompt that fits but leaves fewer than `rollout.max_new_tokens` positions is only warned about:
a long response then runs past the trained context, which rotary-position models (Llama, Qwen,
OLMo, the built-in `tiny`s) extrapolate, with some loss of quality. Refusing it would refuse
configurations that run (the `paper` pipeline's `tiny-narrow` prompts of ~115 tokens with 160 new
tokens in a 256-position context).

Most prompts are decided from their byte length alone, without tokenizing. The bounds assume a
tokenizer whose tokens each cover at least one byte of the text (byte-level BPE, SentencePiece with
byte fallback): then `tokens <= bytes + 2` (2 for a SentencePiece dummy prefix and slack), so a
prompt whose bytes fit certainly fits; and `tokens >= bytes / max_token_bytes` (the longest token
of the vocabulary, in UTF-8 bytes of its string form, an upper bound on the bytes it covers), so a
prompt whose bytes exceed the limit even at that rate is certainly too long. Only prompts between
the two bounds are tokenized, exactly as the rollout tokenizes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rftlab.errors import ConfigError, DataError
from rftlab.tasks.problem import Problem

log = logging.getLogger(__name__)

_NO_LIMIT = 1_000_000_000  # tokenizers without a known limit report a huge sentinel (int(1e30))
_SLACK_TOKENS = 2
_BATCH = 256


def model_context(policy) -> int | None:
    """Positions the model can attend over: config.max_position_embeddings, else the tokenizer's."""
    for value in (
        getattr(getattr(policy.model, "config", None), "max_position_embeddings", None),
        getattr(policy.tokenizer, "model_max_length", None),
    ):
        if isinstance(value, int) and 0 < value < _NO_LIMIT:
            return value
    return None


def max_token_bytes(tokenizer) -> int:
    """The most text bytes one token can stand for (an upper bound; at least 1)."""
    vocab = tokenizer.get_vocab()
    return max((len(token.encode("utf-8", "replace")) for token in vocab), default=1) or 1


def check_prompt_lengths(cfg, policy, *splits: Sequence[Problem]) -> tuple[list[Problem], ...]:
    """Each split with its too-long prompts left out (`data.on_bad_row=skip`), or a one-line error.

    Raises ConfigError when `rollout.max_new_tokens` alone fills the context, DataError naming the
    first problem whose prompt is longer than the context (in "error" mode), or when skipping empties
    a split. Warns once when prompts fit but leave less room than `rollout.max_new_tokens`.
    """
    context = model_context(policy)
    if context is None:
        return tuple(list(split) for split in splits)
    new_tokens = cfg.rollout.max_new_tokens
    limit = context
    where = f"model {cfg.model.name!r} has a context of {context} positions"
    if context - new_tokens < 1:
        raise ConfigError(f"rollout.max_new_tokens={new_tokens} leaves no room for a prompt: {where}")
    style = None if cfg.data.prompt_style == "auto" else cfg.data.prompt_style
    per_token = max_token_bytes(policy.tokenizer)
    skip = cfg.data.on_bad_row == "skip"
    kept: list[list[Problem]] = []
    skipped: list[tuple[str, str]] = []
    for split in splits:
        sizes = _prompt_sizes(policy, split, style, limit, per_token)
        out = []
        for problem, size in zip(split, sizes, strict=True):
            if size is None:
                out.append(problem)
                continue
            if not skip:
                raise DataError(
                    f"data.dataset={cfg.data.dataset}: problem {problem.id!r} is a prompt of {size} tokens; "
                    f"{where}; shorten it or set data.on_bad_row=skip"
                )
            skipped.append((problem.id, size))
        if split and not out:
            raise DataError(
                f"data.dataset={cfg.data.dataset}: every prompt of a split is longer than {limit} tokens ({where})"
            )
        kept.append(out)
    _warn_short_room(cfg, policy, kept, context, style, per_token)
    if skipped:
        log.warning(
            "skipped %d prompt(s) longer than %d tokens (%s; data.on_bad_row=skip); first: %s (%s tokens)",
            len(skipped),
            limit,
            where,
            skipped[0][0],
            skipped[0][1],
        )
    return tuple(kept)


def _warn_short_room(cfg, policy, splits: list[list[Problem]], context: int, style: str | None, per_token: int) -> None:
    """One warning when some prompts leave fewer than rollout.max_new_tokens positions."""
    room = context - cfg.rollout.max_new_tokens
    tight = [
        (p.id, size)
        for split in splits
        for p, size in zip(split, _prompt_sizes(policy, split, style, room, per_token), strict=True)
        if size is not None
    ]
    if tight:
        log.warning(
            "%d prompt(s) longer than %d tokens leave fewer than rollout.max_new_tokens=%d positions in "
            "the context of model %r (%d positions); a long response runs past it (first: %s, %s tokens)",
            len(tight),
            room,
            cfg.rollout.max_new_tokens,
            cfg.model.name,
            context,
            tight[0][0],
            tight[0][1],
        )


def _prompt_sizes(policy, split: Sequence[Problem], style: str | None, limit: int, per_token: int) -> list[str | None]:
    """Per problem: None when its prompt fits in `limit` tokens, else its length for the message.

    Decided from byte lengths where the bounds allow; the rest are tokenized in batches, exactly as
    the rollout tokenizes them (`add_special_tokens=False`).
    """
    sizes: list[str | None] = [None] * len(split)
    unsure: list[tuple[int, str]] = []
    for i, problem in enumerate(split):
        question_bytes = len(problem.question.encode("utf-8", "replace"))
        if question_bytes / per_token > limit:  # certainly too long: never render or tokenize it
            sizes[i] = f"at least {-(-question_bytes // per_token)}"
            continue
        text = policy.prompt_text(problem, style)
        size = len(text.encode("utf-8", "replace"))
        if size / per_token > limit:
            sizes[i] = f"at least {-(-size // per_token)}"
        elif size + _SLACK_TOKENS > limit:
            unsure.append((i, text))
    for start in range(0, len(unsure), _BATCH):
        chunk = unsure[start : start + _BATCH]
        ids = policy.tokenizer([text for _, text in chunk], add_special_tokens=False)["input_ids"]
        for (i, _), row in zip(chunk, ids, strict=True):
            if len(row) > limit:
                sizes[i] = str(len(row))
    return sizes
