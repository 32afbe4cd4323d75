"""Pipeline specs: layers of variants x seeds, validated and resolved into concrete runs.

A spec (YAML, or a built-in name in `rftlab/pipelines/`) looks like

    name: paper
    description: one line
    base: tiny                        # built-in config name or YAML path (or relative to the spec file);
                                      # omitted: the Config defaults
    overrides: {train.rounds: 120}    # dotted overrides on top of the base, for every run
    seeds: 5                          # seed k of every variant runs with seed=k (paired comparisons)
    quick: {seeds: 2, overrides: {train.rounds: 4}}   # what --quick changes
    layers:
      - name: L1-advantage
        finding: the paper's finding this layer tests (text)
        base: {rollout.rollouts_per_round: 4}         # overrides on top of the pipeline's
        reference: none                               # variant the others are compared with (default: first)
        variants:
          none: {objective.advantage: none}           # each differs from the layer base in one choice
          grpo: {objective.advantage: grpo}
          slow-model:                                 # long form: a choice plus budget adjustments
            set: {model.name: smollm2-135m, train.rounds: 30}
            quick: {train.rounds: 2}                  # applied after the quick overrides
            seeds: 2                                  # at most 2 seeds (0, 1) for this variant
            note: why the budget differs
        claims: [...]                                 # testable findings, see rftlab.pipeline.findings

A configuration is resolved in this order: base config <- spec overrides <- layer base <- variant
<- (with --quick) quick overrides <- variant's quick overrides <- seed. Every (variant, seed) config
is built and validated before anything runs; an unknown key anywhere raises ConfigError naming it.

Identical configurations (e.g. the minimalist that is L0, the G = 1 variant of L2 and the binary
reward of L3) are run once and shared: the run directory name carries a hash of the config.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rftlab.config import (
    Config,
    ConfigError,
    apply_overrides,
    builtin_names,
    config_from_dict,
    read_yaml_source,
)

SPEC_KEYS = ("name", "description", "base", "overrides", "seeds", "quick", "layers")
QUICK_KEYS = ("seeds", "overrides")
LAYER_KEYS = ("name", "finding", "base", "reference", "variants", "claims", "note", "bandit")
VARIANT_LONG_KEYS = ("set", "quick", "note", "seeds")


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any]  # dotted key -> value, on top of the layer base
    quick: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    seeds: int | None = None  # at most this many seeds (0..n-1) for an expensive variant; None = all


@dataclass(frozen=True)
class Layer:
    name: str
    finding: str
    base: dict[str, Any]
    variants: tuple[Variant, ...]
    reference: str
    claims: tuple[dict, ...] = ()
    note: str = ""
    bandit: str = ""  # the bandit lab's counterpart layer (rftlab.bandit.pipeline's finding layer, e.g. L1)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    base: str | None  # built-in config name or YAML path; None = the Config defaults
    overrides: dict[str, Any]
    seeds: int
    layers: tuple[Layer, ...]
    quick_seeds: int = 2
    quick_overrides: dict[str, Any] = field(default_factory=dict)
    source_dir: str = "."  # where relative paths in `base` are resolved

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)


@dataclass(frozen=True)
class PlannedRun:
    """One (layer, variant, seed) and the run directory (shared by identical configurations)."""

    layer: str
    variant: str
    seed: int
    run: str  # run directory name under <out>/runs/
    config: dict  # the resolved configuration (plain data)

    @property
    def model(self) -> str:
        return self.config["model"]["name"]


# ----------------------------------------------------------------------------- loading


def builtin_pipeline_names() -> list[str]:
    return builtin_names("pipelines")


def read_spec_source(source: str) -> tuple[dict, str]:
    """(raw mapping, directory of the file) for a YAML path or a built-in pipeline name."""
    return read_yaml_source(source, folder="pipelines", kind="pipeline")


def load_spec(source: str | dict, *, validate: bool = True) -> PipelineSpec:
    """A PipelineSpec from a YAML path, a built-in name, or a mapping; validated unless told not to."""
    if isinstance(source, dict):
        data, folder = source, "."
    else:
        data, folder = read_spec_source(source)
    spec = spec_from_dict(data, source_dir=folder)
    if validate:
        plan(spec, quick=False)
        plan(spec, quick=True)
    return spec


def _check_keys(where: str, data: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; valid keys: {', '.join(allowed)}"
            raise ConfigError(f"unknown pipeline key {where}.{key}{hint}")


def flatten_overrides(where: str, data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c.d": 2} -> {"a.b": 1, "c.d": 2}: dotted overrides, whichever way written."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of dotted overrides (e.g. objective.advantage: grpo)")
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        # lists stay values (data.train_example_ids, eval.pass_k); only mappings nest
        if isinstance(value, dict):
            out.update(flatten_overrides(where, value, f"{full}."))
        else:
            out[full] = value
    return out


def _seeds(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}={value!r}: expected a positive integer number of seeds")
    return value


def spec_from_dict(data: dict, *, source_dir: str = ".") -> PipelineSpec:
    _check_keys("pipeline", data, SPEC_KEYS)
    for key in ("name", "layers"):
        if key not in data:
            raise ConfigError(f"pipeline: missing key {key!r}")
    quick = data.get("quick") or {}
    _check_keys("pipeline.quick", quick, QUICK_KEYS)
    layers_raw = data["layers"]
    if not isinstance(layers_raw, list) or not layers_raw:
        raise ConfigError("pipeline.layers: expected a non-empty list of layers")
    layers, names = [], set()
    for i, raw in enumerate(layers_raw):
        where = f"pipeline.layers[{i}]"
        _check_keys(where, raw, LAYER_KEYS)
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: every layer needs a name")
        where = f"layer {name}"
        if name in names:
            raise ConfigError(f"{where}: two layers have this name")
        names.add(name)
        variants_raw = raw.get("variants")
        if not isinstance(variants_raw, dict) or not variants_raw:
            raise ConfigError(f"{where}.variants: expected a non-empty mapping of variant name -> overrides")
        variants = []
        for vname, vraw in variants_raw.items():
            vwhere = f"{where}.variants.{vname}"
            if isinstance(vraw, dict) and "set" in vraw:
                _check_keys(vwhere, vraw, VARIANT_LONG_KEYS)
                cap = vraw.get("seeds")
                variants.append(
                    Variant(
                        str(vname),
                        flatten_overrides(f"{vwhere}.set", vraw["set"]),
                        flatten_overrides(f"{vwhere}.quick", vraw.get("quick")),
                        str(vraw.get("note", "")),
                        None if cap is None else _seeds(f"{vwhere}.seeds", cap),
                    )
                )
            else:
                variants.append(Variant(str(vname), flatten_overrides(vwhere, vraw)))
        reference = raw.get("reference", variants[0].name)
        if reference not in {v.name for v in variants}:
            raise ConfigError(
                f"{where}.reference={reference!r} is not one of its variants: {', '.join(v.name for v in variants)}"
            )
        claims = raw.get("claims") or []
        if not isinstance(claims, list):
            raise ConfigError(f"{where}.claims: expected a list")
        from rftlab.pipeline.findings import validate_claim  # claims have their own schema

        for j, claim in enumerate(claims):
            validate_claim(f"{where}.claims[{j}]", claim, [v.name for v in variants], reference)
        layers.append(
            Layer(
                name=name,
                finding=str(raw.get("finding", "")),
                base=flatten_overrides(f"{where}.base", raw.get("base")),
                variants=tuple(variants),
                reference=reference,
                claims=tuple(claims),
                note=str(raw.get("note", "")),
                bandit=str(raw.get("bandit") or ""),
            )
        )
    return PipelineSpec(
        name=str(data["name"]),
        description=str(data.get("description", "")),
        base=None if data.get("base") is None else str(data["base"]),
        overrides=flatten_overrides("pipeline.overrides", data.get("overrides")),
        seeds=_seeds("pipeline.seeds", data.get("seeds", 5)),
        layers=tuple(layers),
        quick_seeds=_seeds("pipeline.quick.seeds", quick.get("seeds", 2)),
        quick_overrides=flatten_overrides("pipeline.quick.overrides", quick.get("overrides")),
        source_dir=source_dir,
    )


# ----------------------------------------------------------------------------- resolving


def _base_dict(spec: PipelineSpec) -> dict:
    source = spec.base
    if source is None:
        return {}
    candidate = Path(spec.source_dir) / source
    if source.endswith((".yaml", ".yml")) and not Path(source).exists() and candidate.is_file():
        source = str(candidate)  # relative to the spec file
    return read_yaml_source(source, folder="configs", kind="config")[0]  # the reader load_config uses


def variant_config(
    spec: PipelineSpec, layer: Layer, variant: Variant, seed: int, *, quick: bool = False, base: dict | None = None
) -> Config:
    """The validated Config of one (layer, variant, seed)."""
    data = base if base is not None else _base_dict(spec)
    steps = [spec.overrides, layer.base, variant.overrides]
    if quick:
        steps += [spec.quick_overrides, variant.quick]
    steps.append({"seed": seed})
    for overrides in steps:
        data = apply_overrides(data, overrides)
    try:
        return config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"layer {layer.name}, variant {variant.name}: {err}") from None


def config_hash(config: dict) -> str:
    """A short hash of a configuration without its seed (identical configs share a run directory)."""
    data = {k: v for k, v in config.items() if k != "seed"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def plan(
    spec: PipelineSpec, *, quick: bool = False, seeds: int | None = None, layers: list[str] | None = None
) -> list[PlannedRun]:
    """Every (layer, variant, seed) with its validated config and run directory name.

    Raises ConfigError before anything runs if any config is invalid or a variant repeats its
    layer base's twin (two variants with the same config in one layer compare nothing).
    """
    n_seeds = (spec.quick_seeds if quick else spec.seeds) if seeds is None else _seeds("--seeds", seeds)
    if layers:
        unknown = [name for name in layers if name not in {layer.name for layer in spec.layers}]
        if unknown:
            raise ConfigError(f"--layers: no layer {unknown[0]!r}; layers: {', '.join(x.name for x in spec.layers)}")
    base = _base_dict(spec)
    runs: list[PlannedRun] = []
    first_name: dict[str, str] = {}  # config hash -> run name prefix of its first occurrence
    for layer in spec.layers:
        if layers and layer.name not in layers:
            continue
        seen: dict[str, str] = {}
        for variant in layer.variants:
            cfg0 = variant_config(spec, layer, variant, 0, quick=quick, base=base).to_dict()
            h = config_hash(cfg0)
            if h in seen:
                raise ConfigError(f"layer {layer.name}: variants {seen[h]} and {variant.name} have the same config")
            seen[h] = variant.name
            prefix = first_name.setdefault(h, f"{_slug(layer.name)}__{_slug(variant.name)}__{h}")
            for seed in range(min(n_seeds, variant.seeds or n_seeds)):
                cfg = variant_config(spec, layer, variant, seed, quick=quick, base=base).to_dict()
                runs.append(PlannedRun(layer.name, variant.name, seed, f"{prefix}__seed{seed}", cfg))
    return runs


def spec_to_dict(spec: PipelineSpec) -> dict:
    """A plain mapping that `spec_from_dict` turns back into the same spec (saved with a pipeline)."""

    def variant(v: Variant) -> Any:
        if v.quick or v.note or v.seeds:
            out = {"set": dict(v.overrides), "quick": dict(v.quick), "note": v.note}
            return {**out, "seeds": v.seeds} if v.seeds else out
        return dict(v.overrides)

    def layer_dict(layer: Layer) -> dict:
        out = {
            "name": layer.name,
            "finding": layer.finding,
            "base": dict(layer.base),
            "reference": layer.reference,
            "variants": {v.name: variant(v) for v in layer.variants},
            "claims": list(layer.claims),
            "note": layer.note,
        }
        return {**out, "bandit": layer.bandit} if layer.bandit else out

    return {
        "name": spec.name,
        "description": spec.description,
        "base": spec.base,
        "overrides": dict(spec.overrides),
        "seeds": spec.seeds,
        "quick": {"seeds": spec.quick_seeds, "overrides": dict(spec.quick_overrides)},
        "layers": [layer_dict(layer) for layer in spec.layers],
    }
