"""Config: defaults valid, YAML + dotted overrides, clear errors naming key and range."""

import pytest

from rftlab.config import (
    Config,
    ConfigError,
    apply_overrides,
    builtin_config_names,
    config_from_dict,
    describe_fields,
    load_config,
    parse_override,
)


def test_defaults_are_valid_and_minimalist():
    cfg = config_from_dict({})
    assert cfg == Config()
    assert cfg.rollout.rollouts_per_round == 1
    assert cfg.objective.advantage == "none"
    assert cfg.objective.reward_design == "binary"
    assert cfg.data.train_examples == 1
    assert cfg.objective.updates_per_batch == 1


def test_builtin_tiny_loads_with_overrides():
    assert "tiny" in builtin_config_names()
    cfg = load_config("tiny", ["seed=3", "objective.advantage=grpo", "rollout.rollouts_per_round=4"])
    assert (cfg.seed, cfg.objective.advantage, cfg.rollout.rollouts_per_round) == (3, "grpo", 4)
    assert cfg.rollouts_per_round_total == 4


def test_yaml_file_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 7\noptim:\n  lr: 3.0e-5\n")
    cfg = load_config(str(path), {"train.rounds": 10})
    assert (cfg.seed, cfg.optim.lr, cfg.train.rounds) == (7, 3e-5, 10)
    again = tmp_path / "again.yaml"
    again.write_text(cfg.to_yaml())
    assert load_config(str(again)) == cfg


def test_override_values_are_parsed_as_yaml():
    assert parse_override("a.b=0.1") == (["a", "b"], 0.1)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=[1, 4]") == (["a"], [1, 4])
    assert apply_overrides({"x": {"y": 1}}, ["x.z=2"]) == {"x": {"y": 1, "z": 2}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("objective.clip_eps_low=1.5", "objective.clip_eps_low=1.5 is out of range; allowed [0, 0.999]"),
        ("rollout.temperature=0", "rollout.temperature=0.0 is out of range; allowed (0, 5]"),
        ("rollout.rollouts_per_round=0", "rollout.rollouts_per_round=0 is out of range; allowed [1, 1024]"),
        ("optim.lr=abc", "optim.lr='abc': expected a number"),
        ("train.rounds=1.5", "train.rounds=1.5: expected an integer"),
        (
            "objective.advantage=ppo",
            "objective.advantage='ppo' is not allowed; choose one of: grpo, mean, none",
        ),
        (
            "objective.reward_design=x",
            "objective.reward_design='x' is not allowed; choose one of: binary, format, neg, pm1, random",
        ),
        ("optim.optimizer=adam", "optim.optimizer='adam' is not allowed; choose one of: adamw, sgd"),
        ("objectiv.advantage=none", "unknown config key objectiv (did you mean objective?)"),
        (
            "objective.advantag=none",
            "unknown config key objective.advantag (did you mean objective.advantage?)",
        ),
        ("train.examples_per_round=2", "train.examples_per_round=2 exceeds data.train_examples=1"),
        ("eval.pass_k=[3]", "eval.pass_k contains 3; each k must be an integer in [1, 2]"),
        ("run.log_rollouts=maybe", "run.log_rollouts='maybe': expected true or false"),
        ("objective.dual_clip=1.0", "objective.dual_clip=1.0 is out of range; allowed (1, inf]"),
        ("seed", "must look like key=value"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_range(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file_and_unknown_builtin():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/x.yaml")
    with pytest.raises(ConfigError, match="neither a YAML file nor a built-in config; built-ins: .*tiny"):
        load_config("no-such-config")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(str(path))


def test_pass_k_allowed_with_sampled_test():
    cfg = load_config("tiny", ["eval.test_mode=sample", "eval.test_samples=8", "eval.pass_k=[1, 4, 8]"])
    assert cfg.eval.pass_k == [1, 4, 8]


def test_every_field_is_documented():
    rows = describe_fields()
    assert len(rows) > 40
    for key, _default, _allowed, help_ in rows:
        assert help_, f"{key} has no help"


def test_answer_format_follows_prompt_style():
    cfg = Config()
    assert cfg.resolved_answer_format("gsm8k") == "gsm8k_strict"
    assert cfg.resolved_answer_format("math") == "boxed"
    assert load_config(None, ["data.answer_format=any"]).resolved_answer_format("math") == "auto"
