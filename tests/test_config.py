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
from rftlab.objectives import DifficultyWeights


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
            "objective.advantage='ppo' is not allowed; choose one of: grpo, grpo_lead, mean, none",
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
        ("objective.positive_weight=-0.1", "objective.positive_weight=-0.1 is out of range; allowed [0, 100]"),
        ("objective.difficulty_midpoint=1.5", "objective.difficulty_midpoint=1.5 is out of range; allowed [0, 1]"),
        (
            "objective.difficulty_weight_low=-1",
            "objective.difficulty_weight_low=-1.0 is out of range; allowed [0, 100]",
        ),
        (
            "objective.difficulty_weight_high=101",
            "objective.difficulty_weight_high=101.0 is out of range; allowed [0, 100]",
        ),
        (
            "objective.difficulty_steepness=-2",
            "objective.difficulty_steepness=-2.0 is out of range; allowed [0, 1000]",
        ),
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


# ----------------------------------------------------------------------------- base: (a YAML extends another)


def test_yaml_base_builtin_gets_its_values_own_keys_and_overrides_on_top(tmp_path):
    """`base: tiny` takes tiny's values (lr 3e-5, not the default 1e-5), the file's own keys win, overrides last."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: tiny\ntrain:\n  rounds: 7\neval:\n  every: 3\n")
    cfg = load_config(str(mine), ["eval.every=5"])
    tiny = load_config("tiny")
    assert cfg.optim.lr == tiny.optim.lr == 3e-5 != Config().optim.lr
    assert cfg.eval.test_mode == "sample" and cfg.eval.pass_k == [1, 2]  # tiny's, merged key by key in eval
    assert cfg.train.rounds == 7 and cfg.eval.every == 5
    assert "base" not in cfg.to_dict()  # the resolved config has no base: every value is written out


def test_yaml_base_chain_reads_relative_paths_beside_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "middle.yaml").write_text("base: tiny\nseed: 4\noptim:\n  lr: 2.0e-5\n")
    top = tmp_path / "top.yaml"
    top.write_text("base: sub/middle.yaml\nseed: 9\n")
    cfg = load_config(str(top))
    assert (cfg.seed, cfg.optim.lr, cfg.train.rounds) == (9, 2e-5, load_config("tiny").train.rounds)


def test_yaml_base_cycle_is_refused_naming_the_chain(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nseed: 1\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"cycle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(tmp_path / "self.yaml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: tiny\nbogus: 1\n", "unknown config key bogus"),
        ("base: tiny\noptim:\n  lrr: 1.0e-5\n", "did you mean optim.lr"),
        ("base: no-such-builtin\n", "neither a YAML file nor a built-in"),
        ("base: missing.yaml\n", "config file not found: missing.yaml"),
        ("base: [tiny]\n", "base must name a built-in config or a YAML file"),
    ],
)
def test_yaml_base_errors_name_the_key_or_file(tmp_path, text, message):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_describe_fields_shows_a_configs_values():
    tiny = {key: value for key, value, _, _ in describe_fields(values=load_config("tiny"))}
    defaults = {key: value for key, value, _, _ in describe_fields()}
    assert tiny["optim.lr"] == "3e-05" and defaults["optim.lr"] == "1e-05"
    assert tiny.keys() == defaults.keys()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["objective.advantage=w_reinforce", "objective.reward_design=pm1"],
            "objective.reward_design='pm1' does not suit objective.advantage='w_reinforce'; allowed: binary",
        ),
        (
            ["objective.advantage=grpo_lead", "objective.reward_design=neg"],
            "objective.reward_design='neg' does not suit objective.advantage='grpo_lead'; allowed: binary, pm1",
        ),
    ],
)
def test_adaptive_design_refuses_a_reward_design_it_is_not_defined_for(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_adaptive_design_keys_reach_their_objects():
    cfg = load_config(
        "tiny",
        [
            "objective.advantage=grpo_lead",
            "objective.reward_design=pm1",
            "objective.positive_weight=0.3",
            "objective.difficulty_weight_low=0.5",
            "objective.difficulty_weight_high=2",
            "objective.difficulty_midpoint=0.6",
            "objective.difficulty_steepness=5",
        ],
    )
    assert cfg.objective.positive_weight == 0.3
    assert cfg.objective.difficulty_weights == DifficultyWeights(low=0.5, high=2.0, midpoint=0.6, steepness=5.0)
    # the defaults are the sources' values: lambda 0.1 (Zhu et al.), A, B, rho0, k = 0.4, 1.5, 0.75, 10 (GRPO-LEAD)
    default = load_config("tiny").objective
    assert default.positive_weight == 0.1
    assert default.difficulty_weights == DifficultyWeights(low=0.4, high=1.5, midpoint=0.75, steepness=10.0)
