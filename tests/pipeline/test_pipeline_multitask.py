"""The multi-task layer: per-task metrics, claims with their own reference, the spec, and the report,
on hand-made curves and synthetic run directories (tests/helpers/synthetic_runs.py) with known effects."""

import json

import matplotlib.image as mpimg
import numpy as np
import pytest
from synthetic_runs import eval_row, synthetic_train

from rftlab.commands.pipeline import run_pipeline
from rftlab.config import ConfigError
from rftlab.pipeline import analysis, findings
from rftlab.pipeline.spec import load_spec, plan
from rftlab.report.multitask import reading


def task_curve(add, sub=None, *, seed=0, pooled=0.5):
    """Eval rows every 10 rounds with per-task test Pass@1 (sub None: the run never evaluated sub)."""
    rows = []
    for i, a in enumerate(add):
        row = eval_row(10 * i, 10 * i, 0.5, pooled)
        row.update({"test/add/pass_at_1": a, "train/add/pass_at_1": 0.4})
        if sub is not None:
            row["test/sub/pass_at_1"] = sub[i]
        rows.append(row)
    return analysis.curve_from_rows(rows, seed=seed)


def test_task_metrics_read_the_tasks_own_curve():
    c = task_curve([0.2, 0.3, 0.5], [0.1, 0.1, 0.15])
    assert list(c.task_test) == ["add", "sub"] and list(c.task_train) == ["add"]
    ctx = analysis.Context()
    assert analysis.METRICS["test_final:add"](c, ctx) == 0.5
    assert analysis.METRICS["test_gain:sub"](c, ctx) == pytest.approx(0.05)
    assert analysis.METRICS["test_final"](c, ctx) == 0.5  # the pooled key, unchanged
    assert analysis.METRICS["train_final:add"](c, ctx) == 0.4
    assert np.isnan(analysis.METRICS["train_final:sub"](c, ctx))  # sub was evaluated, never trained
    assert np.isnan(analysis.METRICS["test_final:sub"](task_curve([0.2, 0.3]), ctx))  # never evaluated
    assert analysis.metric_kind("test_seed_std:add") == "group"


def test_task_metric_names_are_checked():
    assert "test_final:add" in analysis.METRICS and "test_final:math500" in analysis.METRICS
    assert "test_final:nosuchtask" not in analysis.METRICS and "nosuchmetric:add" not in analysis.METRICS
    with pytest.raises(KeyError):
        analysis.METRICS["test_final:nosuchtask"]
    with pytest.raises(ConfigError, match=r"metric='test_final:ad' is not allowed"):
        findings.validate_claim("c", {"finding": "x", "metric": "test_final:ad", "rule": "gt"}, ["a", "b"], "a")


def _groups():
    """add: trains add; sub: trains sub; both: add +0.05 over add on every seed, sub unchanged vs sub."""
    add = [task_curve([0.2, 0.4], [0.2, 0.25 + 0.01 * s], seed=s) for s in range(5)]
    sub = [task_curve([0.2, 0.22 + 0.01 * s], [0.2, 0.4 + 0.001 * s], seed=s) for s in range(5)]
    both = [task_curve([0.2, 0.45], [0.2, 0.4 + 0.001 * s], seed=s) for s in range(5)]
    return {"add": add, "sub": sub, "both": both}


def test_claims_with_their_own_reference():
    groups = _groups()
    claims = [
        {
            "finding": "helps add",
            "metric": "test_final:add",
            "variants": ["both"],
            "rule": "differs",
            "threshold": 0.02,
        },
        {
            "finding": "changes sub",
            "metric": "test_final:sub",
            "variants": ["both"],
            "reference": "sub",
            "rule": "differs",
            "threshold": 0.02,
        },
        {"finding": "transfers", "metric": "test_gain:sub", "compare": "value", "variants": ["add"], "rule": "gt"},
        {"finding": "short", "metric": "test_gain:sub", "variants": ["add"], "reference": "sub", "rule": "lt"},
    ]
    for i, claim in enumerate(claims):
        findings.validate_claim(f"c{i}", claim, list(groups), "add")
    out = findings.evaluate_claims("multi-task", claims, groups, "add", analysis.layer_context(groups))
    by = {f["finding"]: f for f in out}
    assert by["helps add"]["verdict"] == "agrees" and reading(by["helps add"]["numbers"][0]) == "helps"
    assert by["helps add"]["numbers"][0]["reference"] == "add"
    assert by["changes sub"]["numbers"][0]["reference"] == "sub"
    assert by["changes sub"]["verdict"] == "disagrees"  # identical on every seed: no change
    assert reading(by["changes sub"]["numbers"][0]) == "no change"
    assert by["transfers"]["verdict"] == "agrees" and by["short"]["verdict"] == "agrees"
    assert "sub" in by["short"]["ours"] and "add - sub" in by["short"]["ours"]


def test_claim_reference_must_be_a_variant():
    with pytest.raises(ConfigError, match=r"c.reference='nope' is not a variant of this layer"):
        findings.validate_claim(
            "c", {"finding": "x", "metric": "test_final", "rule": "gt", "reference": "nope"}, ["a"], "a"
        )
    with pytest.raises(ConfigError, match="cannot be compared with itself"):
        findings.validate_claim(
            "c",
            {"finding": "x", "metric": "test_final", "rule": "gt", "reference": "b", "variants": ["b"]},
            ["a", "b"],
            "a",
        )


def test_readings_follow_the_interval():
    def n(low, high, rule="differs", verdict="inconclusive", count=5):
        return {"low": low, "high": high, "threshold": 0.02, "rule": rule, "verdict": verdict, "n": count}

    assert reading(n(0.01, 0.05)) == "helps"
    assert reading(n(-0.05, -0.01)) == "hurts"
    assert reading(n(-0.01, 0.015)) == "no change"
    assert reading(n(-0.01, 0.05)) == "inconclusive"
    assert reading(n(0.01, 0.05, count=2)) == "inconclusive"
    assert reading(n(0.01, 0.05, rule="gt", verdict="agrees")) == "agrees"


# ----------------------------------------------------------------------------- the paper's layer


def test_paper_multi_task_layer_validates_and_quick_plans_it():
    spec = load_spec("paper")
    layer = spec.layer("multi-task")
    assert {v.name for v in layer.variants} == {"add", "sub", "add+sub"}
    runs = plan(spec, quick=True, layers=["multi-task"])
    assert len(runs) == 6 and {r.seed for r in runs} == {0, 1}
    by = {(r.variant, r.seed): r.config for r in runs}
    assert by[("add", 0)]["data"]["mix"] == {"tasks": ["add"], "examples": [], "per_round": [], "eval_tasks": ["sub"]}
    assert by[("add+sub", 0)]["data"]["mix"]["tasks"] == ["add", "sub"]
    assert by[("add", 0)]["train"]["rounds"] == 4  # the quick budget
    assert {c["metric"].split(":")[1] for c in layer.claims} == {"add", "sub"}  # per-task metrics only


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """The paper's multi-task layer on synthetic runs: 4 seeds, 40 rounds."""
    data = load_spec("paper", validate=False)
    from rftlab.pipeline.spec import spec_to_dict

    raw = spec_to_dict(data)
    raw.update(seeds=4, overrides={**raw["overrides"], "train.rounds": 40, "eval.every": 10})
    raw["layers"] = [layer for layer in raw["layers"] if layer["name"] == "multi-task"]
    out = tmp_path_factory.mktemp("multitask")
    run_pipeline(raw, out, executor="inline", train_fn=synthetic_train, check_models=False, progress=False)
    return out


def test_findings_follow_the_synthetic_effects(pipeline_dir):
    items = [f for f in json.loads((pipeline_dir / "findings.json").read_text()) if f["layer"] == "multi-task"]
    by = {f["finding"]: f for f in items}
    assert len(items) == 6
    # synthetic_runs: a second trained task makes each task's test gain 1.5x -> changes (helps) both tasks
    assert by["a second task (sub) changes the first task's (add's) test Pass@1"]["verdict"] == "agrees"
    assert by["a second task (add) changes the first task's (sub's) test Pass@1"]["verdict"] == "agrees"
    # an evaluated-only task gains half of a trained one: transfers, and falls short
    for f in items:
        if "transfer" in f["finding"]:
            assert f["verdict"] == "agrees", f["finding"]
        assert f["rule"] and f["numbers"] and f["source"] == "llm"


def test_report_has_the_per_task_block_and_figure(pipeline_dir):
    page = (pipeline_dir / "report.html").read_text()
    assert "<h3>Per task</h3>" in page
    assert page.count('<td class="verdict agrees">helps</td>') == 2
    figures = sorted(p.name for p in (pipeline_dir / "figures").glob("*_tasks.png"))
    assert figures == ["00_multi-task_tasks.png"]
    pixels = mpimg.imread(pipeline_dir / "figures" / figures[0])
    assert pixels.shape[1] > 2 * pixels.shape[0] and pixels.std() > 0.05  # two panels, not blank
    result = json.loads((pipeline_dir / "analysis.json").read_text())
    variants = {v["name"]: v for v in result["layers"][0]["variants"]}
    assert set(variants["add"]["tasks"]) == {"add", "sub"} and set(variants["add+sub"]["tasks"]) == {"add", "sub"}
    add = variants["add"]["tasks"]
    assert add["add"]["test_gain"]["value"] > add["sub"]["test_gain"]["value"] > 0  # trained > transfer > 0
    assert add["sub"]["train_final"]["value"] is None  # never trained on sub
