"""Killing a real run in-process, and comparing it with an uninterrupted one.

`train_killed_in_update(cfg, out)` runs `trainer.train` with its 4th `policy_update` raising
KeyboardInterrupt: killed mid-round 4, after round 3 was logged (with checkpoints every 2 rounds, the
newest is round 2's). `trainer.policy_update` is restored before it returns, so a resume that follows
runs the real update. `deterministic(rows)` drops the wall-clock fields, the only thing allowed to
differ between a killed-and-resumed run and an uninterrupted one.
"""

from __future__ import annotations

import pytest

from rftlab import trainer


def deterministic(rows):
    """Metric rows without wall-clock fields (the only thing allowed to differ between runs)."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def train_killed_in_update(cfg, out, update: int = 4) -> None:
    """`trainer.train(cfg, out)` killed by a KeyboardInterrupt from its `update`-th policy update."""
    real, calls = trainer.policy_update, {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == update:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "policy_update", dies)
        with pytest.raises(KeyboardInterrupt):
            trainer.train(cfg, out)
