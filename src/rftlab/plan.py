"""A plan before a run: parameters, memory per component and phase, tokens per round — no weights loaded.

`rftlab plan CONFIG` (and `rftlab run CONFIG --plan`) answers "does this recipe fit on that device?"
before anything is rented or downloaded. Parameters are counted exactly: the model is instantiated
from its config on torch's meta device (shapes only, no storage). LoRA adds r x (in + out) per
targeted linear layer (peft's LoraLayer: A is r x in, B is out x r). Architecture configs of the
paper's models ship in `rftlab/builtin/arch/` so the plan works offline.

Memory model (bytes; P = parameters, c = compute-dtype bytes, m = master-dtype bytes; each term checked
against the implementation in policy.py / trainer.py, and on CPU against peak RSS, BENCHMARKS.md):

- weights: all P in `model.master_dtype` (with LoRA the frozen base stays in the master dtype too:
  `load_policy` loads it so and peft leaves it there; the adapters take the base layer's dtype);
- autocast copy: when the compute dtype differs from the master dtype, torch.autocast casts the
  weights and biases of every nn.Linear (the output head included; embeddings and norms are not
  cast) and caches the copy of every trainable one until the outermost autocast exits: L x c
  (L = Linear parameters, a tied head counted once) during a generation batch and during the update
  forward, whose graph keeps the copies for backward. A frozen weight (the LoRA base) is cast op by
  op and not cached: in generation one matrix at a time (the largest Linear), but in the update
  every op's copy is saved for backward (the input needs W's gradient path), so the update holds
  the same L x c as a full fine-tune; with gradient checkpointing only the head's and one layer's;
- gradients P_trainable x m; AdamW two states per trainable parameter, SGD one (momentum > 0); float16's
  GradScaler unscales the gradients in place (no term);
- optimizer step (its own phase, after backward has freed the graph): weights + states + gradients +
  the step's temporaries: on CUDA torch's foreach AdamW allocates sqrt(v) for every trainable tensor
  at once (P_trainable x m); on CPU the per-tensor loop allocates two temporaries of one tensor (the
  largest trainable one);
- KL reference (objective.kl_coef > 0): a copy of every parameter in the compute dtype for full
  fine-tuning (`trainer.build_reference`), nothing with LoRA (the adapter is disabled for the
  reference forward);
- activations kept for backward, per token of the micro-batch (its tokens: each row's prompt and
  response budget, or with `train.shared_prompt` each distinct prompt once plus the rows' response
  budgets: `shared_prompts_per_micro_batch`) (Llama-style decoder layer, SDPA
  attention which keeps no T x T score matrix; h hidden, q = heads x head_dim, k = kv_heads x head_dim,
  i intermediate): each RMSNorm keeps 2h in the residual dtype (the master dtype) plus its output;
  attention keeps q, k, v, its output and the o_proj input (3q + 2k); the SwiGLU MLP keeps gate, up,
  silu(gate) and their product (4i). Without autocast the norm outputs are shared by the
  projections that read them: 6h + 3q + 2k + 4i elements of c bytes per layer. With autocast each of
  the five projections reading a norm output keeps its own cast copy: 4h x m + (5h + 3q + 2k + 4i) x c.
  With gradient checkpointing only each layer's input (h x m) is kept, plus one layer's full set
  while it is recomputed in backward;
- logits: `train.logprob_chunk_tokens` response tokens at once x vocab x (c + 4 for the float32
  log-softmax); with 0 (one forward per micro-batch) every position's logits in c bytes, prompt
  included, as a full forward returns them, and the response positions' float32 copy; x 2 in the
  update (their gradients exist at once in backward);
- generation: KV cache layers x kv_heads x head_dim x (prompt + max_new_tokens) x batch x (key bytes
  + value bytes), for rollouts (B x G sequences) and evaluation (eval.batch_size), plus the last
  step's logits (batch x vocab x (c + 2 x 4): logits, float32 scores and probabilities). Values are
  in the compute dtype; keys too, except under autocast in architectures (Llama, Qwen2; not OLMo2)
  whose rotary embedding multiplies them by cos/sin of the float32 residual stream, which type
  promotion (not autocast) turns into float32: probed per architecture on a one-layer copy;
- runtime: the CUDA context (~0.5 GiB) on GPU; on CPU the measured resident memory of an idle
  process that has imported what a run imports (torch, transformers, rftlab, math-verify, matplotlib),
  and with LoRA the measured cost of importing peft.

Peak = the largest phase, not the sum: rollout (persistent state + autocast copy + KV cache),
update (persistent + autocast copy + gradients + activations + logits), optimizer step (persistent +
gradients + step temporaries) and evaluation (like rollout, at eval.batch_size). Persistent state =
weights + optimizer states + reference + runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rftlab.errors import RftlabError

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
# Measured on the 2-core CPU machine (torch 2.13.0, transformers 5.x): peak RSS of a process that
# imported torch, transformers, rftlab.trainer, math-verify and matplotlib and loaded GSM8K, no model:
# 333-350 MiB (`python benchmarks/plan_vs_measured.py --baseline-only`).
CPU_RUNTIME_BYTES = 340 * 1024**2
# What importing peft (LoRA) adds to that on CPU: 101-110 MiB measured (same script); not GPU memory.
CPU_PEFT_IMPORT_BYTES = 110 * 1024**2
ARCH_DIR = Path(__file__).parent / "builtin" / "arch"


# ----------------------------------------------------------------------------- model facts


@dataclass(frozen=True)
class ModelFacts:
    """The shape facts the plan needs, read from a model config (no weights)."""

    name: str
    source: str  # where the architecture came from
    params_total: int  # exact, tied weights counted once
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    max_positions: int
    # (module name, in_features, out_features) of every nn.Linear except the output head
    linears: tuple[tuple[str, int, int], ...] = field(default=(), repr=False)
    linear_params: int = 0  # weights and biases of every nn.Linear, head included: what autocast casts
    largest_linear: int = 0  # elements of the largest nn.Linear weight (usually the head)
    largest_param: int = 0  # elements of the largest parameter tensor (usually the embedding)
    autocast_float32_keys: bool = True  # under autocast the KV cache keeps keys in float32 (probed)


def lora_params(linears, rank: int, targets: list[str] | tuple[str, ...] = ()) -> int:
    """Trainable LoRA parameters: r x (in + out) per adapted linear layer (peft's A: r x in, B: out x r).

    `targets` follows peft's matching: a module is adapted when its name equals a target or ends with
    "." + target; [] = every linear layer but the output head (peft's "all-linear").
    """
    if rank <= 0:
        return 0
    total = 0
    for name, d_in, d_out in linears:
        if not targets or any(name == t or name.endswith("." + t) for t in targets):
            total += rank * (d_in + d_out)
    return total


def facts_from_config(config, name: str, source: str) -> ModelFacts:
    """Instantiate the architecture on the meta device (no storage) and count what the plan needs."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    all_linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    linears = tuple((n, m.in_features, m.out_features) for n, m in all_linears if m is not head)
    cast = {id(p): p.numel() for _, m in all_linears for p in m.parameters()}  # a tied head once
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return ModelFacts(
        name=name,
        source=source,
        params_total=sum(p.numel() for p in model.parameters()),
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        intermediate=getattr(text, "intermediate_size", None) or 4 * text.hidden_size,
        vocab=text.vocab_size,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        max_positions=getattr(text, "max_position_embeddings", 0) or 0,
        linears=linears,
        linear_params=sum(cast.values()),
        largest_linear=max((m.weight.numel() for _, m in all_linears), default=0),
        largest_param=max((p.numel() for p in model.parameters()), default=0),
        autocast_float32_keys=_autocast_float32_keys(config),
    )


def _autocast_float32_keys(config) -> bool:
    """Whether this architecture's KV cache holds float32 keys under bf16 autocast over float32 weights.

    Llama and Qwen2 multiply the keys by rotary cos/sin taken in the float32 residual stream's dtype, and
    type promotion (not autocast) makes them float32; OLMo2 casts them back to the projection's dtype.
    Probed on a one-layer, hidden-32 copy of the architecture on CPU (milliseconds); when the copy cannot
    be built, float32 keys are assumed (the larger cache).
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    small = copy.deepcopy(config)
    text = small.get_text_config() if hasattr(small, "get_text_config") else small
    shrunk = dict(
        num_hidden_layers=1,
        hidden_size=32,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        vocab_size=64,
        pad_token_id=None,
    )
    if getattr(text, "head_dim", None):
        shrunk["head_dim"] = 16
    if getattr(text, "layer_types", None):
        shrunk["layer_types"] = list(text.layer_types[:1])
    try:
        for key, value in shrunk.items():
            setattr(text, key, value)
        with torch.random.fork_rng(devices=[]):
            model = AutoModelForCausalLM.from_config(small, dtype=torch.float32).eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(input_ids=torch.ones(1, 2, dtype=torch.long), use_cache=True)
        cache = out["cache"] if "cache" in out else out["past_key_values"]  # renamed in transformers 5
        return cache.layers[0].keys.dtype == torch.float32
    except Exception:  # noqa: BLE001 - an architecture the shrinking does not fit: assume the larger cache
        return True


def shipped_arch(name: str) -> Path | None:
    """The shipped architecture config for a hub id (matched on its last part, case-insensitive)."""
    path = ARCH_DIR / f"{name.rsplit('/', 1)[-1].lower()}.json"
    return path if path.is_file() else None


def load_model_facts(name: str) -> ModelFacts:
    """Facts for a built-in, a local directory or a hub id; offline, from the shipped arch configs.

    Order: a local config.json (built-ins, the converted smollm2 cache, directories), the local
    Hugging Face cache, the architecture configs shipped in rftlab/builtin/arch/, then the hub.
    """
    from transformers import AutoConfig

    from rftlab.policy import BUILTIN_DIR, LOCAL_BUILTINS, SMOLLM2_NAME, cache_dir

    local = None
    if name in LOCAL_BUILTINS:
        local = BUILTIN_DIR / name
    elif name == SMOLLM2_NAME:
        cached = cache_dir() / "models" / SMOLLM2_NAME
        local = cached if (cached / "config.json").is_file() else None
        if local is None:
            return _facts_from_json(ARCH_DIR / "smollm2-135m.json", name)
    elif Path(name).expanduser().exists():
        local = Path(name).expanduser()
    if local is not None:
        if not (local / "config.json").is_file():
            raise RftlabError(f"model directory {local} has no config.json")
        return facts_from_config(AutoConfig.from_pretrained(local), name, str(local / "config.json"))
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True)
        return facts_from_config(config, name, "local Hugging Face cache")
    except (OSError, ValueError):
        pass
    shipped = shipped_arch(name)
    if shipped is not None:
        return _facts_from_json(shipped, name)
    try:
        return facts_from_config(_hub_config(name), name, "hub")
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        shipped_names = ", ".join(sorted(p.stem for p in ARCH_DIR.glob("*.json")))
        raise RftlabError(
            f"model.name={name!r}: no config.json reachable ({first}); shipped architectures: {shipped_names}"
        ) from None


def _hub_config(name: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name)


def _facts_from_json(path: Path, name: str) -> ModelFacts:
    from transformers import AutoConfig

    data = json.loads(path.read_text())
    data.pop("_name_or_path", None)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    return facts_from_config(config, name, f"shipped rftlab/builtin/arch/{path.name}")


# ----------------------------------------------------------------------------- pure estimates


@dataclass(frozen=True)
class PlanInputs:
    """Everything besides the model that the memory estimate depends on (read from a Config)."""

    compute_dtype: str = "float32"
    master_dtype: str = "float32"
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"
    momentum: float = 0.9
    kl: bool = False
    prompt_tokens: int = 128  # longest training prompt
    eval_prompt_tokens: int = 128  # longest prompt of an evaluation batch
    max_new_tokens: int = 160
    rollout_seqs: int = 1  # B x G
    micro_batch_seqs: int = 1  # train.micro_batch_size or B x G
    micro_batch_prompts: int = 0  # distinct prompts run per micro-batch (train.shared_prompt); 0 = one per row
    logprob_chunk_tokens: int = 0
    eval_seqs: int = 64
    updates_per_batch: int = 1
    device: str = "cpu"


def param_counts(facts: ModelFacts, inputs: PlanInputs) -> tuple[int, int]:
    """(total, trainable): full fine-tuning trains everything; LoRA adds and trains only the adapters."""
    adapters = lora_params(facts.linears, inputs.lora_rank, inputs.lora_targets)
    if inputs.lora_rank > 0:
        return facts.params_total + adapters, adapters
    return facts.params_total, facts.params_total


def largest_trainable_tensor(facts: ModelFacts, inputs: PlanInputs) -> int:
    """Elements of the largest trained tensor: a model parameter, or a LoRA matrix (r x in or out x r)."""
    if inputs.lora_rank <= 0:
        return facts.largest_param
    targets = inputs.lora_targets
    dims = [
        max(d_in, d_out)
        for name, d_in, d_out in facts.linears
        if not targets or any(name == t or name.endswith("." + t) for t in targets)
    ]
    return inputs.lora_rank * max(dims, default=0)


def activation_bytes_per_token(facts: ModelFacts, inputs: PlanInputs) -> int:
    """Bytes kept for backward per token of the micro-batch, all layers (formula in the module docstring)."""
    c, m = DTYPE_BYTES[inputs.compute_dtype], DTYPE_BYTES[inputs.master_dtype]
    h, i = facts.hidden, facts.intermediate
    q, k = facts.heads * facts.head_dim, facts.kv_heads * facts.head_dim
    if inputs.compute_dtype == inputs.master_dtype:
        layer = (6 * h + 3 * q + 2 * k + 4 * i) * c
        final_norm = 3 * h * c
    else:
        layer = 4 * h * m + (5 * h + 3 * q + 2 * k + 4 * i) * c
        final_norm = 2 * h * m + h * c
    if inputs.gradient_checkpointing:
        return facts.layers * h * m + layer + final_norm
    return facts.layers * layer + final_norm


def kv_cache_bytes(
    facts: ModelFacts, seq_len: int, batch: int, compute_bytes: int, key_bytes: int | None = None
) -> int:
    """layers x kv_heads x head_dim x sequence length x batch x (key bytes + value bytes).

    Values are in the compute dtype; `key_bytes` (default: the compute dtype's) differs under autocast,
    where the rotary embedding promotes the keys to the float32 residual stream's dtype.
    """
    key_bytes = compute_bytes if key_bytes is None else key_bytes
    return facts.layers * facts.kv_heads * facts.head_dim * seq_len * batch * (key_bytes + compute_bytes)


def autocast_bytes(facts: ModelFacts, inputs: PlanInputs, adapters: int) -> tuple[int, int]:
    """(during generation, during the update): compute-dtype copies of Linear weights that autocast holds.

    Full fine-tune: every Linear's cached copy, in both. LoRA: generation casts the frozen base op by op
    (one matrix alive, the largest) and caches the adapters; the update saves every op's copy for
    backward, or with gradient checkpointing only the head's and one layer's (recomputed in backward).
    """
    if inputs.compute_dtype == inputs.master_dtype:
        return 0, 0
    c = DTYPE_BYTES[inputs.compute_dtype]
    if inputs.lora_rank == 0:
        return facts.linear_params * c, facts.linear_params * c
    generation = (facts.largest_linear + adapters) * c
    if not inputs.gradient_checkpointing:
        return generation, (facts.linear_params + adapters) * c
    head = facts.vocab * facts.hidden
    one_layer = (facts.linear_params - head) // max(facts.layers, 1)
    return generation, (head + one_layer + adapters) * c


def logits_bytes(tokens: int, vocab: int, compute_bytes: int, *, for_backward: bool, float32_tokens=None) -> int:
    """Full-vocabulary logits in the compute dtype plus their float32 log-softmax; x2 with gradients.

    `float32_tokens` (default `tokens`): positions whose float32 copy exists; a whole-sequence forward
    returns compute-dtype logits for every position, prompt included, but only the response positions
    go through the float32 log-softmax.
    """
    float32_tokens = tokens if float32_tokens is None else float32_tokens
    return (tokens * compute_bytes + float32_tokens * 4) * vocab * (2 if for_backward else 1)


@dataclass(frozen=True)
class MemoryPlan:
    params_total: int
    params_trainable: int
    components: dict[str, int]  # name -> bytes
    phases: dict[str, int]  # rollout / update / eval -> bytes at that phase's peak
    tokens_per_round: dict[str, int]

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.get)

    @property
    def peak_bytes(self) -> int:
        return self.phases[self.peak_phase]


def memory_plan(facts: ModelFacts, inputs: PlanInputs) -> MemoryPlan:
    """Memory per component and per phase; peak = the largest phase (see the module docstring)."""
    c, m = DTYPE_BYTES[inputs.compute_dtype], DTYPE_BYTES[inputs.master_dtype]
    total, trainable = param_counts(facts, inputs)
    autocast = inputs.compute_dtype != inputs.master_dtype
    key_bytes = m if autocast and facts.autocast_float32_keys else c  # rotary may promote keys (docstring)
    seq = inputs.prompt_tokens + inputs.max_new_tokens
    n_states = 2 if inputs.optimizer == "adamw" else (1 if inputs.momentum > 0 else 0)
    # the update's forward: each row's prompt, or each distinct prompt once (train.shared_prompt: its
    # responses packed on its cache, at most one response budget per row)
    micro_tokens = (inputs.micro_batch_prompts or inputs.micro_batch_seqs) * inputs.prompt_tokens
    micro_tokens += inputs.micro_batch_seqs * inputs.max_new_tokens
    response_tokens = inputs.micro_batch_seqs * inputs.max_new_tokens
    if inputs.logprob_chunk_tokens:  # chunks of response positions, from the hidden states
        chunk = min(inputs.logprob_chunk_tokens, response_tokens)
        logits = logits_bytes(chunk, facts.vocab, c, for_backward=True)
    else:  # one forward: every position's logits, the response positions' float32 log-softmax
        logits = logits_bytes(micro_tokens, facts.vocab, c, for_backward=True, float32_tokens=response_tokens)
    cast_generation, cast_update = autocast_bytes(facts, inputs, trainable if inputs.lora_rank else 0)
    cuda = inputs.device.startswith("cuda")
    # foreach AdamW (CUDA) allocates sqrt(v) for all trainable tensors; the CPU loop two of one tensor
    step_temporaries = trainable * m if cuda else 2 * largest_trainable_tensor(facts, inputs) * m
    components = {
        "weights": total * m,
        "autocast copy": cast_generation,
        "autocast update": cast_update,
        "gradients": trainable * m,
        "optimizer": n_states * trainable * m,
        "step temporaries": step_temporaries if n_states else 0,
        "reference": facts.params_total * c if inputs.kl and inputs.lora_rank == 0 else 0,
        "activations": activation_bytes_per_token(facts, inputs) * micro_tokens,
        "logits": logits,
        "kv cache rollout": kv_cache_bytes(facts, seq, inputs.rollout_seqs, c, key_bytes)
        + inputs.rollout_seqs * facts.vocab * (c + 8),
        "kv cache eval": kv_cache_bytes(
            facts, inputs.eval_prompt_tokens + inputs.max_new_tokens, inputs.eval_seqs, c, key_bytes
        )
        + inputs.eval_seqs * facts.vocab * (c + 8),
        "runtime": CUDA_CONTEXT_BYTES
        if cuda
        else CPU_RUNTIME_BYTES + (CPU_PEFT_IMPORT_BYTES if inputs.lora_rank else 0),
    }
    persistent = sum(components[k] for k in ("weights", "optimizer", "reference", "runtime"))
    phases = {
        "rollout": persistent + components["autocast copy"] + components["kv cache rollout"],
        "update": persistent + sum(components[k] for k in ("autocast update", "gradients", "activations", "logits")),
        "step": persistent + components["gradients"] + components["step temporaries"],
        "eval": persistent + components["autocast copy"] + components["kv cache eval"],
    }
    forwards = inputs.updates_per_batch + (1 if inputs.kl else 0)
    tokens = {
        "prompt": inputs.rollout_seqs * inputs.prompt_tokens,
        "generated (at most)": inputs.rollout_seqs * inputs.max_new_tokens,
        "update forward": inputs.rollout_seqs * seq * forwards,
    }
    return MemoryPlan(total, trainable, components, phases, tokens)


# ----------------------------------------------------------------------------- from a config


def shared_prompts_per_micro_batch(cfg, micro: int) -> int:
    """Distinct prompts a micro-batch of `micro` rows runs with train.shared_prompt (0: it runs one per row).

    Rows come in groups of G per prompt; a micro-batch not aligned to them can hold one more prompt.
    Off (0) without sharing: shared_prompt off, G = 1, or gradient checkpointing (no KV cache in training).
    """
    g = cfg.rollout.rollouts_per_round
    if not cfg.train.shared_prompt or g < 2 or cfg.model.gradient_checkpointing:
        return 0
    return min(micro, -(-micro // g) + (1 if micro % g else 0))


def inputs_from_config(cfg, *, device: str, prompt_tokens: int, eval_prompt_tokens: int | None = None) -> PlanInputs:
    """PlanInputs of a validated Config on `device` (cpu or cuda)."""
    n_seq = cfg.rollouts_per_round_total
    e = cfg.eval
    eval_rows = max(
        cfg.data.train_examples * e.train_samples,
        cfg.data.test_size * (e.test_samples if e.test_mode == "sample" else 1),
        cfg.data.difficulty_pool * cfg.data.difficulty_samples if cfg.data.difficulty != "any" else 0,
    )
    return PlanInputs(
        compute_dtype=cfg.model.dtype,
        master_dtype=cfg.model.master_dtype,
        lora_rank=cfg.model.lora_rank,
        lora_targets=tuple(cfg.model.lora_target_modules),
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        optimizer=cfg.optim.optimizer,
        momentum=cfg.optim.beta1,
        kl=cfg.objective.kl_coef > 0,
        prompt_tokens=prompt_tokens,
        eval_prompt_tokens=prompt_tokens if eval_prompt_tokens is None else eval_prompt_tokens,
        max_new_tokens=cfg.rollout.max_new_tokens,
        rollout_seqs=n_seq,
        micro_batch_seqs=min(cfg.train.micro_batch_size or n_seq, n_seq),
        micro_batch_prompts=shared_prompts_per_micro_batch(cfg, min(cfg.train.micro_batch_size or n_seq, n_seq)),
        logprob_chunk_tokens=cfg.train.logprob_chunk_tokens,
        eval_seqs=min(e.batch_size, eval_rows),
        updates_per_batch=cfg.objective.updates_per_batch,
        device=device,
    )


def longest_prompt_tokens(cfg, model_name: str) -> tuple[int, int, str]:
    """(training tokens, evaluation tokens, how): the longest prompt a round and an evaluation can see.

    Training: the explicit `data.train_example_ids`, else every candidate of the pool (any of them may
    be selected). Evaluation: the test subset and the pool (the difficulty estimate). With a local
    tokenizer (built-ins, directories, the HF cache) the prompts go through the chat template;
    otherwise characters / 3 + 64 template tokens (English BPE averages about 4 characters a token
    on GSM8K/MATH text; 3 leaves room).
    """
    from rftlab.policy import Policy, resolve_model_path
    from rftlab.selection import candidate_pool
    from rftlab.trainer import load_task

    if cfg.data.mix.tasks:  # data.mix: every trained task's candidate pool, every evaluated task's test set
        from rftlab.multitask import load_mix

        mix = load_mix(cfg)
        pool = [
            p
            for t in mix.tasks
            for p in candidate_pool(mix.train[t], cfg.data.difficulty_pool, cfg.data.selection_seed)
        ]
        train, test_set = pool, [p for t in mix.evaluated for p in mix.test[t]]
    else:
        train_split, test_set = load_task(cfg)
        pool = candidate_pool(train_split, cfg.data.difficulty_pool, cfg.data.selection_seed)
        train = pool
    if cfg.data.train_example_ids:
        wanted = set(cfg.data.train_example_ids)
        train = [p for p in train_split if p.id in wanted] or pool
    style = None if cfg.data.prompt_style == "auto" else cfg.data.prompt_style
    try:
        from transformers import AutoTokenizer

        path = model_name if _is_hub_id(model_name) else resolve_model_path(model_name)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception:  # noqa: BLE001 - no tokenizer reachable offline: estimate from characters
        tokenizer = None
    if tokenizer is None:

        def count(problems):
            return int(max(len(p.user_message(style)) for p in problems) / 3) + 64

        how = "estimated from characters, no tokenizer offline"
    else:
        policy = Policy(model_name, None, tokenizer, None, cfg.model.use_chat_template)

        def count(problems):
            return max(
                len(tokenizer(policy.prompt_text(p, style), add_special_tokens=False).input_ids) for p in problems
            )

        how = "tokenized"
    return count(train), count(test_set + pool), how


def _is_hub_id(name: str) -> bool:
    from rftlab.policy import LOCAL_BUILTINS, SMOLLM2_NAME

    return name not in (*LOCAL_BUILTINS, SMOLLM2_NAME) and not Path(name).expanduser().exists()


# ----------------------------------------------------------------------------- report


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def format_plan(
    facts: ModelFacts, inputs: PlanInputs, plan: MemoryPlan, *, memory_gib: float | None, prompt_how: str
) -> str:
    """The printed plan: parameters, memory per component, phases, tokens per round, fits or not."""
    i = inputs
    lora = f"LoRA r={i.lora_rank} on {', '.join(i.lora_targets) or 'all linear'}" if i.lora_rank else "full fine-tune"
    lines = [
        f"plan: {facts.name} on {i.device} ({facts.source})",
        f"  architecture  {facts.layers} layers, hidden {facts.hidden}, heads {facts.heads} (kv {facts.kv_heads}, "
        f"dim {facts.head_dim}), intermediate {facts.intermediate}, vocab {facts.vocab}, "
        f"{'tied' if facts.tied_embeddings else 'untied'} embeddings",
        f"  parameters    {plan.params_total:,} total, {plan.params_trainable:,} trainable ({lora})",
        f"  precision     compute {i.compute_dtype}, master weights and optimizer {i.master_dtype}"
        + (", gradient checkpointing" if i.gradient_checkpointing else ""),
        f"  sequences     longest prompt {i.prompt_tokens} tokens in training, {i.eval_prompt_tokens} in evaluation "
        f"({prompt_how})",
        f"                + {i.max_new_tokens} new tokens; rollout batch {i.rollout_seqs}, micro-batch "
        f"{i.micro_batch_seqs}, eval batch {i.eval_seqs}, log-prob chunk {i.logprob_chunk_tokens or 'whole micro-batch'}",
        "  memory per component:",
    ]
    notes = {
        "weights": f"{plan.params_total:,} x {DTYPE_BYTES[i.master_dtype]} B ({i.master_dtype})",
        "autocast copy": (
            "Linear weights cached in " + i.compute_dtype + " during generation"
            if not i.lora_rank
            else "adapters cached, frozen base cast one matrix at a time"
        )
        if i.compute_dtype != i.master_dtype
        else "none: compute dtype = master dtype",
        "autocast update": (
            "Linear weights in "
            + i.compute_dtype
            + " kept for backward"
            + (" (head and one layer: checkpointing)" if i.lora_rank and i.gradient_checkpointing else "")
        )
        if i.compute_dtype != i.master_dtype
        else "none: compute dtype = master dtype",
        "gradients": f"trainable x {DTYPE_BYTES[i.master_dtype]} B",
        "optimizer": f"{i.optimizer} states, {i.master_dtype}",
        "step temporaries": "foreach sqrt(v), every trainable tensor"
        if i.device.startswith("cuda")
        else "per-tensor loop, two copies of the largest tensor",
        "reference": "KL reference in the compute dtype"
        if i.kl and not i.lora_rank
        else ("adapter disabled, no copy" if i.kl else "no KL"),
        "activations": (
            f"{i.micro_batch_prompts} prompt(s) x {i.prompt_tokens} + {i.micro_batch_seqs} x {i.max_new_tokens} "
            "tokens kept for backward (prompts shared)"
            if i.micro_batch_prompts
            else f"{i.micro_batch_seqs} x {i.prompt_tokens + i.max_new_tokens} tokens kept for backward"
        ),
        "logits": f"{i.logprob_chunk_tokens} tokens x vocab x (compute + float32), with gradients"
        if i.logprob_chunk_tokens
        else "all positions x vocab x compute + response x vocab x float32, with gradients",
        "kv cache rollout": f"{i.rollout_seqs} sequence(s) + last-step logits"
        + (
            f"; keys {i.master_dtype} (rotary)"
            if i.compute_dtype != i.master_dtype and facts.autocast_float32_keys
            else ""
        ),
        "kv cache eval": f"{i.eval_seqs} sequence(s) + last-step logits",
        "runtime": "CUDA context"
        if i.device.startswith("cuda")
        else "idle python + torch + transformers" + (" + peft" if i.lora_rank else ""),
    }
    for key, value in plan.components.items():
        lines.append(f"    {key:<17} {gib(value):>11}   {notes[key]}")
    lines.append("  peak by phase (persistent state + that phase's working memory):")
    for phase, value in plan.phases.items():
        mark = "  <- peak" if phase == plan.peak_phase else ""
        lines.append(f"    {phase:<17} {gib(value):>11}{mark}")
    t = plan.tokens_per_round
    lines.append(
        f"  tokens/round  {t['prompt']:,} prompt, <= {t['generated (at most)']:,} generated, "
        f"<= {t['update forward']:,} through forward passes in the update"
    )
    if memory_gib is not None:
        fits = plan.peak_bytes <= memory_gib * GIB
        lines.append(
            f"  fits in {memory_gib:g} GiB: {'yes' if fits else 'NO'} (peak {gib(plan.peak_bytes)}, {plan.peak_phase})"
        )
    return "\n".join(lines)


def plan_for_config(
    cfg, *, device: str | None = None, memory_gib: float | None = None, prompt_tokens: int | None = None
) -> tuple[str, MemoryPlan]:
    """(printed plan, MemoryPlan) of a validated Config: what `rftlab plan` prints."""
    device = device or _default_device(cfg.model.device)
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise RftlabError(f"--device {device!r}: use cpu or cuda")
    facts = load_model_facts(cfg.model.name)
    if prompt_tokens is None:
        prompt_tokens, eval_prompt_tokens, how = longest_prompt_tokens(cfg, cfg.model.name)
    else:
        eval_prompt_tokens, how = prompt_tokens, "given"
    inputs = inputs_from_config(cfg, device=device, prompt_tokens=prompt_tokens, eval_prompt_tokens=eval_prompt_tokens)
    plan = memory_plan(facts, inputs)
    if memory_gib is None and device.startswith("cuda"):
        memory_gib = _cuda_memory_gib()
    return format_plan(facts, inputs, plan, memory_gib=memory_gib, prompt_how=how), plan


def _default_device(configured: str) -> str:
    if configured != "auto":
        return "cuda" if configured.startswith("cuda") else configured
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cuda_memory_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / GIB
