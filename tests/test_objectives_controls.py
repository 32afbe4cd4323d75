"""Control reward designs (`format`, `random`): golden numbers, and the trainer's seeded draws.

Expected rewards are worked out by hand from the inputs; the rate tolerance comes from the binomial
standard deviation, not from a run.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from rftlab.config import load_config
from rftlab.errors import ConfigError
from rftlab.objectives import CONTROL_REWARDS, REWARD_DESIGNS, get_control_reward, reward_design_names
from rftlab.tasks.problem import Problem
from rftlab.trainer import RunState, control_rewards, random_reward_rates


def _problem(pid: str, answer: str = "5") -> Problem:
    return Problem(id=pid, question="2 + 3?", answer=answer, source="hand", prompt_style="gsm8k")


def _state(ids: list[str], base: dict | None = None, estimates: dict | None = None) -> RunState:
    return RunState(
        ids,
        estimates if estimates is not None else dict.fromkeys(ids),
        torch.zeros(len(ids)),
        torch.zeros(len(ids)),
        base=base,
    )


def _cfg(design: str, *extra: str, G: int = 3, B: int = 1, examples: int = 1):
    return load_config(
        None,
        [
            f"objective.reward_design={design}",
            f"rollout.rollouts_per_round={G}",
            f"train.examples_per_round={B}",
            f"data.train_examples={examples}",
            *extra,
        ],
    )


TASK = SimpleNamespace(answer_format="gsm8k_strict")


def test_every_control_reward_has_a_golden_case():
    assert set(CONTROL_REWARDS) == {"format", "random"}
    assert set(reward_design_names()) == set(REWARD_DESIGNS) | set(CONTROL_REWARDS)
    assert not set(REWARD_DESIGNS) & set(CONTROL_REWARDS)  # the bandit lab reads REWARD_DESIGNS only


def test_format_reward_golden():
    formatted = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    uniforms = torch.tensor([[0.0, 0.0, 0.99], [0.0, 0.5, 0.99]])
    out = get_control_reward("format")(formatted, uniforms=uniforms, rate=torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(out, formatted)  # the value, not the draws or the rate
    assert out.dtype == torch.float32


def test_random_reward_golden():
    # q = 0.5 for prompt 0: u < 0.5 -> 1; q = 0.25 for prompt 1: only u = 0.1 is below it
    uniforms = torch.tensor([[0.1, 0.5, 0.9], [0.1, 0.3, 0.2499]])
    rate = torch.tensor([0.5, 0.25])
    expected = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    fn = get_control_reward("random")
    for formatted in (torch.zeros(2, 3), torch.ones(2, 3)):  # independent of the response
        torch.testing.assert_close(fn(formatted, uniforms=uniforms, rate=rate), expected)
    # q = 0 never rewards, q = 1 always does
    assert fn(torch.zeros(1, 3), uniforms=uniforms[:1], rate=torch.tensor([0.0])).sum() == 0
    assert fn(torch.zeros(1, 3), uniforms=uniforms[:1], rate=torch.tensor([1.0])).sum() == 3


def test_unknown_control_reward_lists_the_names():
    with pytest.raises(ConfigError, match="format, random"):
        get_control_reward("nope")


def test_config_takes_the_controls_and_checks_the_rate():
    cfg = load_config(None, ["objective.reward_design=random", "objective.random_reward_rate=0.25"])
    assert (cfg.objective.reward_design, cfg.objective.random_reward_rate) == ("random", 0.25)
    assert load_config(None, ["objective.reward_design=format"]).objective.random_reward_rate is None
    with pytest.raises(ConfigError, match=r"objective.random_reward_rate=1.5 is out of range"):
        load_config(None, ["objective.random_reward_rate=1.5"])


# ----------------------------------------------------------------------------- in the trainer

RESPONSES = [
    "3 + 2 = 5\n#### 5",  # well formed, right
    "so it is 7\n#### 7",  # well formed, wrong: the format reward still pays
    "The answer is 5",  # right value, but no `####` line: not well formed under gsm8k_strict
    "####",  # a marker with no number
    "\x00\ufffd}{\\boxed{",  # garbage
    "",
]


def test_format_reward_in_the_trainer_reads_the_answer_line_not_its_value():
    cfg = _cfg("format", G=len(RESPONSES))
    batch = SimpleNamespace(texts=RESPONSES, prompt_index=[0] * len(RESPONSES))
    state = _state(["p"])
    rewards = control_rewards(cfg, state, TASK, [_problem("p")], batch, round_=3)
    torch.testing.assert_close(rewards, torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]))


def test_random_reward_is_seeded_by_seed_and_round_and_leaves_the_global_stream_alone():
    cfg = _cfg("random", "objective.random_reward_rate=0.5", G=64)
    state = _state(["p"])
    right = SimpleNamespace(texts=["#### 5"] * 64, prompt_index=[0] * 64)
    garbage = SimpleNamespace(texts=["\x00"] * 64, prompt_index=[0] * 64)
    before = torch.get_rng_state()
    a = control_rewards(cfg, state, TASK, [_problem("p")], right, round_=7)
    assert torch.equal(torch.get_rng_state(), before)  # the binary reward's stream is untouched
    b = control_rewards(cfg, state, TASK, [_problem("p")], garbage, round_=7)
    torch.testing.assert_close(a, b)  # the same draws whatever the responses (and on a resume)
    c = control_rewards(cfg, state, TASK, [_problem("p")], right, round_=8)
    d = control_rewards(_cfg("random", "objective.random_reward_rate=0.5", "seed=1", G=64), state, TASK,
                        [_problem("p")], right, round_=7)  # fmt: skip
    assert not torch.equal(a, c) and not torch.equal(a, d)  # another round or seed draws anew


def test_random_reward_rate_matches_q_over_many_draws():
    q, G, rounds = 0.3, 500, 40  # 20,000 draws: binomial sd of the rate sqrt(q(1-q)/N) = 0.0032
    cfg = _cfg("random", f"objective.random_reward_rate={q}", G=G)
    batch = SimpleNamespace(texts=["#### 5"] * G, prompt_index=[0] * G)
    state = _state(["p"])
    draws = torch.cat([control_rewards(cfg, state, TASK, [_problem("p")], batch, r) for r in range(rounds)])
    sd = math.sqrt(q * (1 - q) / draws.numel())
    assert abs(float(draws.mean()) - q) < 4 * sd  # 4 sd: a false failure about once in 16,000 runs
    assert set(draws.unique().tolist()) <= {0.0, 1.0}


def test_random_reward_rate_defaults_to_the_examples_base_pass_at_1():
    examples = [_problem("a"), _problem("b")]
    cfg = _cfg("random", G=1, B=2, examples=2)
    # selection estimates per example when there are some; the round-0 train Pass@1 for the others
    state = _state(["a", "b"], base={"train/pass_at_1": 0.375}, estimates={"a": 0.25, "b": None})
    torch.testing.assert_close(random_reward_rates(cfg, state, examples), torch.tensor([0.25, 0.375]))
    cfg = _cfg("random", "objective.random_reward_rate=0.6", G=1, B=2, examples=2)
    torch.testing.assert_close(random_reward_rates(cfg, state, examples), torch.tensor([0.6, 0.6]))
