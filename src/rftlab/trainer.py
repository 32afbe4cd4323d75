"""The round loop of reinforcement fine-tuning, from the paper's minimalist configuration upward.

Each round: sample training examples -> roll out -> reward -> advantage -> loss -> step -> log,
and every `eval.every` rounds (and at round 0 and the last round) evaluate and checkpoint.

The minimalist configuration (arXiv 2601.14599, the bottom layer) is the default: one training
example, one rollout per round, the 0/1 reward used directly as the learning signal (advantage
`none`), J = (1/|o|) sum_t min(r_t R, clip(r_t, 1-eps, 1+eps) R), one AdamW step per round. Every
later layer is a config value: G = rollout.rollouts_per_round, the advantage estimator, the reward
design, B = train.examples_per_round, KL to a frozen reference, clip eps, mu = updates per batch.
Several tasks at once (data.mix, beyond the paper) change only where examples come from, how each
response is scored and how evaluation splits by task (`rftlab.multitask`); the round is the same.

Deviations and choices, stated:
- theta_old is the rollout policy. Its log-probs are the detached log-probs of the first update's
  forward pass (the weights have not moved yet), so mu = 1 costs no extra forward pass and its
  ratio is exactly 1; with mu > 1 the later updates see ratio != 1 and clipping binds.
- A round whose advantages are all zero still takes the optimizer step by default, as verl does
  (AdamW momentum and weight decay keep moving the weights); `optim.step_on_zero_signal=false`
  skips it. The metric `train/stepped` says which happened.
- Every random draw comes from a seed derived from (run seed, round, purpose), so a resumed run
  draws exactly what an uninterrupted run draws.
- Control reward designs (`objective.reward_design=format|random`, `objectives.CONTROL_REWARDS`)
  replace the verified 0/1 reward by one that ignores correctness; `correct/mean` still logs the
  verifier's verdicts, and the random reward's draws have their own derived seed.
- Precision: the trained weights and AdamW's state are float32 (`model.master_dtype`) and every
  forward (rollout, evaluation, loss, reference) runs in `model.dtype` under autocast, so an update at
  lr 1e-6 is not rounded away as it would be in bfloat16 weights. The KL reference is a frozen copy in
  the compute dtype (with float32 compute: exactly the initial weights); with LoRA there is no copy,
  the reference is the model with its adapter disabled, and checkpoints hold the adapter only.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rftlab import objectives, provenance, tracking
from rftlab.config import Config
from rftlab.errors import ConfigError, RftlabError
from rftlab.evaluation import EvalResult, decomposition_row, evaluate, run_eval_settings
from rftlab.multitask import MixData, choose_mix_examples, evaluate_mix, load_mix, sampler, with_answer_formats
from rftlab.plotting import plot_run
from rftlab.policy import Policy, load_policy, load_policy_for, lr_resolution_warning, response_logp  # noqa: F401
from rftlab.progress import BUCKETS, ProgressHook, RunProgress
from rftlab.rewards import extract_answer, score, verifier_timeouts
from rftlab.rollout import RolloutBatch, generate
from rftlab.runs import RunDir
from rftlab.selection import (
    DifficultySettings,
    candidate_pool,
    check_pool_size,
    estimate_difficulty,
    model_fingerprint,
    select_by_difficulty,
)
from rftlab.tasks import load_options, load_problems
from rftlab.tasks.limits import check_prompt_lengths
from rftlab.tasks.loading import is_local_file, question_overlap
from rftlab.tasks.problem import Problem
from rftlab.threads import policy_for as thread_policy_for

log = logging.getLogger(__name__)


def derive_seed(seed: int, round_: int, purpose: str) -> int:
    """A 63-bit seed that is a pure function of (run seed, round, purpose), stable across processes."""
    digest = hashlib.blake2b(f"{seed}/{round_}/{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# ----------------------------------------------------------------------------- set-up helpers


def load_task(cfg: Config, *, train: bool = True) -> tuple[list[Problem], list[Problem]]:
    """(training split, the fixed test subset: the first data.test_size held-out problems).

    Where the test problems come from, in order: `data.test_path` (a separate file); for a single
    local file without one, the same file (loaded once); else the dataset's `data.test_split`.
    When training and test come from the same rows (MATH-500 has only `test`; a single local file),
    the training candidates are held out of the test subset, so no training example is ever scored
    as a test problem, and the subset is the same for every seed and difficulty variant. For a
    vendored split the held-out candidates are the difficulty pool (`data.difficulty_pool` problems of
    a seeded permutation) and any explicit `data.train_example_ids`; for a single local file, only the
    problems training can pick (`training_candidates`), so a small file keeps most rows for test.
    Then no training candidate may share its question with a test problem (`check_overlap`).
    `train=False` (`rftlab eval`: the base model, nothing trained): a single file is not split.
    """
    d = cfg.data
    options = load_options(d)
    one_file = is_local_file(d.dataset)
    train_split = load_problems(d.dataset, d.train_split, **options)
    if d.test_path:
        if not Path(d.test_path).is_file():
            raise ConfigError(f"data.test_path={d.test_path!r}: no such file")
        test_split = load_problems(d.test_path, **options)
    elif one_file:
        test_split = train_split  # one file is one split: read (and its bad rows reported) once
    else:
        test_split = load_problems(d.dataset, d.test_split, **options)
    if not train_split or not test_split:
        raise RftlabError(f"data.dataset={d.dataset!r} gave an empty train or test split")
    held_out: set[str] = set(d.train_example_ids)
    shared = not d.test_path and (one_file or d.train_split == d.test_split)
    if shared and one_file:
        if train:
            held_out |= {p.id for p in training_candidates(cfg, train_split)}
    elif shared:
        held_out |= {p.id for p in candidate_pool(train_split, d.difficulty_pool, d.selection_seed)}
    test_set = (test_split if d.test_path else [p for p in test_split if p.id not in held_out])[: d.test_size]
    if not test_set:
        what = f"{d.dataset} has {len(train_split)} problems" if one_file else "the split"
        raise RftlabError(
            f"no test problems left: {what} and all {len(held_out)} are held out as training candidates; "
            f"give a separate test file with data.test_path=..., or lower data.difficulty_pool"
            + (" (or pick the example with data.train_example_ids=[...])" if one_file else "")
        )
    if train:
        check_overlap(cfg, train_split, test_set)
    return train_split, test_set


def training_candidates(cfg: Config, train_split: list[Problem]) -> list[Problem]:
    """The problems a training example can come from: the explicit ids, else the difficulty pool
    (with data.difficulty=any, its first data.train_examples: those are taken without estimating)."""
    if cfg.data.train_example_ids:
        wanted = set(cfg.data.train_example_ids)
        return [p for p in train_split if p.id in wanted]
    pool = candidate_pool(train_split, cfg.data.difficulty_pool, cfg.data.selection_seed)
    return pool[: cfg.data.train_examples] if cfg.data.difficulty == "any" else pool


def check_overlap(cfg: Config, train_split: list[Problem], test_set: list[Problem]) -> None:
    """Refuse a training candidate whose question (case and whitespace ignored) is also a test problem.

    Checked before any model is loaded or any sampling: a run that trains on a test problem would
    report a test Pass@1 that is partly its own training Pass@1. The vendored splits have no overlap.
    """
    pairs = question_overlap(training_candidates(cfg, train_split), test_set)
    if pairs:
        train_p, test_p = pairs[0]
        source = cfg.data.test_path or cfg.data.dataset
        raise ConfigError(
            f"train and test overlap: {len(pairs)} training candidate(s) also in the test set of {source} "
            f"(first: {train_p.id} is test problem {test_p.id}: {train_p.question[:60]!r}); remove them from one file, "
            f"or choose data.train_example_ids outside the test set"
        )


def check_train_example_ids(cfg: Config, train_split: list[Problem]) -> None:
    """Explicit training ids must exist: checked before the run directory is made."""
    known = {p.id for p in train_split}
    missing = [i for i in cfg.data.train_example_ids if i not in known]
    if missing:
        raise RftlabError(f"data.train_example_ids: no example with id {missing[0]!r} in {cfg.data.dataset}")


def choose_training_examples(
    cfg: Config,
    policy: Policy,
    train_split: list[Problem],
    style: str | None,
    answer_format: str,
    progress: ProgressHook | str | None = None,
) -> tuple[list[Problem], dict[str, float]]:
    """Explicit ids, or the first examples of the candidate pool in the configured difficulty bucket."""
    if cfg.data.train_example_ids:
        check_train_example_ids(cfg, train_split)
        by_id = {p.id: p for p in train_split}
        return [by_id[i] for i in cfg.data.train_example_ids], {}
    check_pool_size(cfg.data, len(train_split), train_split[0].id)
    pool = candidate_pool(train_split, cfg.data.difficulty_pool, cfg.data.selection_seed)
    if cfg.data.difficulty == "any":
        return pool[: cfg.data.train_examples], {}
    settings = difficulty_settings(cfg, policy, style, answer_format, samples=cfg.data.difficulty_samples)
    base = estimate_difficulty(policy, pool, settings, batch_size=cfg.eval.batch_size, progress=progress)
    return select_by_difficulty(pool, base, cfg.data.difficulty, cfg.data.train_examples), base


def difficulty_settings(
    cfg: Config,
    policy: Policy | None,
    style: str | None,
    answer_format: str,
    *,
    samples: int,
    dataset: str | None = None,
    split: str | None = None,
) -> DifficultySettings:
    """The key of a cached base-Pass@1 estimate: model, data, prompt and sampling of this config.

    `policy` None (a sweep grouping its runs before any model is loaded): no weight fingerprint.
    `dataset`, `split`: another candidate source than data.dataset (a task of data.mix).
    """
    return DifficultySettings(
        model=cfg.model.name,
        model_fingerprint="" if policy is None else model_fingerprint(policy),
        dataset=dataset or cfg.data.dataset,
        split=split or cfg.data.train_split,
        prompt_style=style,
        answer_format=answer_format,
        samples=samples,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        max_new_tokens=cfg.rollout.max_new_tokens,
        seed=cfg.data.selection_seed,
    )


def use_threads(cfg: Config) -> int:
    """Set torch's threads by `rftlab.threads`: run.threads, else OMP_NUM_THREADS, else the free cores.

    Oversubscribed OpenMP threads collapse a run (10-30x slower), so 0 no longer means one per core.
    """
    policy = thread_policy_for(cfg.run.threads)
    torch.set_num_threads(policy.threads)
    log.info("torch threads: %d (%s)", policy.threads, policy.reason)
    return policy.threads


def build_reference(cfg: Config, policy: Policy) -> torch.nn.Module | None:
    """The frozen KL reference: a copy of the initial weights in the compute dtype (none without KL).

    With LoRA there is no copy: the reference is the policy with its adapter disabled. The copy is
    made parameter by parameter (deepcopy's memo), so a float32 model never exists twice for a bf16 one.
    """
    if cfg.objective.kl_coef <= 0 or policy.is_lora:
        return None
    model = policy.model
    memo = {
        id(p): torch.nn.Parameter(p.detach().to(policy.compute_dtype, copy=True), requires_grad=False)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo).eval()


def build_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.optimizer == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.beta1, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)


# ----------------------------------------------------------------------------- one update


def optimizer_step(policy: Policy, optimizer: torch.optim.Optimizer, stepped: bool) -> None:
    """optimizer.step(); with float16 compute through the loss scaler (which skips a step that overflowed)."""
    scaler = policy.grad_scaler
    if scaler is None:
        if stepped:
            optimizer.step()
        return
    if stepped:
        scaler.step(optimizer)
    scaler.update()


def checkpoint_state(state: dict, policy: Policy) -> dict:
    """The trainer state a checkpoint holds: round state, torch's RNG, and the loss scale (float16)."""
    scaler = {} if policy.grad_scaler is None else {"grad_scaler": policy.grad_scaler.state_dict()}
    return {**state, "torch_rng": torch.get_rng_state(), **scaler}


@torch.no_grad()
def reference_logp(
    cfg: Config,
    policy: Policy,
    reference: torch.nn.Module | None,
    args: list[torch.Tensor],
    mask: torch.Tensor,
    chunks: list[slice],
) -> torch.Tensor:
    """(N, T) log-probs under the frozen reference: the copy, or a LoRA policy with its adapter disabled."""
    ref_policy = (
        policy
        if reference is None
        else Policy(
            policy.name,
            reference,
            policy.tokenizer,
            policy.device,
            compute_dtype=policy.compute_dtype,
            master_dtype=policy.master_dtype,
            head_checked=policy.head_checked,
        )
    )
    with ref_policy.reference_mode(), policy.autocast():
        return torch.cat(
            [
                response_logp(
                    ref_policy,
                    *(a[c] for a in args),
                    mask[c],
                    temperature=cfg.rollout.temperature,
                    chunk_tokens=cfg.train.logprob_chunk_tokens,
                    shared_prompt=cfg.train.shared_prompt,
                )[0]
                for c in chunks
            ]
        )


def micro_batch_backward(
    cfg: Config,
    policy: Policy,
    inputs: list[torch.Tensor],
    mask: torch.Tensor,
    adv: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    share: torch.Tensor | float,
    *,
    first: bool,
    total_tokens: torch.Tensor,
) -> dict[str, float]:
    """Forward, loss and backward of one micro-batch (its `share` of the batch loss); its raw metrics.

    On the first update `old_logp` (this micro-batch's rows, (n, T)) is filled in place: theta_old is
    the rollout policy, which is these weights.
    """
    obj = cfg.objective
    norm_tokens = obj.norm_tokens or cfg.rollout.max_new_tokens
    with policy.autocast():  # forward: (n, T) log-probs of the sampled tokens under the current weights
        logp, entropy = response_logp(
            policy,
            *inputs,
            mask,
            temperature=cfg.rollout.temperature,
            with_entropy=first,
            chunk_tokens=cfg.train.logprob_chunk_tokens,
            shared_prompt=cfg.train.shared_prompt,
        )
    if first:
        old_logp.copy_(logp.detach())
    loss, m = objectives.clipped_policy_loss(
        logp,
        old_logp,
        adv,
        mask,
        clip_eps_low=obj.clip_eps_low,
        clip_eps_high=obj.clip_eps_high,
        dual_clip=obj.dual_clip,
        aggregation=obj.aggregation,
        norm_tokens=norm_tokens,
    )
    total, out = loss, {"loss/kl": None, "policy/entropy": None}
    if ref_logp is not None:
        kl = objectives.kl_loss(
            logp, ref_logp, mask, estimator=obj.kl_estimator, aggregation=obj.aggregation, norm_tokens=norm_tokens
        )
        total = loss + obj.kl_coef * kl
        out["loss/kl"] = kl.item()
    scaled = total * share
    (policy.grad_scaler.scale(scaled) if policy.grad_scaler else scaled).backward()
    if entropy is not None:
        out["policy/entropy"] = float((entropy * mask).sum() / total_tokens)
    ratio_and_clip = {k: float(m[k]) for k in ("clip/frac", "clip/frac_dual", "ratio/max", "ratio/min")}
    return {"loss/policy": loss.item(), **ratio_and_clip, **out}


def batch_backward(
    cfg: Config,
    policy: Policy,
    args: list[torch.Tensor],
    mask: torch.Tensor,
    adv: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    chunks: list[slice],
    *,
    first: bool,
) -> tuple[dict[str, float], float, float]:
    """Accumulate the whole batch's gradient over its micro-batches; (batch metrics, ratio max, ratio min).

    A chunk's share of the batch loss comes from the aggregation's registry entry, so the accumulated
    gradient equals the whole batch's; the clip fractions are token fractions, weighted by token share.
    """
    loss_share = objectives.get_aggregation(cfg.objective.aggregation).micro_batch_share
    total_tokens = mask.sum().clamp(min=1)
    sums = {"loss/policy": 0.0, "loss/kl": 0.0, "clip/frac": 0.0, "clip/frac_dual": 0.0, "policy/entropy": 0.0}
    ratio_max, ratio_min = 0.0, float("inf")
    for c in chunks:
        share = loss_share(mask[c], mask)
        m = micro_batch_backward(
            cfg,
            policy,
            [a[c] for a in args],
            mask[c],
            adv[c],
            old_logp[c],
            None if ref_logp is None else ref_logp[c],
            share,
            first=first,
            total_tokens=total_tokens,
        )
        w, w_tokens = float(share), float(objectives.token_share(mask[c], mask))
        for key in ("loss/policy", "loss/kl"):
            sums[key] += (m[key] or 0.0) * w
        for key in ("clip/frac", "clip/frac_dual"):
            sums[key] += m[key] * w_tokens
        sums["policy/entropy"] += m["policy/entropy"] or 0.0
        ratio_max, ratio_min = max(ratio_max, m["ratio/max"]), min(ratio_min, m["ratio/min"])
    return sums, ratio_max, ratio_min


def policy_update(
    cfg: Config,
    policy: Policy,
    reference: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    batch: RolloutBatch,
    adv: torch.Tensor,
) -> dict[str, float]:
    """mu optimizer steps on one batch of rollouts; returns the metrics of the first and last update."""
    obj, device = cfg.objective, policy.device
    n_seq = len(batch)
    micro = cfg.train.micro_batch_size or n_seq
    chunks = [slice(i, min(i + micro, n_seq)) for i in range(0, n_seq, micro)]
    mask = batch.response_mask.to(device)
    args = [t.to(device) for t in (batch.prompt_ids, batch.prompt_mask, batch.response_ids)]
    adv = adv.to(device)

    ref_logp = None
    if reference is not None or (policy.is_lora and obj.kl_coef > 0):
        ref_logp = reference_logp(cfg, policy, reference, args, mask, chunks)

    old_logp = torch.zeros_like(mask, dtype=torch.float32)
    signal = bool(adv.abs().sum() > 0) or obj.kl_coef > 0
    metrics: dict[str, float] = {}
    policy.model.train()
    for update in range(obj.updates_per_batch):
        optimizer.zero_grad(set_to_none=True)
        sums, ratio_max, ratio_min = batch_backward(
            cfg, policy, args, mask, adv, old_logp, ref_logp, chunks, first=update == 0
        )
        if policy.grad_scaler is not None:
            policy.grad_scaler.unscale_(optimizer)  # float16 compute: back to the true gradients
        grad_norm = torch.nn.utils.clip_grad_norm_(
            policy.trainable_parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        )
        stepped = signal or cfg.optim.step_on_zero_signal
        optimizer_step(policy, optimizer, stepped)
        if update == 0:
            metrics.update(sums)
            metrics["optim/grad_norm"] = float(grad_norm)
        metrics["train/stepped"] = float(stepped)
        if update == obj.updates_per_batch - 1:  # clipping only binds after the first update
            metrics.update({"clip/frac_last": sums["clip/frac"], "ratio/max": ratio_max, "ratio/min": ratio_min})
    optimizer.zero_grad(set_to_none=True)
    policy.model.eval()
    return metrics


def check_finite(
    round_: int,
    update: dict[str, float],
    model: torch.nn.Module,
    checkpoint_round: int | None,
    *,
    loss_scaled: bool = False,
) -> None:
    """Stop at the first non-finite loss, gradient norm or weight, before the round is logged or
    checkpointed, so the last checkpoint stays good. Reads nothing random and changes no numbers.

    With float16 loss scaling (`loss_scaled`) an infinite gradient norm is the scaler's business: it
    skips that step and lowers the scale, so only the loss and the weights are checked.

    Weights: one float32 sum per trained parameter (a vectorized reduction, no copy; NaN and inf
    propagate into it), checked in one sync; only when a sum is not finite is each parameter checked
    element-wise, so a huge but finite sum is not mistaken for a broken weight.
    """
    kept = (
        "the run stops before any checkpoint"
        if checkpoint_round is None
        else f"the run stops; its last good checkpoint (round {checkpoint_round}) is kept"
    )
    for key in ("loss/policy", "loss/kl") + (() if loss_scaled else ("optim/grad_norm",)):
        value = update.get(key)
        if value is not None and not math.isfinite(value):
            raise RftlabError(f"round {round_}: non-finite {key} ({value}); {kept} (lower optim.lr?)")
    trained = [(n, p.detach()) for n, p in model.named_parameters() if p.requires_grad]
    if not trained or bool(torch.isfinite(torch.stack([p.sum(dtype=torch.float32) for _, p in trained])).all()):
        return
    broken = [n for n, p in trained if not bool(torch.isfinite(p).all())]
    if broken:
        raise RftlabError(f"round {round_}: non-finite weights after the optimizer step ({broken[0]}); {kept}")


# ----------------------------------------------------------------------------- evaluation


def evaluate_task(
    cfg: Config, task: Task, train_examples: list[Problem], round_: int, progress: RunProgress | None = None
) -> dict[str, float]:
    """The eval row: `evaluate_round`, or per task for a multi-task run (`multitask.evaluate_mix`)."""
    if task.mix is not None:
        seed_for = lambda purpose: derive_seed(cfg.seed, round_, purpose)  # noqa: E731
        return evaluate_mix(cfg, task.policy, task.mix, train_examples, task.style, seed_for, round_)
    return evaluate_round(
        cfg, task.policy, train_examples, task.test_set, task.style, task.answer_format, round_, progress
    )


def evaluate_round(
    cfg: Config,
    policy: Policy,
    train_examples: list[Problem],
    test_set: list[Problem],
    style: str | None,
    answer_format: str,
    round_: int,
    progress: RunProgress | None = None,
) -> dict[str, float]:
    """Train-example Pass@1 from n samples each, and test Pass@1 (greedy, or n samples with pass@k).

    `progress`: the run's display, told how far each generation is (None: a bar per evaluation when
    `run.progress` is on, as `rftlab eval` shows).
    """
    common = dict(answer_format=answer_format, **run_eval_settings(cfg, style))
    on_train: EvalResult = evaluate(
        policy,
        train_examples,
        samples=cfg.eval.train_samples,
        greedy=False,
        seed=derive_seed(cfg.seed, round_, "eval/train"),
        progress=_eval_progress(cfg, progress, "train samples", f"eval train (round {round_})"),
        **common,
    )
    greedy = cfg.eval.test_mode == "greedy"
    on_test: EvalResult = evaluate(
        policy,
        test_set,
        samples=cfg.eval.test_samples,
        greedy=greedy,
        seed=derive_seed(cfg.seed, round_, "eval/test"),
        progress=_eval_progress(cfg, progress, "test", f"eval test (round {round_})"),
        **common,
    )
    row = {
        "train/pass_at_1": on_train.pass_at_1,
        "train/pass_at_1_low": on_train.interval[0],
        "train/pass_at_1_high": on_train.interval[1],
        "train/format_rate": on_train.format_rate,
        "test/pass_at_1": on_test.pass_at_1,
        "test/pass_at_1_low": on_test.interval[0],
        "test/pass_at_1_high": on_test.interval[1],
        "test/format_rate": on_test.format_rate,
        "test/response_tokens": on_test.mean_response_tokens,
    }
    for k in cfg.eval.pass_k:
        row[f"test/pass_at_{k}"] = on_test.pass_at(k)
    # Pass@1 = format rate x accuracy among well-formed answers, with Wilson intervals (added keys only)
    row |= decomposition_row("train", on_train) | decomposition_row("test", on_test)
    return row


def _eval_progress(cfg: Config, progress: RunProgress | None, label: str, bar_label: str) -> ProgressHook | str | None:
    if progress is not None:
        return progress.rows(label)
    return bar_label if cfg.run.progress else None


# ----------------------------------------------------------------------------- set-up and resume


@dataclass
class Task:
    """A configuration made ready: the policy, the data, the prompt style and the answer format.

    `set_up` builds it for a run (`train`) and for `rftlab eval`, so both load the same way.
    """

    policy: Policy
    train_split: list[Problem]
    test_set: list[Problem]
    style: str | None  # None: each problem's own prompt style (data.prompt_style=auto)
    answer_format: str
    mix: MixData | None = None  # data.mix: every task's data (train_split and test_set are their unions)

    def answer_format_for(self, problem: Problem) -> str:
        """The reward's answer extraction for this problem (per task in a multi-task run)."""
        if self.mix is None:
            return self.answer_format
        return self.mix.answer_format[problem.metadata["task"]]


def mix_task_settings(cfg: Config, policy: Policy, style: str | None):
    """A multi-task run's difficulty-cache key per task: the task's name is its data source."""
    return lambda spec, answer_format: difficulty_settings(
        cfg,
        policy,
        style,
        answer_format,
        samples=cfg.data.difficulty_samples,
        dataset=f"task:{spec.name}",
        split=spec.train_split,
    )


def set_up_mix(cfg: Config, mix: MixData, policy: Policy, style: str | None) -> Task:
    """set_up for data.mix: each task's prompts checked against the model's context, its answer format set."""
    names = [("train", t) for t in mix.tasks] + [("test", t) for t in mix.evaluated]
    checked = check_prompt_lengths(cfg, policy, *(getattr(mix, kind)[t] for kind, t in names))
    for (kind, t), problems in zip(names, checked, strict=True):
        getattr(mix, kind)[t] = problems
    with_answer_formats(cfg, mix, style)
    return Task(policy, mix.train_union, mix.test_union, style, mix.answer_format[mix.tasks[0]], mix)


def set_up(cfg: Config, *, train: bool = True) -> Task:
    """Threads and seed, data (first: a bad data file fails before a model is loaded), policy, lengths.

    `train=False` (rftlab eval): the base model, without what only training needs (LoRA, checkpointing).
    """
    use_threads(cfg)
    torch.manual_seed(cfg.seed)
    style = None if cfg.data.prompt_style == "auto" else cfg.data.prompt_style  # None: each problem's own
    if cfg.data.mix.tasks:
        mix = load_mix(cfg)  # data first, as below
        return set_up_mix(cfg, mix, load_policy_for(cfg.model, train=train), style)
    train_split, test_set = load_task(cfg, train=train)
    if train:
        check_train_example_ids(cfg, train_split)
        if not cfg.data.train_example_ids:
            check_pool_size(cfg.data, len(train_split), train_split[0].id)
    policy = load_policy_for(cfg.model, train=train)
    train_split, test_set = check_prompt_lengths(cfg, policy, train_split, test_set)
    answer_format = cfg.resolved_answer_format(style or test_set[0].prompt_style)
    return Task(policy, train_split, test_set, style, answer_format)


@dataclass
class RunState:
    """What carries across rounds and lives in a checkpoint (as a dict: `to_dict` / `from_dict`)."""

    train_example_ids: list[str]
    train_example_base_estimate: dict[str, float | None]
    baseline: torch.Tensor  # (examples,) running_mean's per-example baseline
    baseline_count: torch.Tensor  # (examples,) rewards folded into it
    round: int = 0
    rollouts_total: int = 0
    tokens_total: int = 0
    wall_seconds: float = 0.0
    base: dict | None = None  # the round-0 evaluation row
    last_eval: dict | None = None
    seconds: dict | None = None  # time buckets so far (progress.BUCKETS), carried across a resume

    def to_dict(self) -> dict:
        """The checkpoint's state dict (the keys and layout of earlier rftlab versions)."""
        state = dataclasses.asdict(self)
        for key in ("last_eval", "seconds"):
            if state[key] is None:
                del state[key]
        return state

    @staticmethod
    def from_dict(state: dict) -> RunState:
        fields = {f.name for f in dataclasses.fields(RunState)}
        return RunState(**{k: v for k, v in state.items() if k in fields})


def resume_or_start(
    cfg: Config,
    run: RunDir,
    task: Task,
    optimizer: torch.optim.Optimizer,
    resume: bool,
    progress: RunProgress | None = None,
) -> tuple[RunState, list[Problem], int | None]:
    """The carried state, the training examples, and the round of the last checkpoint (None: none yet).

    Resume: weights, optimizer, RNG and loss scale from the checkpoint, logs cut back to it. Start:
    choose the training examples, evaluate round 0 (checkpointed at once when train.rounds is 0).
    """
    policy = task.policy
    checkpoint = run.load_checkpoint() if resume else None
    if checkpoint is not None:
        policy.load_trainable_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        saved = checkpoint["state"]
        state = RunState.from_dict(saved)
        by_id = {p.id: p for p in task.train_split}
        torch.set_rng_state(saved["torch_rng"])
        if policy.grad_scaler is not None:
            policy.grad_scaler.load_state_dict(saved["grad_scaler"])
        run.truncate_logs(state.round)  # checks the logs are whole up to the checkpoint
        if progress is not None:
            progress.carry(state.seconds, state.round)
        return state, [by_id[i] for i in state.train_example_ids], state.round
    if resume:
        run.truncate_logs(-1)  # nothing was checkpointed: start over cleanly
    hook = None
    if progress is not None:
        progress.switch("select", selection_text(cfg))
        hook = progress.rows("base Pass@1")
    if task.mix is not None:
        settings = mix_task_settings(cfg, policy, task.style)
        examples, base_estimates = choose_mix_examples(cfg, policy, task.mix, settings)
    else:
        examples, base_estimates = choose_training_examples(
            cfg, policy, task.train_split, task.style, task.answer_format, progress=hook
        )
    state = RunState(
        [p.id for p in examples],
        {p.id: base_estimates.get(p.id) for p in examples},
        torch.zeros(len(examples)),
        torch.zeros(len(examples)),
    )
    if progress is not None:
        progress.switch("base eval", f"{len(examples)} training example(s), {len(task.test_set)} test problems")
    state.base = evaluate_task(cfg, task, examples, 0, progress)
    run.append_metrics({"round": 0, "split": "eval", "rollouts_total": 0, **state.base})
    if progress is not None:
        progress.eval_done(0, state.base)
    if cfg.train.rounds == 0:
        state.seconds = None if progress is None else progress.snapshot()
        save(run, policy, optimizer, state)
        return state, examples, 0
    return state, examples, None


def save(run: RunDir, policy: Policy, optimizer: torch.optim.Optimizer, state: RunState) -> None:
    run.save_checkpoint(
        policy.trainable_state_dict(), optimizer.state_dict(), checkpoint_state(state.to_dict(), policy)
    )


# ----------------------------------------------------------------------------- one round


def roll_out(cfg: Config, task: Task, train_examples: list[Problem], round_: int):
    """This round's B training examples (without replacement) and G responses each: (B*G) rows.

    A multi-task run draws data.mix.per_round[t] of each task t's examples (`MixSampler`).
    """
    B, G = cfg.train.examples_per_round, cfg.rollout.rollouts_per_round
    if task.mix is not None:
        pick = sampler(cfg).draw(round_)
    else:
        pick = torch.randperm(
            len(train_examples), generator=torch.Generator().manual_seed(derive_seed(cfg.seed, round_, "examples"))
        )[:B].tolist()
    examples = [train_examples[i] for i in pick]
    batch = generate(
        task.policy,
        [task.policy.prompt_text(e, task.style) for e in examples],
        samples_per_prompt=G,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        max_new_tokens=cfg.rollout.max_new_tokens,
        engine=cfg.rollout.engine,
        seed=derive_seed(cfg.seed, round_, "rollout"),
    )
    return pick, examples, batch


def reward_and_advantage(
    cfg: Config,
    state: RunState,
    task: Task,
    examples: list[Problem],
    pick: list[int],
    batch: RolloutBatch,
    round_: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Verify each response, apply the reward design, then the advantage (and fold the running baseline)."""
    B, G = len(pick), cfg.rollout.rollouts_per_round
    correct = torch.tensor(
        [
            score(text, examples[i].answer, task.answer_format_for(examples[i]))
            for text, i in zip(batch.texts, batch.prompt_index, strict=True)
        ],
        dtype=torch.float32,
    ).view(B, G)
    if cfg.objective.reward_design in objectives.CONTROL_REWARDS:
        rewards = control_rewards(cfg, state, task, examples, batch, round_)  # (B, G)
    else:
        rewards = objectives.shape_reward(correct, cfg.objective.reward_design)  # (B, G)
    advantage_fn = objectives.get_advantage(cfg.objective.advantage)
    adv = advantage_fn(
        rewards,
        baseline=state.baseline[pick],
        eps=cfg.objective.adv_eps,
        positive_weight=cfg.objective.positive_weight,
        difficulty=cfg.objective.difficulty_weights,
    )  # (B, G)
    new_baseline, new_count = objectives.update_running_baseline(
        state.baseline[pick], state.baseline_count[pick], rewards, cfg.objective.baseline_step
    )
    state.baseline[pick], state.baseline_count[pick] = new_baseline, new_count
    return correct, rewards, adv


def random_reward_rates(cfg: Config, state: RunState, examples: list[Problem]) -> torch.Tensor:
    """(B,) q of the random control reward per example: objective.random_reward_rate, else the example's
    base Pass@1 as estimated at selection, else (no selection estimate: explicit ids, difficulty any)
    the round-0 train Pass@1 over the training examples."""
    if cfg.objective.random_reward_rate is not None:
        return torch.full((len(examples),), cfg.objective.random_reward_rate)
    round0 = (state.base or {}).get("train/pass_at_1", 0.0)
    rates = [state.train_example_base_estimate.get(e.id) for e in examples]
    return torch.tensor([round0 if q is None else q for q in rates], dtype=torch.float32)


def control_rewards(
    cfg: Config, state: RunState, task: Task, examples: list[Problem], batch: RolloutBatch, round_: int
) -> torch.Tensor:
    """(B, G) rewards of a control design (`objectives.CONTROL_REWARDS`), which ignores correctness.

    The uniforms come from their own generator seeded by (run seed, round, "reward/random"): the
    same on resume, and no draw from torch's global stream, so every other draw of the run is as
    it would be under the binary reward.
    """
    B, G = cfg.train.examples_per_round, cfg.rollout.rollouts_per_round
    formatted = torch.tensor(
        [extract_answer(text, task.answer_format) is not None for text in batch.texts], dtype=torch.float32
    ).view(B, G)
    uniforms = torch.rand(B, G, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, round_, "reward/random")))
    fn = objectives.get_control_reward(cfg.objective.reward_design)
    return fn(formatted, uniforms=uniforms, rate=random_reward_rates(cfg, state, examples))


def train_row(
    cfg: Config,
    state: RunState,
    round_: int,
    examples: list[Problem],
    batch: RolloutBatch,
    correct: torch.Tensor,
    rewards: torch.Tensor,
    adv: torch.Tensor,
    update: dict,
    timeouts: int,
    times: dict[str, float],
) -> dict:
    """The round's metrics.jsonl row."""
    return {
        "round": round_,
        "split": "train_round",
        "reward/mean": float(rewards.mean()),
        "correct/mean": float(correct.mean()),
        "reward/verifier_timeouts": timeouts,
        "adv/mean": float(adv.mean()),
        "adv/abs_mean": float(adv.abs().mean()),
        "adv/zero_frac": float((adv == 0).float().mean()),
        **update,
        "response/length_mean": float(batch.response_lengths.float().mean()),
        "response/truncated_frac": float(batch.truncated.float().mean()),
        "tokens/round": int(batch.response_mask.sum()),
        "tokens/total": state.tokens_total,
        "rollouts_total": state.rollouts_total,
        "optim/lr": cfg.optim.lr,
        **times,
        "example_ids": [e.id for e in examples],
    }


def log_rollouts(
    run: RunDir, round_: int, examples: list[Problem], batch: RolloutBatch, correct: torch.Tensor, rewards: torch.Tensor
) -> None:
    run.append_rollouts(
        [
            {"round": round_, "example_id": examples[i].id, "text": text, "correct": bool(c), "reward": float(r)}
            for text, i, c, r in zip(
                batch.texts, batch.prompt_index, correct.flatten().tolist(), rewards.flatten().tolist(), strict=True
            )
        ]
    )


# ----------------------------------------------------------------------------- the loop


def train(cfg: Config, out: str | Path, *, resume: bool = False) -> dict:
    """Run (or resume) one configuration with one seed; returns the summary written to summary.json."""
    started, started_at = time.perf_counter(), provenance.now()
    progress = RunProgress(rounds=cfg.train.rounds, eval_every=cfg.eval.every, show=cfg.run.progress)
    tracking.check_installed(cfg)  # a missing run.report_to package fails before anything loads
    # ---- set-up: data, policy, reference; the run directory only once they have loaded
    task = set_up(cfg)
    policy = task.policy
    reference = build_reference(cfg, policy)
    if (warning := lr_resolution_warning(policy, cfg.optim.lr)) is not None:
        log.warning("rftlab: %s", warning)
    run = RunDir(out)  # a typo leaves no half-made run
    run.prepare(cfg, resume=resume)
    run.provenance = provenance.collect(started_at=started_at)  # also in each checkpoint's manifest
    optimizer = build_optimizer(cfg, policy.trainable_parameters())
    state, train_examples, checkpoint_round = resume_or_start(cfg, run, task, optimizer, resume, progress)
    tracker = tracking.open_tracker(cfg, run.path, resume=resume)  # run.report_to: tensorboard, wandb, mlflow
    tracker.log_rows(run.read_metrics())  # round 0's evaluation, or what a resumed run's backends lack
    run.on_metrics = tracker.log  # and every row written from here on

    wall_before = state.wall_seconds
    last_eval = state.last_eval or state.base
    recent_rewards: list[float] = []
    progress.switch("rounds")
    for round_ in range(state.round + 1, cfg.train.rounds + 1):
        t0 = time.perf_counter()
        # ---- sample B training examples, roll out G responses each
        pick, examples, batch = roll_out(cfg, task, train_examples, round_)
        t_rollout = time.perf_counter() - t0

        # ---- reward and advantage
        timeouts_before = verifier_timeouts()
        correct, rewards, adv = reward_and_advantage(cfg, state, task, examples, pick, batch, round_)

        # ---- loss and optimizer step(s)
        t1 = time.perf_counter()
        update = policy_update(cfg, policy, reference, optimizer, batch, adv.reshape(-1))
        t_update = time.perf_counter() - t1
        check_finite(round_, update, policy.model, checkpoint_round, loss_scaled=policy.grad_scaler is not None)

        # ---- log
        state.rollouts_total += len(examples) * cfg.rollout.rollouts_per_round
        state.tokens_total += int(batch.response_mask.sum())
        times = {
            "time/rollout_s": t_rollout,
            "time/update_s": t_update,
            "time/round_s": time.perf_counter() - t0,
        }
        run.append_metrics(
            train_row(
                cfg,
                state,
                round_,
                examples,
                batch,
                correct,
                rewards,
                adv,
                update,
                verifier_timeouts() - timeouts_before,
                times,
            )
        )
        if cfg.run.log_rollouts:
            log_rollouts(run, round_, examples, batch, correct, rewards)
        recent_rewards = (recent_rewards + [float(correct.mean())])[-20:]
        progress.round_done(
            round_,
            reward=f"{sum(recent_rewards) / len(recent_rewards):.2f}",
            train_p1=f"{last_eval['train/pass_at_1']:.2f}",
            test_p1=f"{last_eval['test/pass_at_1']:.3f}",
        )

        # ---- evaluate and checkpoint
        last = round_ == cfg.train.rounds
        if last or (cfg.eval.every and round_ % cfg.eval.every == 0):
            progress.switch("eval", f"round {round_}")
            last_eval = evaluate_task(cfg, task, train_examples, round_, progress)
            run.append_metrics({"round": round_, "split": "eval", "rollouts_total": state.rollouts_total, **last_eval})
            state.last_eval = last_eval
            progress.eval_done(round_, last_eval)
            progress.switch("rounds")
        state.round = round_
        if last or (cfg.run.checkpoint_every and round_ % cfg.run.checkpoint_every == 0):
            state.wall_seconds = wall_before + time.perf_counter() - started
            state.seconds = progress.snapshot()
            save(run, policy, optimizer, state)
            checkpoint_round = round_

    # ---- figure and summary (summary.json last: its presence marks a finished run)
    progress.switch("summary")
    plot_run(run.read_metrics(), run.path / "pass_at_1.png", title=plot_title(cfg, run.path))
    seconds = progress.close()
    tracker.close()
    summary = build_summary(cfg, run, state, wall_before + time.perf_counter() - started, seconds)
    summary["provenance"] = {**run.provenance, "ended_at": provenance.now(), "resumed": resume}
    run.write_summary(summary)
    return summary


def plot_title(cfg: Config, run_dir: Path) -> str:
    """The run figure's title: the run directory's name (a sweep names the layer and variant there),
    then the choices that tell variants apart."""
    o = cfg.objective
    return (
        f"{run_dir.name}\n{cfg.model.name} on {cfg.data.dataset}: advantage {o.advantage}, reward {o.reward_design}, "
        f"G={cfg.rollout.rollouts_per_round}, B={cfg.train.examples_per_round}, seed {cfg.seed}"
    )


def selection_text(cfg: Config) -> str:
    """What choosing the training examples will do, for the progress display."""
    d = cfg.data
    if d.train_example_ids:
        return f"explicit data.train_example_ids ({len(d.train_example_ids)})"
    if d.difficulty == "any":
        return "first candidate(s) of the pool (data.difficulty=any)"
    return f"base Pass@1 of {d.difficulty_pool} candidates x {d.difficulty_samples} samples"


def build_summary(
    cfg: Config, run: RunDir, state: RunState, wall_seconds: float, seconds: dict[str, float] | None = None
) -> dict:
    """Base vs final (and best) Pass@1, from the eval rows of metrics.jsonl, and where the time went.

    `seconds`: the run's time buckets (`progress.BUCKETS`). `seconds_per_round` counts a training
    round only (rollout, reward, update: the mean of metrics.jsonl's `time/round_s`);
    `seconds_per_round_with_evals` spreads the training and evaluation seconds over the rounds.
    """
    evals = [r for r in run.read_metrics() if r.get("split") == "eval"]
    keys = ["train_pass_at_1", "test_pass_at_1"]

    def pick(row: dict) -> dict:
        out = {k: row[k.replace("_pass", "/pass", 1)] for k in keys}
        out["round"] = row["round"]
        return out

    best = max(evals, key=lambda r: r["test/pass_at_1"])
    reached = next((r["round"] for r in evals if r["train/pass_at_1"] >= 0.9), None)
    train_rows = [r for r in run.read_metrics() if r.get("split") == "train_round"]
    return {
        "model": cfg.model.name,
        "dataset": "+".join(cfg.data.mix.tasks) if cfg.data.mix.tasks else cfg.data.dataset,
        "seed": cfg.seed,
        "train_example_ids": state.train_example_ids,
        "train_example_base_estimate": state.train_example_base_estimate,
        "base": pick(evals[0]),
        "final": pick(evals[-1]),
        "best_test": pick(best),
        "first_round_train_pass_at_1_ge_0.9": reached,
        "rounds": cfg.train.rounds,
        "rollouts_total": state.rollouts_total,
        "tokens_total": state.tokens_total,
        "wall_seconds": round(wall_seconds, 2),
        "seconds_per_round": round(sum(r["time/round_s"] for r in train_rows) / max(1, len(train_rows)), 4),
        **time_split(seconds or {}, cfg.train.rounds),
    }


def time_split(seconds: dict[str, float], rounds: int) -> dict[str, float]:
    """summary.json's `time/*` keys: seconds per bucket, and a round's cost with evaluations included."""
    out = {f"time/{bucket}_s": round(seconds.get(bucket, 0.0), 2) for bucket in BUCKETS}
    both = seconds.get("training", 0.0) + seconds.get("evaluation", 0.0)
    out["seconds_per_round_with_evals"] = round(both / rounds, 4) if rounds else None
    return out
