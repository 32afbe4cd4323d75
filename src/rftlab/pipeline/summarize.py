"""From a pipeline directory to numbers: per layer, per variant, across seeds (analysis.json).

Reads `<out>/pipeline.json` and the run directories it names; never re-runs anything. The same
files give the same numbers (bootstrap intervals are seeded).
"""

from __future__ import annotations

import json
from pathlib import Path

from rftlab.errors import RftlabError
from rftlab.files import PIPELINE_FILE
from rftlab.pipeline import analysis, findings
from rftlab.pipeline.analysis import RunCurve
from rftlab.pipeline.spec import spec_from_dict

TABLE_METRICS = [
    "conv_round",
    "conv_rollouts",
    "never_frac",
    "conv_round_spread",
    "auc_rounds",
    "auc_rollouts",
    "online_correct",
    "train_base",
    "train_final",
    "test_base",
    "test_final",
    "test_best",
    "test_gain",
    "test_max_drop",
    "test_seed_std",
]
PAIRED_METRICS = [
    "conv_round_censored",
    "auc_rounds",
    "auc_rollouts",
    "train_final",
    "test_final",
    "test_best",
    "test_gain",
    "test_max_drop",
    "test_seed_std",
]


def read_pipeline(out: str | Path) -> dict:
    path = Path(out) / PIPELINE_FILE
    if not path.is_file():
        raise RftlabError(f"{out} is not a pipeline directory (no {PIPELINE_FILE}); run `rftlab pipeline` first")
    return json.loads(path.read_text())


def load_groups(out: Path, entries: list[dict], layer: str) -> tuple[dict[str, list[RunCurve]], list[dict]]:
    """Curves per variant of one layer (runs that finished), and the entries that did not."""
    groups: dict[str, list[RunCurve]] = {}
    problems = []
    for e in entries:
        if e["layer"] != layer:
            continue
        groups.setdefault(e["variant"], [])
        run_dir = out / "runs" / e["run"]
        if not (run_dir / "summary.json").is_file():
            problems.append({**e, "reason": e.get("reason") or ("not finished" if run_dir.exists() else "not run")})
            continue
        try:
            groups[e["variant"]].append(analysis.load_run(run_dir, seed=e["seed"]))
        except (ValueError, OSError) as err:
            problems.append({**e, "status": "unreadable", "reason": str(err)})
    return groups, problems


def summarize(
    out: str | Path, *, n_boot: int = analysis.BOOTSTRAP
) -> tuple[dict, dict[str, dict[str, list[RunCurve]]]]:
    """(analysis dict, curves per layer and variant)."""
    out = Path(out)
    data = read_pipeline(out)
    spec = spec_from_dict(data["spec"])
    entries = data["entries"]
    result = {
        "name": spec.name,
        "description": spec.description,
        "options": data.get("options", {}),
        "layers": [],
        "findings": [],
        "problems": [],
    }
    all_curves = {}
    for layer in spec.layers:
        if not any(e["layer"] == layer.name for e in entries):
            continue  # not part of this sweep (--layers)
        groups, problems = load_groups(out, entries, layer.name)
        all_curves[layer.name] = groups
        ctx = analysis.layer_context(groups)
        ref = groups.get(layer.reference) or []
        variants = []
        for v in layer.variants:
            curves = groups.get(v.name, [])
            planned = [e for e in entries if e["layer"] == layer.name and e["variant"] == v.name]
            reasons = sorted({p["reason"] for p in problems if p["variant"] == v.name})
            row = {
                "name": v.name,
                "overrides": v.overrides,
                "note": v.note,
                "model": planned[0]["model"] if planned else "",
                "seeds": len(planned),
                "finished": len(curves),
                "problems": reasons,
                "rounds": int(curves[0].total_rounds) if curves else None,
                "metrics": {},
                "paired": {},
            }
            if curves:
                for m in TABLE_METRICS:
                    row["metrics"][m] = analysis.estimate(curves, m, ctx, n_boot=n_boot).as_dict()
                if tasks := analysis.task_estimates(curves, ctx, n_boot=n_boot):  # multi-task runs (data.mix)
                    row["tasks"] = tasks
                if v.name != layer.reference and ref:
                    for m in PAIRED_METRICS:
                        row["paired"][m] = analysis.paired_difference(curves, ref, m, ctx, n_boot=n_boot).as_dict()
                # post-saturation generalization; Pass@1 as format rate x accuracy among well-formed answers
                row["saturation"] = analysis.saturation_summary(curves, n_boot=n_boot)
                row["decomposition"] = analysis.decomposition_summary(curves)
            variants.append(row)
        layer_findings = findings.evaluate_claims(layer.name, layer.claims, groups, layer.reference, ctx, n_boot=n_boot)
        result["layers"].append(
            {
                "name": layer.name,
                "finding": layer.finding,
                "note": layer.note,
                "reference": layer.reference,
                "base": layer.base,
                "context": {
                    "round_horizon": ctx.round_horizon,
                    "rollout_horizon": ctx.rollout_horizon,
                    "threshold": ctx.threshold,
                },
                "variants": variants,
                "findings": layer_findings,
            }
        )
        result["findings"] += layer_findings
        result["problems"] += problems
    return result, all_curves
