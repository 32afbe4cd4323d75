"""Export a run's final weights as a Hugging Face model directory (`rftlab export RUN_DIR OUT_DIR`).

The result loads with `AutoModelForCausalLM.from_pretrained(OUT_DIR)` and `AutoTokenizer` (chat
template included) anywhere, without rftlab. A LoRA run's adapter is merged into the base weights
(peft's merge_and_unload), so the export is a plain model of the base architecture. Weights are
written in the run's master dtype (float32 by default) unless `dtype` says otherwise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import yaml

from rftlab.config import config_from_dict
from rftlab.errors import RftlabError
from rftlab.policy import load_policy_for
from rftlab.runs import RunDir


def export_run(run_dir: str | Path, out_dir: str | Path, *, dtype: str | None = None) -> Path:
    """Write the checkpointed policy of `run_dir` to `out_dir` with `save_pretrained` (model + tokenizer)."""
    run, out = RunDir(run_dir), Path(out_dir)
    config_file = run.path / "config.yaml"
    if not config_file.is_file():
        raise RftlabError(f"{run.path} is not a run directory (no config.yaml)")
    if out.exists() and any(out.iterdir()):
        raise RftlabError(f"export target {out} exists and is not empty; choose another OUT_DIR")
    checkpoint = run.load_checkpoint()
    if checkpoint is None:
        raise RftlabError(f"{run.path} has no checkpoint to export (the run saved none yet)")
    cfg = config_from_dict(yaml.safe_load(config_file.read_text()))
    model_cfg = dataclasses.replace(cfg.model, device="cpu", gradient_checkpointing=False)
    policy = load_policy_for(model_cfg)
    policy.load_trainable_state_dict(checkpoint["model"])
    model = policy.model.merge_and_unload() if policy.is_lora else policy.model
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    return out
