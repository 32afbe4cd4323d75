"""Share of weight entries a run moved: its checkpoint against the base model it started from.

    .venv/bin/python scripts/moved_weights.py RUN_DIR [RUN_DIR ...]

Full fine-tune: compares every checkpointed tensor with the base model's. LoRA: the checkpoint holds
only the adapter, so it reports the adapter's size, and the base weights (re-loaded with the adapter
applied) are compared with the plain base model to show that they did not change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from rftlab.config import config_from_dict
from rftlab.policy import load_policy, load_policy_for
from rftlab.runs import RunDir


def moved(run_dir: str) -> str:
    cfg = config_from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))
    saved = RunDir(run_dir).load_checkpoint()["model"]
    size = (Path(run_dir) / "checkpoint" / "trainer.pt").stat().st_size
    m = cfg.model.master_dtype  # compare like with like: the base as the run stored it at the start
    base = load_policy(cfg.model.name, dtype=m, master_dtype=m, device="cpu").model.state_dict()
    if cfg.model.lora_rank:
        policy = load_policy_for(cfg.model)
        policy.load_trainable_state_dict(saved)
        changed = sum(not torch.equal(base[n], p) for n, p in policy.base_named_parameters())
        return (
            f"{run_dir}: LoRA checkpoint {len(saved)} tensors, all adapter: {all('lora_' in k for k in saved)}, "
            f"{sum(v.numel() for v in saved.values()):,} entries ({size / 1e6:.2f} MB with optimizer state) "
            f"vs {sum(v.numel() for v in base.values()):,} base entries; base tensors changed: {changed}"
        )
    total = sum(v.numel() for v in base.values())
    n_moved = sum(int((saved[k].float() != v.float()).sum()) for k, v in base.items())
    return f"{run_dir}: {n_moved:,} of {total:,} entries moved ({100 * n_moved / total:.4f}%), checkpoint {size / 1e6:.2f} MB"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(moved(path))
