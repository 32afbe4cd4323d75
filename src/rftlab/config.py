"""Typed, validated, documented configuration: frozen dataclasses in small groups.

Every field carries a one-line help and its valid range or choices (`rftlab config fields` prints
them). A configuration is loaded from a YAML file or a built-in name (a YAML may start from another
with `base: tiny` or `base: other.yaml`), then dotted overrides
(`objective.clip_eps_low=0.1`) are applied, then every value and every cross-field rule is checked
once; a mistake raises `ConfigError` naming the key and what is allowed. Derived values are
properties, never mutated fields. The resolved configuration (every default written out) is saved
with each run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rftlab import objectives  # the registries the choices of objective.* come from
from rftlab.errors import ConfigError

INF = math.inf
REPORT_TO = ("tensorboard", "wandb", "mlflow")  # run.report_to's backends (rftlab.tracking)
TRACKING_FIELDS = ("report_to", "tracking_dir", "tracking_project", "tracking_group", "tracking_name", "tracking_tags")


def spec(default: Any, help: str, *, range: tuple[float, float] | None = None, choices=None, open_low=False):
    """A dataclass field with its documentation: one-line help, and a closed range or a set of choices."""
    meta = {
        "help": help,
        "range": range,
        "choices": tuple(choices) if choices else None,
        "open_low": open_low,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    name: str = spec("tiny", "policy: built-in (tiny, tiny-narrow, smollm2-135m), a hub id, or a local model directory")
    dtype: str = spec(
        "float32",
        "compute dtype of forward, backward and generation (bf16/fp16 via autocast over the master weights)",
        choices=["float32", "bfloat16", "float16"],
    )
    master_dtype: str = spec(
        "float32",
        "dtype of the trained weights and optimizer state; low precision only when set explicitly "
        "(updates below half an ulp round away)",
        choices=["float32", "bfloat16", "float16"],
    )
    device: str = spec("auto", "torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    use_chat_template: bool = spec(True, "wrap the prompt in the tokenizer's chat template when it has one")
    lora_rank: int = spec(0, "LoRA rank (peft); 0 = full fine-tune", range=(0, 65536))
    lora_alpha: float = spec(16.0, "LoRA scaling numerator: the update is (alpha / rank) B A", range=(0.0, 1e6))
    lora_dropout: float = spec(0.0, "dropout on the LoRA input", range=(0.0, 0.999))
    lora_target_modules: list = spec(
        [], "module names LoRA adapts; [] = every linear layer except the output head (peft's all-linear)"
    )
    gradient_checkpointing: bool = spec(
        False, "recompute activations in backward instead of storing them (less memory, ~30% more compute)"
    )


@dataclass(frozen=True)
class MixConfig:
    """Multi-task training (data.mix): several named tasks, each its own train pool and test set."""

    tasks: list = spec(
        [],
        "named tasks trained on together (rftlab.tasks.mix.TASKS: add, sub, mul, long, gsm8k, math500); "
        "[] = the single task data.dataset. Each task's test set (its first data.test_size) is evaluated "
        "apart: test/<task>/pass_at_1; test/pass_at_1 pools the trained tasks",
    )
    examples: list = spec(
        [], "distinct training examples of each task (a count per data.mix.tasks entry, each >= 1); [] = 1 each"
    )
    per_round: list = spec(
        [],
        "training examples drawn from each task per round, without replacement within a task (a count per "
        "data.mix.tasks entry, 1..its examples); [] = 1 each",
    )
    eval_tasks: list = spec(
        [],
        "named tasks whose test sets are evaluated (test/<task>/pass_at_1) but never trained on: cross-task transfer",
    )

    @property
    def example_counts(self) -> list[int]:
        return list(self.examples) or [1] * len(self.tasks)

    @property
    def round_counts(self) -> list[int]:
        return list(self.per_round) or [1] * len(self.tasks)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = spec(
        "synthetic",
        "task: synthetic, gsm8k, math500, math, a local .jsonl/.json/.parquet path, or hub:<name>",
    )
    train_split: str = spec("train", "split the training examples are drawn from")
    test_split: str = spec("test", "held-out split for test Pass@1")
    prompt_style: str = spec(
        "auto",
        "prompt suffix: auto (from the dataset), gsm8k (####), math (\\boxed{}), none",
        choices=["auto", "gsm8k", "math", "none"],
    )
    answer_format: str = spec(
        "auto",
        "reward's answer extraction: auto (gsm8k_strict for gsm8k prompts, boxed for math), gsm8k_strict, boxed, any",
        choices=["auto", "gsm8k_strict", "boxed", "any"],
    )
    train_examples: int = spec(1, "number of distinct training examples (the paper's minimalist: 1)", range=(1, 100000))
    train_example_ids: list = spec([], "explicit training example ids (overrides difficulty selection)")
    difficulty: str = spec(
        "medium",
        "pick training examples by base Pass@1 bucket: easy [0.6,0.9], medium [0.1,0.6], hard (0,0.1), extreme (=0), any",
        choices=["easy", "medium", "hard", "extreme", "any"],
    )
    difficulty_pool: int = spec(
        48, "candidate problems whose base Pass@1 is estimated for selection", range=(1, 100000)
    )
    selection_seed: int = spec(
        0,
        "seed of the candidate pool and its Pass@1 estimate (same example for every run seed)",
        range=(0, 2**31 - 1),
    )
    difficulty_samples: int = spec(16, "samples per candidate when estimating base Pass@1", range=(1, 4096))
    test_size: int = spec(200, "held-out problems for test Pass@1 (a fixed subset: the first N)", range=(1, 1000000))
    on_bad_row: str = spec(
        "error", "a malformed data row stops the load, or is skipped and counted", choices=["error", "skip"]
    )
    test_path: str = spec(
        "",
        "a separate test file (.jsonl/.json/.parquet) for test Pass@1; empty = the dataset's test split "
        "(a single local file: its rows outside the training candidates)",
    )
    format: str = spec(
        "auto",
        "row format of a local file or hub dataset: auto (guessed from the fields), gsm8k, math",
        choices=["auto", "gsm8k", "math"],
    )
    question_field: str = spec("", "field holding the question in your rows; empty = the format's own name")
    answer_field: str = spec("", "field holding the answer in your rows; empty = the format's own name")
    mix: MixConfig = field(
        default_factory=MixConfig,
        metadata={"help": "multi-task training: named tasks, examples of each per round, tasks evaluated only"},
    )


@dataclass(frozen=True)
class RolloutConfig:
    rollouts_per_round: int = spec(1, "G: responses sampled per training example per round", range=(1, 1024))
    temperature: float = spec(
        1.0, "sampling temperature of rollouts (and of sampled evaluation)", range=(0.0, 5.0), open_low=True
    )
    top_p: float = spec(1.0, "nucleus sampling threshold", range=(0.0, 1.0), open_low=True)
    max_new_tokens: int = spec(160, "response budget in tokens (the paper: 1024)", range=(1, 65536))
    engine: str = spec(
        "lean",
        "generation engine for rollouts and evaluation: lean (own decoding loop on the model's forward, "
        "finished rows leave the batch; BENCHMARKS.md) or hf (transformers generate, the reference: "
        "the same distribution and random stream, not promised the same bits)",
        choices=["hf", "lean"],
    )


@dataclass(frozen=True)
class ObjectiveConfig:
    advantage: str = spec(
        "none",
        "advantage estimator (none: the raw reward, the minimalist)",
        choices=sorted(objectives.ADVANTAGES),
    )
    reward_design: str = spec(
        "binary",
        "reward for (wrong, right), rftlab.objectives.REWARD_DESIGNS; or a control that ignores correctness "
        "(rftlab.objectives.CONTROL_REWARDS): format (1 for a well-formed final answer, any value), "
        "random (Bernoulli(objective.random_reward_rate))",
        choices=objectives.reward_design_names(),
    )
    random_reward_rate: float | None = spec(
        None,
        "q of reward_design=random, a probability per rollout; null = the training example's base Pass@1 "
        "(its selection estimate, else its round-0 train Pass@1), so the reward rate matches the 0/1 reward's",
        range=(0.0, 1.0),
    )
    aggregation: str = spec(
        "token_mean",
        "how per-token losses become the batch loss",
        choices=sorted(objectives.LOSS_AGGREGATIONS),
    )
    clip_eps_low: float = spec(0.2, "clip range below 1: ratio >= 1 - eps", range=(0.0, 0.999))
    clip_eps_high: float = spec(
        0.2, "clip range above 1: ratio <= 1 + eps (DAPO's clip-higher when > low)", range=(0.0, 10.0)
    )
    dual_clip: float | None = spec(
        None,
        "dual-clip constant c > 1 for negative advantages (verl: 3.0); null = off",
        range=(1.0, INF),
        open_low=True,
    )
    updates_per_batch: int = spec(
        1, "mu: optimizer steps on each batch of rollouts (ratio and clip bind when > 1)", range=(1, 256)
    )
    kl_coef: float = spec(
        0.0,
        "coefficient of the KL loss to the frozen reference policy (the paper: 0.001)",
        range=(0.0, 100.0),
    )
    kl_estimator: str = spec(
        "k3", "per-token KL estimator (k3: verl's low_var_kl)", choices=sorted(objectives.KL_ESTIMATORS)
    )
    adv_eps: float = spec(1e-6, "constant added to the group std by grpo", range=(0.0, 1.0))
    baseline_step: float | None = spec(
        None,
        "running_mean baseline: null = exact mean of past rewards, else EMA step",
        range=(0.0, 1.0),
        open_low=True,
    )
    norm_tokens: int | None = spec(None, "normalizer of seq_mean_token_sum_norm; null = max_new_tokens", range=(1, 1e9))
    # adaptive designs (rftlab.objectives: w_reinforce, grpo_lead)
    positive_weight: float = spec(
        0.1,
        "w_reinforce's lambda: advantage +lambda for a correct rollout, -1 for a wrong one (Zhu et al. 2025: 0.1)",
        range=(0.0, 100.0),
    )
    difficulty_weight_low: float = spec(
        0.4,
        "grpo_lead: lower asymptote A of the logistic weight, approached by easy groups (GRPO-LEAD: 0.4)",
        range=(0.0, 100.0),
    )
    difficulty_weight_high: float = spec(
        1.5,
        "grpo_lead: upper asymptote B of the logistic weight, approached by hard groups (GRPO-LEAD: 1.5)",
        range=(0.0, 100.0),
    )
    difficulty_midpoint: float = spec(
        0.75, "grpo_lead: group accuracy where the weight is halfway between low and high (rho_0)", range=(0.0, 1.0)
    )
    difficulty_steepness: float = spec(
        10.0, "grpo_lead: steepness k of the logistic weight in the group accuracy", range=(0.0, 1000.0)
    )

    @property
    def difficulty_weights(self) -> objectives.DifficultyWeights:
        """grpo_lead's logistic weight of a group's accuracy, from the four difficulty_* fields."""
        return objectives.DifficultyWeights(
            self.difficulty_weight_low, self.difficulty_weight_high, self.difficulty_midpoint, self.difficulty_steepness
        )


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = spec("adamw", "optimizer", choices=["adamw", "sgd"])
    lr: float = spec(1e-5, "learning rate (the paper, for 1B models: 1e-6)", range=(0.0, 10.0), open_low=True)
    weight_decay: float = spec(0.01, "decoupled weight decay (AdamW) or L2 (SGD)", range=(0.0, 1.0))
    beta1: float = spec(0.9, "AdamW beta1 (SGD: momentum)", range=(0.0, 1.0))
    beta2: float = spec(0.999, "AdamW beta2", range=(0.0, 1.0))
    grad_clip: float = spec(1.0, "max global grad norm; 0 = no clipping", range=(0.0, INF))
    step_on_zero_signal: bool = spec(
        True,
        "take the optimizer step even when every advantage is 0 (as verl does: momentum and weight decay still move)",
    )


@dataclass(frozen=True)
class TrainConfig:
    rounds: int = spec(200, "training rounds (one batch of rollouts each)", range=(0, 10_000_000))
    examples_per_round: int = spec(
        1, "B: training examples per round (sampled without replacement per round)", range=(1, 100000)
    )
    micro_batch_size: int = spec(
        0, "sequences per forward/backward chunk (gradient accumulation); 0 = all at once", range=(0, 100000)
    )
    logprob_chunk_tokens: int = spec(
        0,
        "response tokens whose full-vocabulary logits exist at once when computing log-probs and entropy; "
        "0 = a whole micro-batch",
        range=(0, 10**9),
    )
    shared_prompt: bool = spec(
        True,
        "run each distinct prompt through the model once per update forward, its G responses packed "
        "on its KV cache without padding (less compute; same log-probs and gradients up to float "
        "rounding; SDPA attention only, else the per-row forward)",
    )


@dataclass(frozen=True)
class EvalConfig:
    every: int = spec(
        25, "evaluate every N rounds (and always at round 0 and at the end); 0 = only those", range=(0, 10**9)
    )
    train_samples: int = spec(16, "n samples per training example for its Pass@1 estimate", range=(1, 4096))
    test_mode: str = spec(
        "greedy",
        "test Pass@1 from one greedy response (the paper) or n samples",
        choices=["greedy", "sample"],
    )
    test_samples: int = spec(4, "n samples per test problem when test_mode=sample", range=(1, 4096))
    pass_k: list = spec([1], "k values for the unbiased pass@k on test (each k <= test_samples)")
    batch_size: int = spec(
        64,
        "rows (prompts x samples) per generation batch during evaluation; halved automatically on CUDA OOM",
        range=(1, 100000),
    )
    sort_by_length: bool = spec(
        False,
        "generate evaluation rows longest prompt first (batches of similar length, results returned in "
        "order); changes which row draws which random numbers, so sampled results differ from unsorted",
    )


@dataclass(frozen=True)
class RunConfig:
    checkpoint_every: int = spec(
        25, "save a resumable checkpoint every N rounds; 0 = only at the end", range=(0, 10**9)
    )
    log_rollouts: bool = spec(True, "write every rollout (text, reward) to rollouts.jsonl.gz")
    progress: bool = spec(True, "show a progress bar")
    threads: int = spec(
        0,
        "torch CPU threads; 0 = OMP_NUM_THREADS if set, else every available core (idle threads sleep: "
        "OMP_WAIT_POLICY=PASSIVE); tiny's results are the same at any thread count",
        range=(0, 1024),
    )
    # ---- tracking (rftlab.tracking): where every metrics.jsonl row also goes
    report_to: str | list = spec(
        "none",
        "where every metrics row and the config also go: none, tensorboard, wandb (offline), mlflow (local file "
        "store), or a list of them; each needs its extra, pip install 'rftlab[tensorboard]' (or wandb, mlflow)",
    )
    tracking_dir: str = spec(
        "",
        "folder the tracking backends write in; '' = the run directory; a relative path is relative to the run "
        "directory (a sweep uses ../../tracking: one folder for all its runs)",
    )
    tracking_project: str = spec("rftlab", "wandb project and mlflow experiment name (a sweep: the pipeline's name)")
    tracking_group: str = spec(
        "", "wandb group and tensorboard sub-folder (a sweep: layer/variant, so seeds group together)"
    )
    tracking_name: str = spec("", "the run's name in the backends; '' = the run directory's name")
    tracking_tags: list = spec([], "key=value tags for the backends (a sweep: layer, variant, seed)")

    @property
    def report_backends(self) -> tuple[str, ...]:
        """run.report_to as backend names in order, without `none` and repeats ("a,b" counts as a list too)."""
        names = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to)
        parts = [str(part).strip() for name in names for part in str(name).split(",")]
        return tuple(dict.fromkeys(p for p in parts if p and p != "none"))


@dataclass(frozen=True)
class Config:
    seed: int = spec(0, "the run's seed: every random draw is derived from it", range=(0, 2**31 - 1))
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "policy"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "task and example selection"})
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"help": "sampling"})
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig, metadata={"help": "advantage and loss"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "optimizer"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "round loop"})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "evaluation"})
    run: RunConfig = field(default_factory=RunConfig, metadata={"help": "run directory"})

    # ------------------------------------------------------------------ derived values
    @property
    def examples_per_round_total(self) -> int:
        """B: training examples per round (with data.mix.tasks, the sum over the tasks)."""
        if self.data.mix.tasks:
            return sum(self.data.mix.round_counts)
        return self.train.examples_per_round

    @property
    def rollouts_per_round_total(self) -> int:
        """Responses generated per round: B x G."""
        return self.examples_per_round_total * self.rollout.rollouts_per_round

    def resolved_answer_format(self, prompt_style: str) -> str:
        """The `rftlab.rewards` extraction mode: the paper's strict `####` for GSM8K prompts, boxed for MATH."""
        fmt = self.data.answer_format
        if fmt == "any":
            return "auto"  # rewards' own name for "any recognizable answer line"
        if fmt != "auto":
            return fmt
        return "boxed" if prompt_style == "math" else "gsm8k_strict"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def without_tracking(cfg: Config) -> Config:
    """The config with run.report_to and run.tracking_* at their defaults: where metrics are also sent is not
    part of what a run computes, so a resume may change it (the newly named backends get the history)."""
    defaults = {name: getattr(RunConfig(), name) for name in TRACKING_FIELDS}
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, **defaults))


# ----------------------------------------------------------------------------- validation


def _is_group(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check (and gently coerce: int -> float) a value against a field's annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if isinstance(value, list | tuple) and list in args:  # e.g. run.report_to: a name or a list
            return list(value)
        return _coerce(key, value, args[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}={value!r}: expected a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}={value!r}: expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r}: expected a string")
        return value
    if tp is list or origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}={value!r}: expected a list, e.g. [1, 2]")
        return value
    return value


def _check_field(key: str, value: Any, f: dataclasses.Field) -> None:
    meta = f.metadata
    choices, rng = meta.get("choices"), meta.get("range")
    if value is None:
        return
    if choices and value not in choices:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, choices))}")
    if rng and isinstance(value, int | float) and not isinstance(value, bool):
        low, high = rng
        low_ok = value > low if meta.get("open_low") else value >= low
        if not (low_ok and value <= high) or (isinstance(value, float) and math.isnan(value)):
            bracket = "(" if meta.get("open_low") else "["
            raise ConfigError(f"{key}={value!r} is out of range; allowed {bracket}{low:g}, {high:g}]")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _field_types(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else f"; valid keys: {', '.join(fields)}"
        raise ConfigError(f"unknown config key {prefix}{key}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        tp = hints[name]
        if _is_group(tp):
            kwargs[name] = _build(tp, data[name] if data[name] is not None else {}, f"{prefix}{name}.")
        else:
            value = _coerce(f"{prefix}{name}", data[name], tp)
            _check_field(f"{prefix}{name}", value, f)
            kwargs[name] = value
    return cls(**kwargs)


def _check_cross_fields(cfg: Config) -> None:
    """Rules that involve more than one field, checked once at load."""
    if cfg.train.examples_per_round > cfg.data.train_examples:
        raise ConfigError(
            f"train.examples_per_round={cfg.train.examples_per_round} exceeds data.train_examples="
            f"{cfg.data.train_examples}; allowed [1, data.train_examples]"
        )
    if cfg.data.train_example_ids and len(cfg.data.train_example_ids) != cfg.data.train_examples:
        raise ConfigError(
            f"data.train_example_ids has {len(cfg.data.train_example_ids)} ids but data.train_examples="
            f"{cfg.data.train_examples}; give exactly that many"
        )
    n_test = cfg.eval.test_samples if cfg.eval.test_mode == "sample" else 1
    for k in cfg.eval.pass_k:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_test:
            raise ConfigError(
                f"eval.pass_k contains {k!r}; each k must be an integer in [1, {n_test}] "
                f"(n = eval.test_samples with test_mode=sample, else 1)"
            )
    designs = objectives.get_advantage(cfg.objective.advantage).reward_designs
    if designs is not None and cfg.objective.reward_design not in designs:
        raise ConfigError(
            f"objective.reward_design={cfg.objective.reward_design!r} does not suit objective.advantage="
            f"{cfg.objective.advantage!r}; allowed: {', '.join(designs)}"
        )
    for name in cfg.run.report_backends:
        if name not in REPORT_TO:
            raise ConfigError(f"run.report_to={name!r} is not allowed; choose none or any of: {', '.join(REPORT_TO)}")
    for tag in cfg.run.tracking_tags:
        if not isinstance(tag, str) or "=" not in tag or not tag.split("=", 1)[0]:
            raise ConfigError(f"run.tracking_tags contains {tag!r}; each tag is a string key=value")
    if cfg.objective.clip_eps_low >= 1.0:
        raise ConfigError(f"objective.clip_eps_low={cfg.objective.clip_eps_low} is out of range; allowed [0, 1)")
    _check_mix(cfg)


def _check_mix(cfg: Config) -> None:
    """data.mix: known, distinct task names; one count per task; per-task counts replace the global ones."""
    from rftlab.tasks.mix import task_spec

    mix = cfg.data.mix
    for key, names in (("data.mix.tasks", mix.tasks), ("data.mix.eval_tasks", mix.eval_tasks)):
        for name in names:
            if not isinstance(name, str):
                raise ConfigError(f"{key} contains {name!r}; expected task names")
            task_spec(name, key)
        if len(set(names)) != len(names):
            raise ConfigError(f"{key}={names!r} names a task twice")
    if not mix.tasks:
        for key, value in (("examples", mix.examples), ("per_round", mix.per_round), ("eval_tasks", mix.eval_tasks)):
            if value:
                raise ConfigError(f"data.mix.{key} is set but data.mix.tasks is empty; name the trained tasks")
        return
    both = [t for t in mix.eval_tasks if t in mix.tasks]
    if both:
        raise ConfigError(f"data.mix.eval_tasks: {both[0]!r} is also in data.mix.tasks (trained tasks are evaluated)")
    for key, values in (("examples", mix.examples), ("per_round", mix.per_round)):
        if values and len(values) != len(mix.tasks):
            raise ConfigError(
                f"data.mix.{key} has {len(values)} counts for {len(mix.tasks)} tasks; give one per data.mix.tasks entry"
            )
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100000:
                raise ConfigError(f"data.mix.{key} contains {v!r}; each count must be an integer in [1, 100000]")
    for task, n, k in zip(mix.tasks, mix.example_counts, mix.round_counts, strict=True):
        if k > n:
            raise ConfigError(
                f"data.mix.per_round draws {k} examples of task {task!r} per round but data.mix.examples gives it "
                f"{n}; allowed [1, {n}]"
            )
    for key, value in (
        ("data.train_examples", cfg.data.train_examples),
        ("train.examples_per_round", cfg.train.examples_per_round),
    ):
        if value != 1:
            raise ConfigError(
                f"{key}={value} with data.mix.tasks: counts are per task there (data.mix.examples, "
                f"data.mix.per_round); leave {key} at 1"
            )
    if cfg.data.train_example_ids:
        raise ConfigError(
            "data.train_example_ids cannot be combined with data.mix.tasks (examples are chosen per task)"
        )


# ----------------------------------------------------------------------------- loading


def builtin_names(folder: str) -> list[str]:
    """Names of the YAML files shipped in the package folder `folder` (configs, pipelines)."""
    files = resources.files("rftlab") / folder
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


def builtin_config_names() -> list[str]:
    return builtin_names("configs")


def read_yaml_source(source: str, *, folder: str, kind: str) -> tuple[dict[str, Any], str]:
    """(mapping, directory of the file) for a YAML path or the name of a built-in in package `folder`.

    `kind` names the thing in error messages ("config", "pipeline"). One reader for configs and
    pipeline specs, so both accept the same sources and fail with the same one-line errors.
    """
    path = Path(source)
    if source.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"{kind} file not found: {source}")
        text, directory = path.read_text(), str(path.resolve().parent)
    else:
        builtin = resources.files("rftlab") / folder / f"{source}.yaml"
        if not builtin.is_file():
            raise ConfigError(
                f"{kind} {source!r} is neither a YAML file nor a built-in {kind}; built-ins: "
                f"{', '.join(builtin_names(folder))}"
            )
        text, directory = builtin.read_text(), str(Path(str(builtin)).parent)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{kind} {source}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} {source}: expected a mapping at the top level")
    return data, directory


def _read_source(source: str | None) -> dict[str, Any]:
    return {} if source is None else read_config_chain(source)


def read_config_chain(source: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config's mapping with its `base:` chain resolved: the base's values, then this file's on top.

    `base:` names a built-in config (`tiny`) or another YAML (a relative path is read from the
    directory of the file that names it); a base may have its own base. Mappings merge key by key,
    anything else (numbers, strings, lists) is replaced. A cycle is refused naming the chain.
    """
    data, directory = read_yaml_source(source, folder="configs", kind="config")
    identity = _source_identity(source)
    chain = (*_chain, identity)
    if "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"config {source}: base must name a built-in config or a YAML file, got {base!r}")
    beside = Path(directory) / base
    base_source = str(beside) if not Path(base).is_absolute() and beside.is_file() else base
    if _source_identity(base_source) in chain:
        names = " -> ".join([*chain, _source_identity(base_source)])
        raise ConfigError(f"config {source}: base chain has a cycle ({names})")
    return _merge(read_config_chain(base_source, chain), data)


def _source_identity(source: str) -> str:
    """A file's resolved path, or a built-in's name: what a cycle in `base:` chains is detected on."""
    path = Path(source)
    return str(path.resolve()) if source.endswith((".yaml", ".yml")) or path.exists() else f"built-in {source}"


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`: nested mappings merged key by key, every other value replaced."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value) with value read as YAML (numbers, true/false, null, lists)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. objective.clip_eps_low=0.1")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); unknown keys are caught later by validation."""
    import copy

    data = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, dict) else [parse_override(o) for o in overrides]
    for path, value in items:
        if isinstance(path, str):
            path = path.split(".")
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = _build(Config, data, "")
    _check_cross_fields(cfg)
    return cfg


def load_config(source: str | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """A validated Config from a YAML path or built-in name, with dotted overrides applied on top."""
    return config_from_dict(apply_overrides(_read_source(source), overrides or []))


def describe_fields(cls: type = Config, prefix: str = "", values: Any = None) -> list[tuple[str, str, str, str]]:
    """(key, value, allowed, help) for every leaf field: the config's documentation.

    The value is the default, or the one in `values` (a resolved config of type `cls`, e.g. the
    built-in `tiny`), so `rftlab config fields tiny` shows what applies to a run of `tiny`.
    """
    rows = []
    hints = _field_types(cls)
    default = cls() if values is None else values
    for f in dataclasses.fields(cls):
        if _is_group(hints[f.name]):
            rows += describe_fields(hints[f.name], f"{prefix}{f.name}.", getattr(default, f.name))
            continue
        meta = f.metadata
        if meta.get("choices"):
            allowed = " | ".join(map(str, meta["choices"]))
        elif meta.get("range"):
            low, high = meta["range"]
            allowed = f"{'(' if meta.get('open_low') else '['}{low:g}, {high:g}]"
        else:
            allowed = ""
        rows.append((f"{prefix}{f.name}", repr(getattr(default, f.name)), allowed, meta.get("help", "")))
    return rows
