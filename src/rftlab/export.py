"""Export a run's final weights as a Hugging Face model directory (`rftlab export RUN_DIR OUT_DIR`).

The result loads with `AutoModelForCausalLM.from_pretrained(OUT_DIR)` and `AutoTokenizer` (chat
template included) anywhere, without rftlab. A LoRA run's adapter is merged into the base weights
(peft's merge_and_unload), so the export is a plain model of the base architecture. Weights are
written in the run's master dtype (float32 by default) unless `dtype` says otherwise.

`load_run_policy` is the one way to get a run's trained policy back (export and `rftlab sample`
use it): the run's config.yaml, its model loaded as the run loaded it (full or LoRA), and the
checkpoint's weights. Next to the weights the export writes `rftlab.json`: the prompt style and
answer format the run trained with, where it came from, and the provenance of the export, so
`rftlab sample OUT_DIR "question"` prompts (and by default samples) the exported model as the run did.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from rftlab import provenance
from rftlab.config import Config, config_from_dict
from rftlab.errors import RftlabError
from rftlab.policy import Policy, load_policy_for
from rftlab.runs import RunDir

EXPORT_INFO = "rftlab.json"  # beside an export's weights: prompt style, answer format, source run
CHECKPOINT_CHOICES = ("latest", "final")

log = logging.getLogger(__name__)


@dataclass
class RunPolicy:
    """A run's trained policy, its resolved config, and the round its checkpoint was written at."""

    policy: Policy
    config: Config
    round: int
    run_dir: Path


def read_run_config(run_dir: str | Path) -> Config:
    """The run's resolved config (config.yaml); one line when `run_dir` is not a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RftlabError(f"no such run directory: {run_dir}")
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise RftlabError(f"{run_dir} is not a run directory (no config.yaml)")
    return config_from_dict(yaml.safe_load(config_file.read_text()))


def load_run_policy(run_dir: str | Path, *, checkpoint: str = "latest", device: str | None = None) -> RunPolicy:
    """The run's policy with its checkpointed weights (`latest`: the newest intact checkpoint; `final`:
    only one written at the run's last round). `device` None: on the CPU (export); else a model.device."""
    if checkpoint not in CHECKPOINT_CHOICES:
        raise RftlabError(f"--checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)} (got {checkpoint!r})")
    cfg = read_run_config(run_dir)
    run = RunDir(run_dir)
    saved = run.load_checkpoint()
    if saved is None:
        raise RftlabError(f"{run.path} has no checkpoint (the run saved none yet, or a sweep deleted it when done)")
    round_ = int(saved["state"]["round"])
    if checkpoint == "final" and round_ != cfg.train.rounds:
        raise RftlabError(
            f"{run.path} has no final checkpoint: the newest is at round {round_} of {cfg.train.rounds} "
            f"(the run has not finished; --checkpoint latest uses it)"
        )
    model_cfg = dataclasses.replace(cfg.model, device=device or "cpu", gradient_checkpointing=False)
    policy = load_policy_for(model_cfg)
    policy.load_trainable_state_dict(saved["model"])
    policy.model.eval()
    return RunPolicy(policy, cfg, round_, run.path)


def run_prompt_format(cfg: Config) -> tuple[str, str]:
    """(prompt style, answer format) the run used for its problems, as `trainer.set_up` resolves them.

    With `data.prompt_style=auto` the style is the dataset's own: read from the first test problem
    (the same rule `set_up` follows). If the data cannot be read any more, the answer format decides.
    """
    from rftlab.tasks import load_options, load_problems

    style = cfg.data.prompt_style
    if style == "auto":
        try:
            path = cfg.data.test_path or cfg.data.dataset  # a user's own file: read with the run's options
            style = load_problems(path, cfg.data.test_split, limit=1, **load_options(cfg.data))[0].prompt_style
        except (RftlabError, OSError, IndexError) as err:
            style = "math" if cfg.data.answer_format == "boxed" else "gsm8k"
            log.warning(
                "rftlab: could not read data.dataset=%s (%s); prompt style %s assumed", cfg.data.dataset, err, style
            )
    return style, cfg.resolved_answer_format(style)


def export_run(
    run_dir: str | Path, out_dir: str | Path, *, dtype: str | None = None, checkpoint: str = "latest"
) -> Path:
    """Write the checkpointed policy of `run_dir` to `out_dir` with `save_pretrained` (model + tokenizer)."""
    out = Path(out_dir)
    read_run_config(run_dir)  # a run directory at all, before anything is loaded
    if out.exists() and any(out.iterdir()):
        raise RftlabError(f"export target {out} exists and is not empty; choose another OUT_DIR")
    loaded = load_run_policy(run_dir, checkpoint=checkpoint)
    policy = loaded.policy
    model = policy.model.merge_and_unload() if policy.is_lora else policy.model
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    style, answer_format = run_prompt_format(loaded.config)
    info = {
        "source_run": str(loaded.run_dir.resolve()),
        "checkpoint_round": loaded.round,
        "rounds": loaded.config.train.rounds,
        "base_model": loaded.config.model.name,
        "dataset": loaded.config.data.dataset,
        "prompt_style": style,
        "answer_format": answer_format,
        "use_chat_template": loaded.config.model.use_chat_template,
        "temperature": loaded.config.rollout.temperature,  # the run's sampling: rftlab sample's defaults
        "top_p": loaded.config.rollout.top_p,
        "max_new_tokens": loaded.config.rollout.max_new_tokens,
        "dtype": dtype or loaded.config.model.master_dtype,
        "provenance": provenance.collect(),
    }
    (out / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return out
