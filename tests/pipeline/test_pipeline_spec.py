"""Pipeline specs: built-ins load and validate, every registry entry builds a variant, errors name the key."""

from pathlib import Path

import pytest
import yaml

from rftlab import objectives
from rftlab.config import ConfigError, load_config
from rftlab.pipeline.spec import builtin_pipeline_names, load_spec, plan, spec_from_dict

REPO = Path(__file__).resolve().parents[2]


def small_spec(**layer_over) -> dict:
    layer = {"name": "L", "finding": "f", "variants": {"a": {}, "b": {"objective.advantage": "grpo"}}}
    layer.update(layer_over)
    return {"name": "t", "base": "tiny", "seeds": 3, "overrides": {"train.rounds": 4}, "layers": [layer]}


# ----------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("name", ["paper", "paper-gpu"])
def test_builtin_pipelines_load_and_validate(name):
    assert name in builtin_pipeline_names()
    spec = load_spec(name)  # validates every variant's config, full and quick
    runs = plan(spec)
    assert {r.seed for r in runs} == set(range(spec.seeds))
    quick = plan(spec, quick=True)
    assert {r.seed for r in quick} == {0, 1}
    assert [layer.name for layer in spec.layers][:2] == ["L0-minimalist", "L1-advantage"]
    for layer in spec.layers:
        assert layer.finding and layer.claims, layer.name


def test_paper_layers_cover_the_notes_table():
    spec = load_spec("paper")
    names = [layer.name for layer in spec.layers]
    assert names[:8] == [  # the paper's table; layers beyond the paper come after it
        "L0-minimalist",
        "L1-advantage",
        "L2-rollouts",
        "L3-reward",
        "L4-difficulty",
        "L5-base-model",
        "L6-batch",
        "L6-budget",
    ]
    assert {"A1-adaptive", "A2-adaptive-vs-grpo"} <= set(names)  # beyond the paper (issue 12)
    runs = plan(spec)
    by = {(r.layer, r.variant, r.seed): r.config for r in runs}
    # L1 runs at a G where grpo/mean/rloo differ from none
    assert by[("L1-advantage", "grpo", 0)]["rollout"]["rollouts_per_round"] > 1
    # every advantage estimator is a variant: the paper's in L1, the adaptive designs in A2 (same G)
    l1 = {v.name for v in spec.layer("L1-advantage").variants}
    a2 = {v.name for v in spec.layer("A2-adaptive-vs-grpo").variants}
    assert l1 | a2 == set(objectives.ADVANTAGES) and {"w_reinforce", "grpo_lead"} <= a2
    assert {v.name for v in spec.layer("L3-reward").variants} == set(objectives.REWARD_DESIGNS)
    # tiny has no example with base Pass@1 in the easy bucket [0.6, 0.9] at temperature 1 (see paper.yaml)
    assert [by[("L4-difficulty", v, 0)]["data"]["difficulty"] for v in ("medium", "hard", "extreme")] == [
        "medium",
        "hard",
        "extreme",
    ]
    models = {by[("L5-base-model", v.name, 0)]["model"]["name"] for v in spec.layer("L5-base-model").variants}
    assert models == {"tiny", "tiny-narrow", "smollm2-135m"}
    smol = by[("L5-base-model", "smollm2-135m", 0)]
    assert smol["train"]["rounds"] < by[("L5-base-model", "tiny", 0)]["train"]["rounds"]
    # equal budget B x G in L6-budget
    for v in spec.layer("L6-budget").variants:
        c = by[("L6-budget", v.name, 0)]
        assert c["train"]["examples_per_round"] * c["rollout"]["rollouts_per_round"] == 4
        assert c["data"]["train_examples"] > 1
    # identical configs are shared: the minimalist is L2's G1, L3's binary, L4's medium, L5's tiny
    runs0 = {(r.layer, r.variant): r.run for r in runs if r.seed == 0}
    shared = {
        runs0[k]
        for k in [
            ("L0-minimalist", "minimalist"),
            ("L2-rollouts", "G1"),
            ("L3-reward", "binary"),
            ("L4-difficulty", "medium"),
            ("L5-base-model", "tiny"),
        ]
    }
    assert len(shared) == 1


def test_adaptive_layers_share_runs_with_the_paper_layers_and_plan_quick():
    spec = load_spec("paper")
    runs0 = {(r.layer, r.variant): r for r in plan(spec) if r.seed == 0}
    same = [
        (("A1-adaptive", "minimalist"), ("L0-minimalist", "minimalist")),
        (("A1-adaptive", "grpo-G4"), ("L1-advantage", "grpo")),
        (("A2-adaptive-vs-grpo", "grpo"), ("L1-advantage", "grpo")),
        (("A2-adaptive-vs-grpo", "none"), ("L1-advantage", "none")),
        (("A2-adaptive-vs-grpo", "running_mean"), ("L1-advantage", "running_mean")),
        (("A2-adaptive-vs-grpo", "grpo_lead"), ("A1-adaptive", "grpo_lead-G4")),
        (("A2-adaptive-vs-grpo", "w_reinforce"), ("A1-adaptive", "w_reinforce-G4")),
    ]
    for a, b in same:
        assert runs0[a].run == runs0[b].run, (a, b)
    # the runs only the adaptive layers have: W-REINFORCE and the running mean at G = 1, the two designs at G = 4
    others = {r.run for (layer, _), r in runs0.items() if not layer.startswith("A")}
    new = {r.run for (layer, _), r in runs0.items() if layer.startswith("A") and r.run not in others}
    names = {"running_mean-G1", "w_reinforce-G1", "grpo_lead-G4", "w_reinforce-G4"}
    assert new == {runs0[("A1-adaptive", v)].run for v in names}
    for variant, (advantage, group) in {
        "w_reinforce-G1": ("w_reinforce", 1),
        "running_mean-G1": ("running_mean", 1),
        "grpo_lead-G4": ("grpo_lead", 4),
    }.items():
        config = runs0[("A1-adaptive", variant)].config
        assert (config["objective"]["advantage"], config["rollout"]["rollouts_per_round"]) == (advantage, group)
        assert config["objective"]["reward_design"] == "binary"
    assert spec.layer("A1-adaptive").bandit == "adaptive" and spec.layer("A1-adaptive").reference == "minimalist"
    quick = {(r.layer, r.variant): r.config for r in plan(spec, quick=True) if r.seed == 0}
    assert quick[("A1-adaptive", "w_reinforce-G1")]["train"]["rounds"] == spec.quick_overrides["train.rounds"]
    assert ("A2-adaptive-vs-grpo", "grpo_lead") in quick


def test_paired_seeds_and_quick_overrides():
    spec = load_spec("paper")
    runs = plan(spec)
    for r in runs:
        assert r.config["seed"] == r.seed and r.run.endswith(f"seed{r.seed}")
    quick = plan(spec, quick=True)
    by = {(r.layer, r.variant): r.config for r in quick if r.seed == 0}
    assert by[("L0-minimalist", "minimalist")]["train"]["rounds"] == spec.quick_overrides["train.rounds"]
    assert by[("L5-base-model", "smollm2-135m")]["data"]["test_size"] == 4  # the variant's own quick overrides
    three = plan(spec, seeds=3)
    assert {r.seed for r in three if r.variant != "smollm2-135m"} == {0, 1, 2}
    assert {r.seed for r in three if r.variant == "smollm2-135m"} == {0, 1}  # the variant's seed cap


GPU_RECIPES = sorted((REPO / "configs" / "gpu").glob("*.yaml"))


@pytest.mark.parametrize("path", GPU_RECIPES, ids=lambda p: p.stem)
def test_gpu_recipes_have_the_paper_settings(path):
    cfg = load_config(str(path))
    assert cfg.model.device == "cuda" and cfg.model.dtype == "bfloat16" and cfg.model.master_dtype == "float32"
    assert cfg.optim.lr == 1e-6 and cfg.optim.weight_decay == 0.01 and cfg.optim.grad_clip == 1.0
    assert cfg.objective.clip_eps_low == cfg.objective.clip_eps_high == 0.2 and cfg.objective.dual_clip == 3.0
    assert cfg.objective.kl_coef == 0.001 and cfg.objective.kl_estimator == "k3"
    assert cfg.objective.aggregation == "token_mean" and cfg.rollout.temperature == 1.0
    assert cfg.rollout.max_new_tokens == 1024 and cfg.eval.every == 100
    assert cfg.data.dataset in ("gsm8k", "math500")


def test_gpu_recipes_cover_three_models_two_datasets():
    assert len(GPU_RECIPES) == 6
    models = {load_config(str(p)).model.name for p in GPU_RECIPES}
    assert models == {
        "Qwen/Qwen2.5-1.5B-Instruct",
        "meta-llama/Llama-3.2-1B-Instruct",
        "allenai/OLMo-2-0425-1B-Instruct",
    }


def test_paper_gpu_base_is_the_qwen_gsm8k_recipe():
    spec = load_spec("paper-gpu")
    minimalist = next(r for r in plan(spec) if r.layer == "L0-minimalist" and r.seed == 0).config
    recipe = load_config(str(REPO / "configs/gpu/qwen2.5-1.5b-instruct-gsm8k.yaml")).to_dict()
    minimalist.pop("run"), recipe.pop("run")
    assert minimalist == recipe


def test_paper_gpu_multi_task_layer_trains_gsm8k_and_math():
    """The real-model multi-task layer (issue 12): GSM8K, MATH-500, and both, each single task also
    evaluated on the other; its claims read each task's own test Pass@1."""
    spec = load_spec("paper-gpu")
    layer = spec.layer("multi-task")
    runs = {r.variant: r.config for r in plan(spec) if r.layer == "multi-task" and r.seed == 0}
    mixes = {v: (c["data"]["mix"]["tasks"], c["data"]["mix"]["eval_tasks"]) for v, c in runs.items()}
    assert mixes == {
        "gsm8k": (["gsm8k"], ["math500"]),
        "math500": (["math500"], ["gsm8k"]),
        "gsm8k+math500": (["gsm8k", "math500"], []),
    }
    for config in runs.values():  # everything else is the paper's Qwen GSM8K recipe
        assert config["model"]["name"] == "Qwen/Qwen2.5-1.5B-Instruct" and config["optim"]["lr"] == 1e-6
    tasks = {claim["metric"].split(":")[1] for claim in layer.claims}
    assert tasks == {"gsm8k", "math500"}


# ----------------------------------------------------------------------------- registries


def _one_layer(key: str, names) -> dict:
    return small_spec(base={"rollout.rollouts_per_round": 2}, variants={n: {key: n} for n in sorted(names)})


@pytest.mark.parametrize("name", sorted(objectives.ADVANTAGES))
def test_every_advantage_builds_a_variant(name):
    runs = plan(spec_from_dict(_one_layer("objective.advantage", objectives.ADVANTAGES)))
    assert any(r.variant == name and r.config["objective"]["advantage"] == name for r in runs)


@pytest.mark.parametrize("name", sorted(objectives.LOSS_AGGREGATIONS))
def test_every_aggregation_builds_a_variant(name):
    runs = plan(spec_from_dict(_one_layer("objective.aggregation", objectives.LOSS_AGGREGATIONS)))
    assert any(r.variant == name and r.config["objective"]["aggregation"] == name for r in runs)


@pytest.mark.parametrize("name", sorted(objectives.REWARD_DESIGNS))
def test_every_reward_design_builds_a_variant(name):
    runs = plan(spec_from_dict(_one_layer("objective.reward_design", objectives.REWARD_DESIGNS)))
    assert any(r.variant == name and r.config["objective"]["reward_design"] == name for r in runs)


@pytest.mark.parametrize("name", sorted(objectives.KL_ESTIMATORS))
def test_every_kl_estimator_builds_a_variant(name):
    spec = small_spec(
        base={"objective.kl_coef": 0.001},
        variants={n: {"objective.kl_estimator": n} for n in sorted(objectives.KL_ESTIMATORS)},
    )
    runs = plan(spec_from_dict(spec))
    assert any(r.variant == name and r.config["objective"]["kl_estimator"] == name for r in runs)


# ----------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda s: s.update(layerz=[]), r"unknown pipeline key pipeline\.layerz"),
        (lambda s: s["layers"][0].update(variantz={}), r"layer|variantz"),
        (
            lambda s: s["layers"][0]["variants"].update(c={"objective.advantag": "grpo"}),
            r"objective\.advantag",
        ),
        (
            lambda s: s["layers"][0]["variants"].update(c={"objective.advantage": "bogus"}),
            r"variant c: objective\.advantage='bogus'",
        ),
        (lambda s: s["layers"][0].update(base={"train.roundz": 3}), r"train\.roundz"),
        (lambda s: s.update(overrides={"model.nam": "x"}), r"model\.nam"),
        (lambda s: s["layers"][0].update(reference="zzz"), r"reference='zzz'"),
        (lambda s: s["layers"][0]["variants"].update(c={"objective.advantage": "none"}), r"same config"),
        (lambda s: s.update(seeds=0), r"seeds"),
        (lambda s: s.update(quick={"seedz": 1}), r"pipeline\.quick\.seedz"),
        (lambda s: s.update(layers=[]), r"non-empty"),
        (lambda s: s["layers"].append(dict(s["layers"][0])), r"two layers"),
        (
            lambda s: s["layers"][0].update(claims=[{"finding": "x", "metric": "nope", "rule": "gt"}]),
            r"metric='nope'",
        ),
        (
            lambda s: s["layers"][0].update(claims=[{"finding": "x", "metric": "test_final", "rule": "gte"}]),
            r"rule='gte'",
        ),
        (
            lambda s: s["layers"][0].update(
                claims=[{"finding": "x", "metric": "test_final", "rule": "gt", "variants": ["zz"]}]
            ),
            r"'zz' is not a variant",
        ),
        (
            lambda s: s["layers"][0].update(
                claims=[{"finding": "x", "metric": "test_final", "rule": "gt", "thresh": 1}]
            ),
            r"claims\[0\]\.thresh",
        ),
        (
            lambda s: s["layers"][0]["variants"].update(c={"set": {"seed": 1}, "quik": {}}),
            r"variants\.c\.quik",
        ),
        (lambda s: s.update(base="no-such-config"), r"no-such-config"),
        (
            lambda s: s["layers"][0]["variants"].update(
                c={"set": {"objective.advantage": "rloo"}, "quick": {"train.rounds": -1}}
            ),
            r"train\.rounds=-1",
        ),
    ],
)
def test_spec_validation_errors_name_the_key(mutate, match):
    spec = small_spec()
    mutate(spec)
    with pytest.raises(ConfigError, match=match):
        load_spec(spec)


def test_spec_file_and_relative_base(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"model": {"name": "tiny"}, "train": {"rounds": 7}}))
    spec = small_spec(name="L")
    spec["base"] = "base.yaml"
    spec.pop("overrides")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs = plan(load_spec(str(path)))
    assert runs[0].config["train"]["rounds"] == 7
    with pytest.raises(ConfigError, match="not found"):
        load_spec(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="built-in pipeline"):
        load_spec("no-such-pipeline")


def test_nested_overrides_are_flattened():
    spec = small_spec(variants={"a": {}, "b": {"objective": {"advantage": "grpo"}}})
    runs = plan(spec_from_dict(spec))
    b = next(r for r in runs if r.variant == "b").config
    assert b["objective"]["advantage"] == "grpo" and b["objective"]["clip_eps_low"] == 0.2  # not replaced


def test_variant_seed_cap():
    spec = small_spec(variants={"a": {}, "slow": {"set": {"objective.advantage": "grpo"}, "seeds": 2}})
    runs = plan(spec_from_dict(spec))
    assert sorted(r.seed for r in runs if r.variant == "slow") == [0, 1]
    assert sorted(r.seed for r in runs if r.variant == "a") == [0, 1, 2]
    spec["layers"][0]["variants"]["slow"]["seeds"] = 0
    with pytest.raises(ConfigError, match="slow.seeds"):
        load_spec(spec)
