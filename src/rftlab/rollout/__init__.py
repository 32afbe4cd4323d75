"""Generation engines behind one interface: prompts in, a `RolloutBatch` of responses out."""

from rftlab.rollout.hf import RolloutBatch, generate

__all__ = ["RolloutBatch", "generate"]
